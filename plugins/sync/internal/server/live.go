package server

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/session"
	"github.com/fiberkit/fiberkit/sdk"
)

// liveMsg is a message from a page.
type liveMsg struct {
	Op            string            `json:"op"`
	Page          string            `json:"page,omitempty"`
	Owner         string            `json:"owner,omitempty"`
	Job           string            `json:"job,omitempty"`
	ID            string            `json:"id,omitempty"`
	URL           string            `json:"url,omitempty"`
	Code          string            `json:"code,omitempty"`
	Password      string            `json:"password,omitempty"`
	Tables        []string          `json:"tables,omitempty"`
	Strategy      string            `json:"strategy,omitempty"`
	Strategies    map[string]string `json:"strategies,omitempty"`
	CreateMissing bool              `json:"create_missing,omitempty"`
}

// serveLive is the admin pages' socket (/live): the Send page's live list of
// receivers and approvals, and the Receive page's connection and transfer.
func (s *Server) serveLive(ctx context.Context, c *sdk.Conn) error {
	st, err := s.state()
	if err != nil {
		return c.Reject(503, "sync is starting")
	}
	_, data, err := c.ReadMessage()
	if err != nil {
		return nil
	}
	var hello liveMsg
	if json.Unmarshal(data, &hello) != nil || hello.Op != "hello" {
		return c.Close(sdk.ClosePolicy, "say hello first")
	}
	actor := "admin:" + sdk.CallerFrom(ctx).User
	switch hello.Page {
	case "send":
		if !strings.HasPrefix(hello.Owner, "page:") {
			return c.Close(sdk.ClosePolicy, "unknown page")
		}
		return s.liveSend(ctx, c, st, hello.Owner, actor)
	case "receive":
		return s.liveReceive(ctx, c, st, hello.Job)
	}
	return c.Close(sdk.ClosePolicy, "unknown page")
}

func writeJSON(c *sdk.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.WriteText(string(b))
}

// readOps reads page messages into a channel until the socket closes.
func readOps(c *sdk.Conn) <-chan liveMsg {
	ops := make(chan liveMsg, 4)
	go func() {
		defer close(ops)
		for {
			_, data, err := c.ReadMessage()
			if err != nil {
				return
			}
			var m liveMsg
			if json.Unmarshal(data, &m) == nil {
				ops <- m
			}
		}
	}()
	return ops
}

// resendEvery is how often the Send page gets its view even when nothing changed.
const resendEvery = 10 * time.Second

type sendView struct {
	Type      string             `json:"type"`
	Sessions  []session.Session  `json:"sessions"`
	Pending   []session.Approval `json:"pending"`
	CodeAlive bool               `json:"code_alive"`
}

func (s *Server) liveSend(ctx context.Context, c *sdk.Conn, st *state, owner, actor string) error {
	// The page is there as long as this socket renews its sessions' lease; the lease,
	// not this process, is what every replica goes by.
	defer s.pages.disconnected(owner)
	ops := readOps(c)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var last sendView
	var lastTouch, lastSent time.Time
	for {
		if time.Since(lastTouch) >= s.pages.touchEvery {
			if err := st.sessions.Touch(ctx, owner); err != nil && ctx.Err() == nil {
				s.log.Warn("renew page sessions", "owner", owner, "err", err)
			}
			lastTouch = time.Now()
		}
		v := sendView{Type: "send", Sessions: []session.Session{}, Pending: []session.Approval{}}
		all, _ := st.sessions.List(ctx)
		mine := map[string]bool{}
		for _, se := range all {
			if se.Owner == owner {
				v.CodeAlive = true
				mine[se.ID] = true
				if se.UsedAt != nil {
					se.LeaseUntil = time.Time{} // renewed all the time; not worth a message
					v.Sessions = append(v.Sessions, se)
				}
			}
		}
		pending, _ := st.sessions.Pending(ctx)
		for _, a := range pending {
			if mine[a.SessionID] {
				v.Pending = append(v.Pending, a)
			}
		}
		// Changes go out at once; an unchanged view is repeated every resendEvery, so
		// an idle socket is never silent for long (proxies drop silent sockets).
		if !reflect.DeepEqual(v, last) || time.Since(lastSent) >= resendEvery {
			if err := writeJSON(c, v); err != nil {
				return nil
			}
			last, lastSent = v, time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-ops:
			if !ok {
				return nil
			}
			var err error
			switch m.Op {
			case "approve":
				err = st.sessions.Approve(ctx, m.ID, actor)
			case "deny":
				err = st.sessions.Deny(ctx, m.ID, actor)
			}
			if err != nil {
				_ = writeJSON(c, map[string]string{"type": "error", "message": "That request was already decided or has gone."})
			}
		case <-tick.C:
		}
	}
}

// job is one Receive page's connection and transfer; it outlives a dropped page
// socket so the page can reconnect and pick it up. Its client — and with it the
// sender's open snapshot — is closed as soon as the job has no more use for it: the
// transfer is done, failed or cancelled, the connection dropped, or nobody has
// watched the job for jobs.idle.
type job struct {
	ID string

	mu       sync.Mutex
	version  int
	changed  chan struct{} // closed and replaced on every change
	view     receiveView
	client   *client.Client
	cancel   context.CancelFunc
	finished time.Time
	viewers  int         // page sockets showing the job
	idle     *time.Timer // set while nobody watches
	idleGen  int         // which idle timer is current
}

// release closes c and detaches it from the job if it is still the job's client.
func (j *job) release(c *client.Client) {
	j.mu.Lock()
	if j.client == c {
		j.client = nil
	}
	j.mu.Unlock()
	_ = c.Close()
}

// cancelGrace is how long a cancelled transfer's connection stays open, so the
// sender winds the cancelled stream down (and records why) before it goes.
const cancelGrace = 2 * time.Second

// dropClient detaches the job's client and closes it.
func (j *job) dropClient() {
	j.mu.Lock()
	c := j.client
	j.client = nil
	j.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

type tableProgress struct {
	Rows  int64   `json:"rows"`
	Total int64   `json:"total"`
	Rate  float64 `json:"rate"`
	ETA   float64 `json:"eta_seconds"`
	Done  bool    `json:"done"`
}

type receiveView struct {
	Type     string                   `json:"type"`
	Job      string                   `json:"job"`
	State    string                   `json:"state"` // idle connecting waiting_approval ready transferring done failed cancelled
	Error    string                   `json:"error,omitempty"`
	Message  string                   `json:"message,omitempty"`
	Sender   string                   `json:"sender,omitempty"`
	Tables   []client.TableState      `json:"tables"`
	Progress map[string]tableProgress `json:"progress"`
	Results  map[string]client.Result `json:"results"`
	Overall  tableProgress            `json:"overall"`
}

func (j *job) update(fn func(v *receiveView)) {
	j.mu.Lock()
	fn(&j.view)
	j.version++
	close(j.changed)
	j.changed = make(chan struct{})
	j.mu.Unlock()
}

func (j *job) snapshot() (receiveView, chan struct{}) {
	j.mu.Lock()
	defer j.mu.Unlock()
	b, _ := json.Marshal(j.view)
	var v receiveView
	_ = json.Unmarshal(b, &v)
	return v, j.changed
}

// jobs is the registry of Receive jobs.
type jobs struct {
	// idle: a job nobody has watched for this long is closed and forgotten (one still
	// connecting or transferring once it ends).
	idle time.Duration
	// keep: a finished job is remembered this long for a page that comes back.
	keep time.Duration

	mu sync.Mutex
	m  map[string]*job
}

func newJobs() *jobs { return &jobs{m: map[string]*job{}, idle: 10 * time.Minute, keep: time.Hour} }

// attach returns job id (a new one when it is unknown) for a page socket that shows
// it; call detach when the socket closes.
func (js *jobs) attach(id string) *job {
	js.mu.Lock()
	defer js.mu.Unlock()
	for k, j := range js.m { // forget jobs finished long ago (their clients are closed)
		j.mu.Lock()
		old := !j.finished.IsZero() && time.Since(j.finished) > js.keep && j.viewers == 0
		j.mu.Unlock()
		if old {
			delete(js.m, k)
		}
	}
	j, ok := js.m[id]
	if !ok {
		j = &job{ID: randomID(), changed: make(chan struct{}),
			view: receiveView{Type: "receive", State: "idle", Tables: []client.TableState{}, Progress: map[string]tableProgress{}, Results: map[string]client.Result{}}}
		j.view.Job = j.ID
		js.m[j.ID] = j
	}
	j.mu.Lock()
	j.viewers++
	if j.idle != nil {
		j.idle.Stop()
		j.idle = nil
	}
	j.mu.Unlock()
	return j
}

// detach is attach's counterpart: the last viewer leaving starts the idle clock.
func (js *jobs) detach(j *job) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.viewers--
	if j.viewers <= 0 {
		j.viewers = 0
		js.armIdle(j)
	}
}

// armIdle (j.mu held) expires j after js.idle unless a viewer comes back.
func (js *jobs) armIdle(j *job) {
	if j.idle != nil {
		j.idle.Stop()
	}
	j.idleGen++
	gen := j.idleGen
	j.idle = time.AfterFunc(js.idle, func() { js.expire(j, gen) })
}

// expire closes an unwatched job's client and forgets the job; a job still
// connecting or transferring is looked at again after another idle period (those
// end on their own: connecting has a deadline, a transfer closes its client).
func (js *jobs) expire(j *job, gen int) {
	j.mu.Lock()
	if j.idle == nil || j.idleGen != gen || j.viewers > 0 {
		j.mu.Unlock()
		return
	}
	j.idle = nil
	switch j.view.State {
	case "connecting", "waiting_approval", "transferring":
		js.armIdle(j)
		j.mu.Unlock()
		return
	}
	cancel := j.cancel
	j.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	j.dropClient()
	js.mu.Lock()
	if js.m[j.ID] == j {
		delete(js.m, j.ID)
	}
	js.mu.Unlock()
}

func (s *Server) liveReceive(ctx context.Context, c *sdk.Conn, st *state, jobID string) error {
	j := s.jobs.attach(jobID)
	defer s.jobs.detach(j)
	ops := readOps(c)
	for {
		v, changed := j.snapshot()
		if err := writeJSON(c, v); err != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case m, ok := <-ops:
			if !ok {
				return nil
			}
			switch m.Op {
			case "connect":
				s.connectJob(st, j, m)
			case "start":
				s.startJob(st, j, m, "admin:"+sdk.CallerFrom(ctx).User)
			case "cancel":
				j.mu.Lock()
				if j.cancel != nil {
					j.cancel()
				}
				j.mu.Unlock()
			}
		}
	}
}

// explain turns a failure into the sentence the page shows.
func explain(err error, wasWaiting bool) (code, msg string) {
	var re *client.RemoteError
	if errors.As(err, &re) {
		switch re.Code {
		case "invalid_code":
			return re.Code, "That code is not valid, or it has expired (the sending page was closed)."
		case "already_used":
			return re.Code, "That code was already used. Ask the sending site for a new one."
		case "password_required":
			return re.Code, "The sending site asks for a password."
		case "wrong_password":
			return re.Code, "Wrong password."
		case "rate_limited":
			return re.Code, "Too many failed attempts from this address. Try again later."
		case "approval_timeout":
			return re.Code, "Nobody on the sending site approved the request in time."
		case "denied":
			if wasWaiting {
				return "approval_denied", "An admin of the sending site denied the request."
			}
			return re.Code, "The sending site does not accept incoming connections."
		}
		if code, msg, ok := closeReason(re.Code); ok {
			return code, msg
		}
		return re.Code, "The sending site refused: " + re.Error()
	}
	if errors.Is(err, client.ErrClosed) {
		return "sender_vanished", "The sending site went away. Rows already imported are kept; start again with a new code to finish."
	}
	if errors.Is(err, context.Canceled) {
		return "cancelled", "Cancelled."
	}
	if errors.Is(err, errInternalURL) || strings.Contains(err.Error(), "this site") {
		return "refused_url", err.Error()
	}
	if strings.Contains(err.Error(), "HTTP 404") {
		return "sender_disabled", "The sending site has Sync turned off, or the URL is wrong."
	}
	return "failed", err.Error()
}

// closeReason explains the reasons a sender gives when it closes a connection
// (close codes 4004, 4005; the client reports the reason as the error's code).
func closeReason(reason string) (code, msg string, ok bool) {
	r := strings.ToLower(reason)
	switch {
	case strings.Contains(r, "session ended"):
		return "session_ended", "The sending site ended the session: its Send page was closed or the code was withdrawn. Rows already imported are kept; ask for a new code to finish.", true
	case strings.Contains(r, "revoked"), strings.Contains(r, "was deleted"):
		return "connection_revoked", "The sending site revoked this connection. Rows already imported are kept; ask the sending site for a new connection.", true
	case strings.Contains(r, "suspended"):
		return "connection_suspended", "The sending site suspended this connection. Ask its admin to reactivate it.", true
	case strings.Contains(r, "regenerated"):
		return "token_regenerated", "The sending site issued a new token for this connection; the old one no longer works.", true
	case strings.HasPrefix(r, "expired"):
		return "connection_expired", "This connection expired on the sending site (" + reason + "). Ask its admin to extend it.", true
	case strings.Contains(r, "downloads used"), strings.Contains(r, "requests this minute"), strings.Contains(r, "utc hours"):
		return "connection_limit", "The sending site's limits for this connection stopped it: " + reason + ".", true
	}
	return "", "", false
}

func (s *Server) connectJob(st *state, j *job, m liveMsg) {
	j.mu.Lock()
	busy := j.view.State == "connecting" || j.view.State == "waiting_approval" || j.view.State == "transferring"
	old := j.client
	j.mu.Unlock()
	if busy {
		return
	}
	if old != nil {
		old.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	j.update(func(v *receiveView) {
		*v = receiveView{Type: "receive", Job: j.ID, State: "connecting", Sender: m.URL, Tables: []client.TableState{},
			Progress: map[string]tableProgress{}, Results: map[string]client.Result{}}
	})
	j.mu.Lock()
	j.cancel = cancel
	j.mu.Unlock()
	go func() {
		waited := false
		opts, err := st.outgoing(m.URL, client.Options{
			Password: m.Password, Timeout: 10 * time.Minute,
			ReceiverInfo: map[string]any{"site": st.public, "via": "receive page"},
			OnAwaitingApproval: func() {
				waited = true
				j.update(func(v *receiveView) { v.State = "waiting_approval" })
			},
		})
		var c *client.Client
		if err == nil {
			c, err = client.Connect(ctx, m.URL, m.Code, opts)
		}
		if err == nil {
			var tables []client.TableState
			list, lerr := c.ListTables(ctx)
			if lerr == nil {
				tables, lerr = c.Compare(ctx, st.pool, list)
			}
			if lerr != nil {
				c.Close()
				err = lerr
			} else {
				j.mu.Lock()
				j.client = c
				j.mu.Unlock()
				j.update(func(v *receiveView) { v.State, v.Tables = "ready", tables })
				go s.watchClient(j, c)
				return
			}
		}
		cancel()
		code, msg := explain(err, waited)
		j.mu.Lock()
		j.finished = time.Now()
		j.mu.Unlock()
		j.update(func(v *receiveView) { v.State, v.Error, v.Message = "failed", code, msg })
	}()
}

// watchClient notices a connection that drops while the job waits for the admin to
// pick tables (the sending page closed, the sender went away, the connection was
// revoked): the page says why at once, and the client is closed.
func (s *Server) watchClient(j *job, c *client.Client) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for range t.C {
		j.mu.Lock()
		if j.client != c {
			j.mu.Unlock()
			return // closed by the job: finished, replaced or expired
		}
		lost := j.view.State == "ready" && !c.Connected()
		if lost {
			j.client = nil
			j.finished = time.Now()
		}
		j.mu.Unlock()
		if !lost {
			continue
		}
		_, err := c.Capabilities(context.Background()) // answers at once with why it closed
		if err == nil {
			err = client.ErrClosed
		}
		_ = c.Close()
		code, msg := explain(err, false)
		j.update(func(v *receiveView) { v.State, v.Error, v.Message = "failed", code, msg })
		return
	}
}

func (s *Server) startJob(st *state, j *job, m liveMsg, user string) {
	j.mu.Lock()
	c := j.client
	ready := j.view.State == "ready"
	j.mu.Unlock()
	if c == nil || !ready || len(m.Tables) == 0 {
		return
	}
	def, err := importer.ParseStrategy(m.Strategy)
	if err != nil {
		def = importer.Skip
	}
	strategies := map[string]importer.Strategy{}
	for t, name := range m.Strategies {
		if sv, err := importer.ParseStrategy(name); err == nil {
			strategies[t] = sv
		}
	}
	var total int64
	totals := map[string]int64{}
	j.mu.Lock()
	for _, t := range j.view.Tables {
		totals[t.Table] = t.Rows
	}
	j.mu.Unlock()
	progress := map[string]tableProgress{}
	for _, t := range m.Tables {
		total += totals[t]
		progress[t] = tableProgress{Total: totals[t]}
	}
	ctx, cancel := context.WithCancel(context.Background())
	j.mu.Lock()
	j.cancel = cancel
	j.mu.Unlock()
	j.update(func(v *receiveView) {
		v.State, v.Error, v.Message = "transferring", "", ""
		v.Progress, v.Results = progress, map[string]client.Result{}
		v.Overall = tableProgress{Total: total}
	})
	start := time.Now()
	var lastPush time.Time
	go func() {
		defer cancel()
		results, err := c.TransferAll(ctx, st.pool, client.TransferAllOptions{
			Tables: m.Tables, Strategy: def, Strategies: strategies,
			TransferOptions: client.TransferOptions{CreateMissing: m.CreateMissing, Progress: func(p client.Progress) {
				if !p.Done && time.Since(lastPush) < 150*time.Millisecond {
					return
				}
				lastPush = time.Now()
				j.update(func(v *receiveView) {
					tp := tableProgress{Rows: p.Rows, Total: p.Total, Done: p.Done}
					if secs := p.Elapsed.Seconds(); secs > 0 {
						tp.Rate = float64(p.Rows) / secs
						if tp.Rate > 0 {
							tp.ETA = float64(p.Total-p.Rows) / tp.Rate
						}
					}
					v.Progress[p.Table] = tp
					var rows int64
					for _, x := range v.Progress {
						rows += x.Rows
					}
					v.Overall.Rows = rows
					if secs := time.Since(start).Seconds(); secs > 0 {
						v.Overall.Rate = float64(rows) / secs
						if v.Overall.Rate > 0 {
							v.Overall.ETA = float64(v.Overall.Total-rows) / v.Overall.Rate
						}
					}
				})
			}},
		})
		j.mu.Lock()
		sender := j.view.Sender
		j.mu.Unlock()
		recordPulls(st, sender, user, def, strategies, results)
		j.update(func(v *receiveView) {
			for t, r := range results {
				if r.Errors == nil {
					r.Errors = []importer.RecordError{}
				}
				v.Results[t] = r
			}
			v.State = "done"
			switch {
			case err != nil && ctx.Err() != nil:
				// Cancelled: whatever the interrupted statement said, this is why.
				v.State, v.Error, v.Message = "cancelled", "cancelled", "Cancelled. Batches already imported are kept."
			case err != nil:
				v.Error, v.Message = explain(err, false)
				v.State = "failed"
			}
		})
		if err == nil {
			// Refresh the New / Different / Match column.
			rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
			if list, lerr := c.ListTables(rctx); lerr == nil {
				if tables, cerr := c.Compare(rctx, st.pool, list); cerr == nil {
					j.update(func(v *receiveView) { v.Tables = tables })
				}
			}
			rcancel()
		}
		// The job is over: let the sender end its snapshot. Another pull takes a
		// new code.
		j.mu.Lock()
		j.finished = time.Now()
		j.mu.Unlock()
		if ctx.Err() != nil {
			time.AfterFunc(cancelGrace, func() { j.release(c) })
		} else {
			j.release(c)
		}
	}()
}
