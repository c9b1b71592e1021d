package sender

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/exporter"
	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/plugins/sync/session"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
	"github.com/fiberkit/fiberkit/sdk"
)

// peer is one connected receiver.
type peer struct {
	srv    *Sender
	st     *site.Site
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
	cancel     context.CancelFunc

	mu       sync.Mutex // guards joined, awaiting, paged, snapshot use, streams
	joined   bool
	awaiting bool
	snap     *exporter.Snapshot
	streams  map[uint32]*liveStream
	masks    maskState // the masking key and the rules applied, per table
	follow   *follower // set by request:follow
	wg       sync.WaitGroup
}

// recordTimeout bounds the history and session writes made as a receiver's
// requests end, which go on after its connection's context ended.
const recordTimeout = 5 * time.Second

// detached returns a context for the writes that outlive ctx (history, session
// status), bounded by recordTimeout.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
}

// record writes a history row, logging a failure; it returns the row's id (0 when
// the write failed).
func (p *peer) record(ctx context.Context, t history.Transfer) int64 {
	id, err := p.st.History.Record(ctx, t)
	if err != nil {
		p.srv.log.Error("record send in the history", "table", t.Table, "status", t.Status, "err", err)
	}
	return id
}

// finish ends the connection's streams and snapshot, records the rows paged
// through request:records, marks the session done and notes that its receiver
// left (it may rejoin within the session store's grace).
func (p *peer) finish(ctx context.Context) {
	p.cancel()
	p.wg.Wait()
	ctx, cancel := detached(ctx)
	defer cancel()
	p.mu.Lock()
	if p.snap != nil {
		p.snap.Close(ctx)
		p.snap = nil
	}
	paged := p.paged
	p.mu.Unlock()
	for table, rows := range paged {
		d := time.Since(p.pagedSince)
		p.record(ctx, history.Transfer{Direction: "send", Peer: p.addr, Table: table, Strategy: "records",
			Rows: rows, Duration: d, Status: "done", StartedBy: p.startedBy(), Masks: p.maskedRules(table)})
		p.st.Metrics.TransferFinished("send", "records", d)
	}
	if p.sess.ID != "" {
		if err := p.st.Sessions.Update(ctx, p.sess.ID, session.StatusDone, nil); err != nil {
			p.srv.log.Warn("mark session done", "session", p.sess.ID, "err", err)
		}
		if err := p.st.Sessions.Left(ctx, p.sess.ID); err != nil {
			p.srv.log.Warn("note the receiver left", "session", p.sess.ID, "err", err)
		}
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

// watchOwner ends the connection when the receiver falls silent, the session's
// owner goes away, or a permanent connection loses its standing.
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
				if _, err := p.st.Conns.Standing(ctx, p.connID, p.token, p.addr); errors.As(err, &ref) {
					_ = p.c.Close(4005, ref.Detail)
					p.cancel()
					return
				}
				continue
			}
			live, err := p.st.Sessions.Live(ctx, p.sess.ID)
			if err == nil && !live {
				_ = p.c.Close(4004, "session ended by the sending site")
				p.cancel()
				return
			}
		}
	}
}

func (p *peer) send(f wire.Frame) error { return p.c.WriteText(string(f.Encode())) }

// reply answers request f with event and payload v, echoing f's ref and its
// payload ref (PhoenixKit receivers match answers on the latter).
func (p *peer) reply(f wire.Frame, event string, v any) error {
	return p.send(wire.Answer(f, event, v))
}

// ok answers f with an ok phx_reply carrying response.
func (p *peer) ok(f wire.Frame, response map[string]any) error {
	return p.reply(f, wire.EventReply, wire.Reply{Status: "ok", Response: response})
}

// fail answers request f with response:error: code, msg, and the request's
// payload ref (or, without one, its frame ref).
func (p *peer) fail(f wire.Frame, code, msg string) error {
	return p.send(wire.ErrorAnswer(f, code, msg))
}

func (p *peer) push(event string, v any) error {
	return p.send(wire.New(nil, nil, p.topic, event, v))
}

// loop reads the receiver's frames and handles each until it leaves.
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

// handle dispatches one frame: heartbeats, then join and leave, then — once the
// receiver joined — the requests (each handler validates its payload before the
// connection's limits and any SQL see it).
func (p *peer) handle(ctx context.Context, f wire.Frame) error {
	if f.Topic == wire.TopicPhoenix {
		if f.Event == wire.EventHeartbeat {
			return p.ok(f, map[string]any{})
		}
		return p.fail(f, wire.ErrBadRequest, "unknown event on topic phoenix")
	}
	if normalTopic(f.Topic) != p.topic {
		return p.fail(f, wire.ErrBadRequest, "unknown topic "+f.Topic)
	}
	if h, ok := p.srv.open[f.Event]; ok {
		return h(p, ctx, f)
	}
	p.mu.Lock()
	joined := p.joined
	p.mu.Unlock()
	if !joined {
		return p.fail(f, wire.ErrNotJoined, "join the topic first (and wait for approval if asked)")
	}
	if h, ok := p.srv.joined[f.Event]; ok {
		return h(p, ctx, f)
	}
	return p.fail(f, wire.ErrBadRequest, "unknown event "+f.Event)
}

// leave answers phx_leave and closes the connection.
func (p *peer) leave(_ context.Context, f wire.Frame) error {
	_ = p.ok(f, map[string]any{})
	_ = p.c.Close(sdk.CloseNormal, "left")
	p.cancel()
	return nil
}
