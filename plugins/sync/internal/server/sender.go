package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/exporter"
	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/session"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
	"github.com/fiberkit/fiberkit/sdk"
)

// Protocol limits the sender enforces.
const (
	maxRecordsLimit = 5000
	// defaultRecordsLimit is request:records' page size when none is asked for
	// (PhoenixKit's fetch_records default).
	defaultRecordsLimit = 100
	maxBatchRows        = 50000
	defaultBatchRows    = 5000
	maxCredit           = 16
	approvalTimeout     = 10 * time.Minute
	ownerCheck          = 2 * time.Second
)

// redeemError maps a session error to the HTTP status and plain reason of a refused upgrade.
func redeemError(err error) (int, string) {
	switch {
	case errors.Is(err, session.ErrInvalidCode):
		return http.StatusForbidden, wire.ErrInvalidCode
	case errors.Is(err, session.ErrAlreadyUsed):
		return http.StatusForbidden, wire.ErrAlreadyUsed
	case errors.Is(err, session.ErrRateLimited):
		return http.StatusTooManyRequests, wire.ErrRateLimited
	case errors.Is(err, session.ErrPasswordRequired):
		return http.StatusForbidden, wire.ErrPasswordRequired
	case errors.Is(err, session.ErrWrongPassword):
		return http.StatusForbidden, wire.ErrWrongPassword
	case errors.Is(err, session.ErrDenied):
		return http.StatusForbidden, wire.ErrDenied
	}
	return http.StatusInternalServerError, wire.ErrInternal
}

// serveSender is the sender's WebSocket endpoint: {prefix}/sync/websocket?code=CODE&vsn=2.0.0.
// The code (and password, in the X-Sync-Password header) are checked before the
// upgrade; a refusal is a plain HTTP answer with the reason.
func (s *Server) serveSender(ctx context.Context, c *sdk.Conn) error {
	st, err := s.state()
	if err != nil {
		return c.Reject(http.StatusServiceUnavailable, "sync is starting")
	}
	q := c.Query()
	password := c.Header().Get("X-Sync-Password")
	if password == "" {
		password = q.Get("password")
	}
	addr := c.Caller().RemoteAddr
	p := &peer{srv: s, st: st, c: c, addr: addr, codec: wire.NewCodec(), streams: map[uint32]*liveStream{}}
	p.lastSeen.Store(time.Now().UnixNano())
	if token := strings.TrimPrefix(c.Header().Get("Authorization"), "Bearer "); strings.HasPrefix(token, "fkc_") {
		// A permanent connection: its token and limits replace the code.
		conn, err := st.conns.Authorize(ctx, token, addr)
		if err != nil {
			var ref *connection.Refusal
			if errors.As(err, &ref) {
				status := http.StatusForbidden
				if ref.Reason == connection.ErrRate.Reason {
					status = http.StatusTooManyRequests
				}
				return c.Reject(status, ref.Reason)
			}
			s.log.Error("authorize connection", "err", err)
			return c.Reject(http.StatusInternalServerError, wire.ErrInternal)
		}
		p.connID, p.token, p.topic, p.joined = conn.ID, token, "transfer:token", false
	} else {
		// Codes are shown upper-case; accept them as typed, with stray spaces.
		code := session.NormalizeCode(q.Get("code"))
		sess, err := st.sessions.Redeem(ctx, code, session.Attempt{Address: addr, Password: password, ReceiverInfo: receiverInfo(c.Header())}, st.policy())
		if err != nil {
			status, reason := redeemError(err)
			if status == http.StatusInternalServerError {
				s.log.Error("redeem code", "err", err)
			}
			return c.Reject(status, reason)
		}
		p.sess, p.topic = sess, "transfer:"+code
	}
	defer p.codec.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p.cancel = cancel
	defer p.finish()
	go p.watchOwner(ctx)
	return p.loop(ctx)
}

// normalTopic spells a transfer:CODE topic as the sender does (codes upper-case,
// no spaces), so a receiver may echo the code as its user typed it.
func normalTopic(topic string) string {
	if code, ok := strings.CutPrefix(topic, "transfer:"); ok && code != "token" {
		return "transfer:" + session.NormalizeCode(code)
	}
	return topic
}

// receiverInfo reads the X-Sync-Receiver-Info header (a JSON object the client
// sends so that even a refused attempt says who tried); anything else is ignored.
func receiverInfo(h http.Header) map[string]any {
	v := h.Get("X-Sync-Receiver-Info")
	if v == "" || len(v) > maxReceiverInfo {
		return nil
	}
	var info map[string]any
	if json.Unmarshal([]byte(v), &info) != nil {
		return nil
	}
	return info
}

// maxReceiverInfo bounds the receiver-info header (bytes).
const maxReceiverInfo = 2 << 10

// servedSchema is the one schema whose tables a receiver may list and read.
const servedSchema = "public"

// liveStream is one running fast-path stream.
type liveStream struct {
	credits chan int
	cancel  context.CancelFunc
	// byReceiver is set when the receiver sent stream:cancel, so the history says
	// so even if its connection closes before the stream notices.
	byReceiver atomic.Bool
}

// peer is one connected receiver.
type peer struct {
	srv    *Server
	st     *state
	c      *sdk.Conn
	addr   string
	sess   session.Session // for a code; empty for a permanent connection
	connID string          // for a permanent connection
	token  string          // the token it opened with: a regenerated one ends it
	// lastSeen is when the receiver last sent anything (unix nanoseconds).
	lastSeen atomic.Int64
	// paged counts the rows each table gave through request:records (guarded by
	// mu); they go to the history as one row per table when the receiver leaves.
	paged      map[string]int64
	pagedSince time.Time
	topic      string
	codec      *wire.Codec
	cancel     context.CancelFunc

	mu       sync.Mutex // guards joined, snapshot use, streams
	joined   bool
	awaiting bool
	snap     *exporter.Snapshot
	streams  map[uint32]*liveStream
	wg       sync.WaitGroup
}

func (p *peer) finish() {
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	if p.snap != nil {
		p.snap.Close(context.Background())
		p.snap = nil
	}
	paged := p.paged
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for table, rows := range paged {
		_, _ = p.st.history.Record(ctx, history.Transfer{Direction: "send", Peer: p.addr, Table: table, Strategy: "records",
			Rows: rows, Duration: time.Since(p.pagedSince), Status: "done", StartedBy: p.startedBy()})
	}
	if p.sess.ID != "" {
		_ = p.st.sessions.Update(ctx, p.sess.ID, session.StatusDone, nil)
	}
}

// startedBy names who a send is for in the history: the connection, or the
// session's owner.
func (p *peer) startedBy() string {
	if p.connID != "" {
		return "connection:" + p.connID
	}
	return p.sess.Owner
}

// watchOwner ends the connection when the session's owner goes away.
func (p *peer) watchOwner(ctx context.Context) {
	t := time.NewTicker(ownerCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if idle := time.Since(time.Unix(0, p.lastSeen.Load())); idle > p.srv.receiverIdle {
				// Gone without a close (a dead network, a frozen peer): end it, so its
				// snapshot and streams end too.
				_ = p.c.Close(4008, fmt.Sprintf("nothing from the receiver for %s", idle.Round(time.Second)))
				p.cancel()
				return
			}
			if p.connID != "" {
				// A suspension, revocation, expiry, the end of the allowed hours or a
				// regenerated token ends connections already open.
				var ref *connection.Refusal
				if _, err := p.st.conns.Standing(ctx, p.connID, p.token, p.addr); errors.As(err, &ref) {
					_ = p.c.Close(4005, ref.Detail)
					p.cancel()
					return
				}
				continue
			}
			live, err := p.st.sessions.Live(ctx, p.sess.ID)
			if err == nil && !live {
				_ = p.c.Close(4004, "session ended by the sending site")
				p.cancel()
				return
			}
		}
	}
}

func (p *peer) send(f wire.Frame) error { return p.c.WriteText(string(f.Encode())) }

func (p *peer) reply(f wire.Frame, event string, v any) error {
	return p.send(wire.New(f.JoinRef, f.Ref, f.Topic, event, v))
}

func (p *peer) fail(f wire.Frame, code, msg string) error {
	return p.send(wire.New(f.JoinRef, f.Ref, f.Topic, wire.ResponseError, wire.ErrorPayload{Error: code, Message: msg, Ref: f.Ref}))
}

func (p *peer) push(event string, v any) error {
	return p.send(wire.New(nil, nil, p.topic, event, v))
}

func (p *peer) loop(ctx context.Context) error {
	for {
		t, data, err := p.c.ReadMessage()
		if err != nil {
			return nil // the receiver closed or vanished
		}
		p.lastSeen.Store(time.Now().UnixNano())
		if t != sdk.TextMessage {
			_ = p.send(wire.New(nil, nil, p.topic, wire.ResponseError, wire.ErrorPayload{Error: wire.ErrMalformedFrame, Message: "binary frames are only sent by the sender"}))
			continue
		}
		f, err := wire.Decode(data)
		if err != nil {
			var fe *wire.FrameError
			code := wire.ErrMalformedFrame
			if errors.As(err, &fe) {
				code = fe.Code
			}
			_ = p.send(wire.New(nil, nil, p.topic, wire.ResponseError, wire.ErrorPayload{Error: code, Message: err.Error()}))
			continue
		}
		if err := p.handle(ctx, f); err != nil {
			return err
		}
	}
}

func (p *peer) handle(ctx context.Context, f wire.Frame) error {
	if f.Topic == wire.TopicPhoenix {
		if f.Event == wire.EventHeartbeat {
			return p.reply(f, wire.EventReply, wire.Reply{Status: "ok", Response: map[string]any{}})
		}
		return p.fail(f, wire.ErrBadRequest, "unknown event on topic phoenix")
	}
	if normalTopic(f.Topic) != p.topic {
		return p.fail(f, wire.ErrBadRequest, "unknown topic "+f.Topic)
	}
	switch f.Event {
	case wire.EventJoin:
		return p.join(ctx, f)
	case wire.EventLeave:
		_ = p.reply(f, wire.EventReply, wire.Reply{Status: "ok", Response: map[string]any{}})
		_ = p.c.Close(sdk.CloseNormal, "left")
		p.cancel()
		return nil
	}
	p.mu.Lock()
	joined := p.joined
	p.mu.Unlock()
	if !joined {
		return p.fail(f, wire.ErrNotJoined, "join the topic first (and wait for approval if asked)")
	}
	if !p.admit(ctx, f) {
		return nil
	}
	switch f.Event {
	case wire.RequestCapabilities:
		return p.reply(f, wire.ResponseCapabilities, wire.Capabilities{
			Version: wire.Version, Features: []string{wire.RecordsFeature, wire.StreamFeature},
			Compression: []string{"zstd"}, MaxBatchRows: maxBatchRows, MaxRecords: maxRecordsLimit,
		})
	case wire.RequestTables:
		return p.withSnapshot(ctx, f, func(snap *exporter.Snapshot) (string, any, error) {
			all, err := catalog.ListTables(ctx, snap.Querier(), catalog.ListOptions{})
			tables := []catalog.Table{}
			for _, t := range all {
				if p.tableAllowed(t.Name) {
					tables = append(tables, t)
				}
			}
			return wire.ResponseTables, map[string]any{"tables": tables}, err
		})
	case wire.RequestChecksum:
		var req wire.TableRequest
		if err := f.Unpack(&req); err != nil {
			return p.fail(f, wire.ErrBadRequest, err.Error())
		}
		return p.withSnapshot(ctx, f, func(snap *exporter.Snapshot) (string, any, error) {
			sch, err := p.schema(ctx, snap, req.Table)
			if err != nil {
				return "", nil, err
			}
			sum, err := snap.Checksum(ctx, sch)
			return wire.ResponseChecksum, map[string]any{"table": req.Table, "md5": sum, "columns": writableNames(sch)}, err
		})
	case wire.RequestSchema, wire.RequestCount:
		var req wire.TableRequest
		if err := f.Unpack(&req); err != nil {
			return p.fail(f, wire.ErrBadRequest, err.Error())
		}
		return p.withSnapshot(ctx, f, func(snap *exporter.Snapshot) (string, any, error) {
			if f.Event == wire.RequestSchema {
				sch, err := p.schema(ctx, snap, req.Table)
				return wire.ResponseSchema, map[string]any{"table": req.Table, "schema": sch}, err
			}
			if _, err := p.schema(ctx, snap, req.Table); err != nil {
				return "", nil, err
			}
			n, err := catalog.Count(ctx, snap.Querier(), req.Table)
			return wire.ResponseCount, map[string]any{"table": req.Table, "count": n}, err
		})
	case wire.RequestRecords:
		var req wire.RecordsRequest
		if err := f.Unpack(&req); err != nil {
			return p.fail(f, wire.ErrBadRequest, err.Error())
		}
		if req.Limit <= 0 {
			req.Limit = defaultRecordsLimit
		}
		if req.Offset < 0 || req.Limit > maxRecordsLimit {
			return p.fail(f, wire.ErrBadRequest, fmt.Sprintf("offset must be ≥ 0 and limit at most %d", maxRecordsLimit))
		}
		return p.withSnapshot(ctx, f, func(snap *exporter.Snapshot) (string, any, error) {
			sch, err := p.schema(ctx, snap, req.Table)
			if err != nil {
				return "", nil, err
			}
			limit := req.Limit
			if p.connID != "" {
				// Take the rows from the connection's total before reading them.
				granted, err := p.st.conns.Reserve(ctx, p.connID, int64(limit))
				if err != nil {
					return "", nil, err
				}
				limit = int(granted)
			}
			page, err := snap.Records(ctx, sch, req.Offset, limit)
			if p.connID != "" {
				_ = p.st.conns.Release(ctx, p.connID, int64(limit-len(page.Records)))
			}
			if err == nil && len(page.Records) > 0 {
				// withSnapshot holds p.mu.
				if p.paged == nil {
					p.paged, p.pagedSince = map[string]int64{}, time.Now()
				}
				p.paged[sch.Name] += int64(len(page.Records))
			}
			return wire.ResponseRecords, map[string]any{"table": req.Table, "records": page.Records, "offset": page.Offset, "has_more": page.HasMore}, err
		})
	case wire.StreamStart:
		var req wire.Start
		if err := f.Unpack(&req); err != nil {
			return p.fail(f, wire.ErrBadRequest, err.Error())
		}
		return p.startStream(ctx, f, req)
	case wire.StreamAck:
		var ack wire.Ack
		if err := f.Unpack(&ack); err != nil {
			return p.fail(f, wire.ErrBadRequest, err.Error())
		}
		p.mu.Lock()
		ls, ok := p.streams[ack.Stream]
		p.mu.Unlock()
		if ok && ack.Credit > 0 {
			select {
			case ls.credits <- min(ack.Credit, maxCredit):
			default: // the streamer has plenty of credit queued
			}
		}
		return nil
	case wire.StreamCancel:
		var sc struct {
			Stream uint32 `json:"stream"`
		}
		if err := json.Unmarshal(f.Payload, &sc); err != nil {
			return p.fail(f, wire.ErrBadRequest, err.Error())
		}
		p.mu.Lock()
		if ls, ok := p.streams[sc.Stream]; ok {
			ls.byReceiver.Store(true)
			ls.cancel()
		}
		p.mu.Unlock()
		return nil
	}
	return p.fail(f, wire.ErrBadRequest, "unknown event "+f.Event)
}

// admit checks a request of a permanent connection against its limits (status,
// expiry, address, hours, rate, table, request size, total records) and answers a
// refusal itself. Code sessions are always admitted.
func (p *peer) admit(ctx context.Context, f wire.Frame) bool {
	if p.connID == "" {
		return true
	}
	r := connection.Request{Address: p.addr}
	var body struct {
		Table     string `json:"table"`
		Limit     int    `json:"limit"`
		BatchRows int    `json:"batch_rows"`
	}
	_ = json.Unmarshal(f.Payload, &body)
	switch f.Event {
	case wire.StreamAck, wire.RequestCapabilities:
		return true
	case wire.RequestRecords:
		// Judge the size the request will really get, defaults filled in.
		r.Table, r.Records = body.Table, cmp.Or(max(body.Limit, 0), defaultRecordsLimit)
	case wire.StreamStart:
		r.Table, r.Records = body.Table, cmp.Or(max(body.BatchRows, 0), defaultBatchRows)
	default:
		r.Table = body.Table
	}
	if r.Table != "" {
		// Limits name tables as request:tables lists them; check the table the name
		// resolves to, so another spelling of an excluded table is still excluded.
		if id, err := catalog.Resolve(ctx, p.st.pool, r.Table); err == nil && id.Schema == servedSchema {
			r.Table = id.Name
		}
	}
	if _, err := p.st.conns.Admit(ctx, p.connID, r); err != nil {
		var ref *connection.Refusal
		if errors.As(err, &ref) {
			_ = p.fail(f, ref.Reason, ref.Detail)
		} else {
			p.srv.log.Error("admit", "err", err)
			_ = p.fail(f, wire.ErrInternal, "could not check the connection's limits")
		}
		return false
	}
	return true
}

// tableAllowed says whether the receiver may see a table at all.
func (p *peer) tableAllowed(table string) bool {
	if p.connID == "" {
		return true
	}
	c, err := p.st.conns.Get(context.Background(), p.connID)
	return err == nil && connection.TableAllowed(c.Limits, table)
}

// schema resolves a table the receiver may read: never the kit's secret tables.
func (p *peer) schema(ctx context.Context, snap *exporter.Snapshot, table string) (*catalog.Schema, error) {
	id, err := catalog.Resolve(ctx, snap.Querier(), table)
	if err != nil {
		return nil, err
	}
	// Judge the table the name resolved to, not the spelling the receiver sent:
	// "public.products" must meet the same limits as "products". Only what
	// request:tables lists (the public schema, never the kit's own tables) is served.
	if id.Schema != servedSchema || catalog.IsSecretTable(id.Name) || !p.tableAllowed(id.Name) {
		return nil, fmt.Errorf("%w: %q", catalog.ErrUnknownTable, table)
	}
	return catalog.GetSchema(ctx, snap.Querier(), table)
}

// withSnapshot runs fn against the connection's snapshot (begun on first use, so
// every table the receiver reads comes from one consistent view) and replies.
func (p *peer) withSnapshot(ctx context.Context, f wire.Frame, fn func(*exporter.Snapshot) (string, any, error)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.snap == nil {
		snap, err := exporter.Begin(ctx, p.st.pool)
		if err != nil {
			p.srv.log.Error("begin snapshot", "err", err)
			return p.fail(f, wire.ErrInternal, "could not read the database")
		}
		p.snap = snap
	}
	event, v, err := fn(p.snap)
	if err != nil {
		var ref *connection.Refusal
		if errors.As(err, &ref) {
			return p.fail(f, ref.Reason, ref.Detail)
		}
		if errors.Is(err, catalog.ErrUnknownTable) {
			return p.fail(f, wire.ErrUnknownTable, err.Error())
		}
		p.srv.log.Error("request failed", "event", f.Event, "err", err)
		return p.fail(f, wire.ErrInternal, "the request failed on the sending site")
	}
	return p.reply(f, event, v)
}

func (p *peer) join(ctx context.Context, f wire.Frame) error {
	var j wire.Join
	if err := json.Unmarshal(f.Payload, &j); err != nil {
		return p.fail(f, wire.ErrBadRequest, "join payload: "+err.Error())
	}
	p.mu.Lock()
	if p.joined || p.awaiting {
		p.mu.Unlock()
		return p.reply(f, wire.EventReply, wire.Reply{Status: "ok", Response: map[string]any{}})
	}
	p.mu.Unlock()
	if p.connID != "" {
		// A permanent connection was approved when it was made.
		p.mu.Lock()
		p.joined = true
		p.mu.Unlock()
		return p.reply(f, wire.EventReply, wire.Reply{Status: "ok", Response: map[string]any{"version": wire.Version}})
	}
	p.sess.ReceiverInfo = j.ReceiverInfo
	_ = p.st.sessions.SetReceiverInfo(ctx, p.sess.ID, j.ReceiverInfo)
	if p.st.settings.String("incoming_mode") != session.RequireApproval {
		p.mu.Lock()
		p.joined = true
		p.mu.Unlock()
		return p.reply(f, wire.EventReply, wire.Reply{Status: "ok", Response: map[string]any{"version": wire.Version}})
	}
	approval, err := p.st.sessions.RequestApproval(ctx, p.sess)
	if err != nil {
		p.srv.log.Error("request approval", "err", err)
		return p.fail(f, wire.ErrInternal, "could not ask for approval")
	}
	p.mu.Lock()
	p.awaiting = true
	p.mu.Unlock()
	if err := p.reply(f, wire.EventReply, wire.Reply{Status: "ok", Response: map[string]any{"version": wire.Version, "awaiting_approval": true}}); err != nil {
		return err
	}
	_ = p.push(wire.EventAwaitingApproval, map[string]any{"approval_id": approval.ID})
	// The request shows in the history while it waits, and then its outcome.
	who, _ := json.Marshal(j.ReceiverInfo)
	histID, _ := p.st.history.Record(ctx, history.Transfer{Direction: "send", Peer: p.addr, Table: "(connection request)",
		Status: "awaiting_approval", StartedBy: string(who)})
	setOutcome := func(status string) {
		if histID != 0 {
			_ = p.st.history.SetStatus(context.Background(), histID, status)
		}
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		wctx, cancel := context.WithTimeout(ctx, approvalTimeout)
		defer cancel()
		// Keep the receiver informed (and its connection warm) while it waits.
		go func() {
			t := time.NewTicker(15 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-wctx.Done():
					return
				case <-t.C:
					_ = p.push(wire.EventAwaitingApproval, map[string]any{"approval_id": approval.ID})
				}
			}
		}()
		err := p.st.sessions.WaitApproval(wctx, approval.ID)
		switch {
		case err == nil:
			setOutcome("approved")
			p.mu.Lock()
			p.joined, p.awaiting = true, false
			p.mu.Unlock()
			_ = p.push(wire.EventApproved, map[string]any{})
		case errors.Is(err, session.ErrDenied):
			setOutcome("denied")
			_ = p.push(wire.EventDenied, map[string]any{"error": wire.ErrDenied})
			_ = p.c.Close(4003, wire.ErrDenied)
			p.cancel()
		case errors.Is(err, session.ErrApprovalTimeout) && ctx.Err() == nil:
			setOutcome("approval_timeout")
			_ = p.push(wire.EventDenied, map[string]any{"error": wire.ErrApprovalTimeout})
			_ = p.c.Close(4008, wire.ErrApprovalTimeout)
			p.cancel()
		case ctx.Err() == nil:
			setOutcome("cancelled")
			_ = p.c.Close(4004, "session ended by the sending site")
			p.cancel()
		default:
			// The receiver left while waiting: take the request off the Send page.
			setOutcome("abandoned")
			dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = p.st.sessions.Deny(dctx, approval.ID, "receiver left")
			dcancel()
		}
	}()
	return nil
}

// startStream begins a fast-path stream: binary batch frames, at most `credit`
// unacknowledged, each read from the connection's snapshot.
func (p *peer) startStream(ctx context.Context, f wire.Frame, req wire.Start) error {
	if req.BatchRows <= 0 {
		req.BatchRows = defaultBatchRows
	}
	if req.BatchRows > maxBatchRows || req.Credit < 0 || req.Credit > maxCredit || (req.Compression != "" && req.Compression != "zstd") {
		return p.fail(f, wire.ErrBadRequest, fmt.Sprintf("batch_rows ≤ %d, credit ≤ %d, compression zstd or none", maxBatchRows, maxCredit))
	}
	if req.Credit == 0 {
		req.Credit = 4
	}
	var sch *catalog.Schema
	var err error
	p.mu.Lock()
	if _, dup := p.streams[req.Stream]; dup {
		p.mu.Unlock()
		return p.fail(f, wire.ErrBadRequest, "stream id in use")
	}
	if p.snap == nil {
		if p.snap, err = exporter.Begin(ctx, p.st.pool); err != nil {
			p.mu.Unlock()
			return p.fail(f, wire.ErrInternal, "could not read the database")
		}
	}
	sch, err = p.schema(ctx, p.snap, req.Table)
	if err != nil {
		p.mu.Unlock()
		if errors.Is(err, catalog.ErrUnknownTable) {
			return p.fail(f, wire.ErrUnknownTable, err.Error())
		}
		return p.fail(f, wire.ErrInternal, "could not read the table")
	}
	credits := make(chan int, maxCredit)
	sctx, scancel := context.WithCancel(ctx)
	ls := &liveStream{credits: credits, cancel: scancel}
	p.streams[req.Stream] = ls
	p.mu.Unlock()
	if err := p.reply(f, wire.EventReply, wire.Reply{Status: "ok", Response: map[string]any{"stream": req.Stream, "columns": writableNames(sch)}}); err != nil {
		return err
	}
	if p.sess.ID != "" {
		_ = p.st.sessions.Update(ctx, p.sess.ID, session.StatusTransferring, map[string]any{"table": req.Table})
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer func() {
			scancel()
			p.mu.Lock()
			delete(p.streams, req.Stream)
			p.mu.Unlock()
		}()
		started := time.Now()
		rows, bytes, err := p.stream(sctx, sch, req, credits)
		cancelled := err != nil && (ls.byReceiver.Load() || sctx.Err() != nil && ctx.Err() == nil)
		if cancelled {
			err = errors.New("cancelled by the receiver")
		}
		by := p.startedBy()
		rec := history.Transfer{Direction: "send", Peer: p.addr, Table: req.Table, Rows: rows, Bytes: bytes,
			Duration: time.Since(started), Status: "done", StartedBy: by}
		switch {
		case cancelled:
			rec.Status, rec.Error = "cancelled", err.Error()
		case err != nil:
			rec.Status, rec.Error = "failed", err.Error()
		}
		_, _ = p.st.history.Record(context.Background(), rec)
		var ref *connection.Refusal
		switch {
		case errors.As(err, &ref):
			_ = p.push(wire.StreamError, wire.StreamErr{Stream: req.Stream, Error: ref.Reason, Message: ref.Detail})
		case errors.Is(err, exporter.ErrNoResume):
			_ = p.push(wire.StreamError, wire.StreamErr{Stream: req.Stream, Error: wire.ErrBadRequest, Message: exporter.ErrNoResume.Error()})
		case err != nil && sctx.Err() != nil:
			// Cancelled by the receiver (or the connection ended): nothing to tell.
		case err != nil && ctx.Err() == nil:
			p.srv.log.Error("stream failed", "table", req.Table, "err", err)
			_ = p.push(wire.StreamError, wire.StreamErr{Stream: req.Stream, Error: wire.ErrInternal, Message: "the stream failed on the sending site"})
		}
	}()
	return nil
}

func writableNames(sch *catalog.Schema) []string {
	var out []string
	for _, c := range sch.Writable() {
		out = append(out, c.Name)
	}
	return out
}

func (p *peer) stream(ctx context.Context, sch *catalog.Schema, req wire.Start, credits chan int) (rows, sent int64, err error) {
	credit := req.Credit
	after := req.AfterKey
	var seq uint32
	var frame []byte
	for {
		for credit == 0 {
			select {
			case <-ctx.Done():
				return rows, sent, ctx.Err()
			case n := <-credits:
				credit += n
			}
		}
		size := req.BatchRows
		if p.connID != "" {
			// Every batch: the connection must still stand (a revocation, suspension,
			// expiry, the end of its hours or a new token stops the stream), and the
			// batch's rows are taken from its total before they are read.
			if _, err := p.st.conns.Standing(ctx, p.connID, p.token, p.addr); err != nil {
				return rows, sent, err
			}
			granted, err := p.st.conns.Reserve(ctx, p.connID, int64(size))
			if err != nil {
				return rows, sent, err
			}
			size = int(granted)
		}
		p.mu.Lock()
		if p.snap == nil {
			p.mu.Unlock()
			return rows, sent, errors.New("snapshot closed")
		}
		b, err := p.snap.NextBatch(ctx, sch, after, size)
		p.mu.Unlock()
		if p.connID != "" {
			_ = p.st.conns.Release(ctx, p.connID, int64(size-b.Rows))
		}
		if err != nil {
			return rows, sent, err
		}
		if b.Rows > 0 {
			seq++
			frame, err = p.codec.EncodeBatch(frame[:0], wire.Batch{Stream: req.Stream, Seq: seq, Rows: uint32(b.Rows), LastKey: b.LastKey, Data: b.Data}, req.Compression == "zstd")
			if err != nil {
				return rows, sent, err
			}
			if err := p.c.WriteMessage(sdk.BinaryMessage, frame); err != nil {
				return rows, sent, err
			}
			credit--
			rows += int64(b.Rows)
			sent += int64(len(frame))
			if p.sess.ID != "" {
				// What the Send page shows about this receiver.
				_ = p.st.sessions.Update(ctx, p.sess.ID, session.StatusTransferring, map[string]any{"table": req.Table, "rows": rows})
			}
		}
		after = b.LastKey
		if b.Done {
			return rows, sent, p.push(wire.StreamEnd, wire.End{Stream: req.Stream, Batches: seq, Rows: rows, LastKey: after})
		}
	}
}
