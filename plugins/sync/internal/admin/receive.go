package admin

import (
	"context"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/pull"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/sdk"
)

// Bounds of a Receive job's steps.
const (
	// connectTimeout bounds connecting, waiting for an approval included.
	connectTimeout = 10 * time.Minute
	// refreshTimeout bounds comparing the tables again after a transfer.
	refreshTimeout = time.Minute
	// progressEvery is the least time between two progress updates of a page.
	progressEvery = 150 * time.Millisecond
)

// liveReceive is the Receive page's socket: it shows job jobID (a new one when it
// is unknown) and takes the page's connect, start and cancel. The job outlives the
// socket, so its steps run on a context detached from it.
func (a *Admin) liveReceive(ctx context.Context, c *sdk.Conn, st *site.Site, jobID, actor string) error {
	j := a.jobs.attach(jobID)
	defer a.jobs.detach(j)
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
				a.connectJob(context.WithoutCancel(ctx), st, j, m, nil)
			case "resume":
				a.resumeJob(context.WithoutCancel(ctx), st, j, m, actor)
			case "start":
				a.startJob(context.WithoutCancel(ctx), st, j, m, actor)
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

// connectJob connects the job to the sender m names and compares its tables with
// this site's; the page then picks what to pull (or ready, when set, goes on).
func (a *Admin) connectJob(ctx context.Context, st *site.Site, j *job, m liveMsg, ready func()) {
	j.mu.Lock()
	busy := j.view.State == "connecting" || j.view.State == "waiting_approval" || j.view.State == "transferring"
	old := j.client
	j.mu.Unlock()
	if busy {
		return
	}
	if old != nil {
		_ = old.Close() // replaced by the new connection
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	j.update(func(v *receiveView) {
		*v = receiveView{Type: "receive", Job: j.ID, State: "connecting", Sender: m.URL, Tables: []client.TableState{},
			Progress: map[string]tableProgress{}, Results: map[string]client.Result{}}
	})
	j.mu.Lock()
	j.cancel = cancel
	j.mu.Unlock()
	go func() {
		waited := false
		c, err := pull.Connect(ctx, st, pull.Target{URL: m.URL, Code: m.Code, Password: m.Password, Timeout: connectTimeout,
			Via: "receive page", OnAwaitingApproval: func() {
				waited = true
				j.update(func(v *receiveView) { v.State = "waiting_approval" })
			}})
		if err == nil {
			var tables []client.TableState
			list, lerr := c.ListTables(ctx)
			if lerr == nil {
				tables, lerr = c.Compare(ctx, st.Pool, list)
			}
			if lerr != nil {
				_ = c.Close()
				err = lerr
			} else {
				j.mu.Lock()
				j.client = c
				j.mu.Unlock()
				j.update(func(v *receiveView) { v.State, v.Tables = "ready", tables })
				go a.watchClient(ctx, j, c)
				if ready != nil {
					ready()
				}
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
func (a *Admin) watchClient(ctx context.Context, j *job, c *client.Client) {
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
		_, err := c.Capabilities(context.WithoutCancel(ctx)) // answers at once with why it closed
		if err == nil {
			err = client.ErrClosed
		}
		_ = c.Close()
		code, msg := explain(err, false)
		j.update(func(v *receiveView) { v.State, v.Error, v.Message = "failed", code, msg })
		return
	}
}

// startJob pulls the tables m picked over the job's connection (runPlan).
func (a *Admin) startJob(ctx context.Context, st *site.Site, j *job, m liveMsg, user string) {
	a.runPlan(ctx, st, j, pull.Plan{Tables: m.Tables, Strategy: m.Strategy, Strategies: m.Strategies, CreateMissing: m.CreateMissing, StartedBy: user})
}

// resumeJob resumes the interrupted pull m names: it connects to that pull's
// sender with m's new code and pulls its tables again, each after its last key.
func (a *Admin) resumeJob(ctx context.Context, st *site.Site, j *job, m liveMsg, user string) {
	in, err := pull.Find(ctx, a.log, st, m.Pull)
	if err != nil {
		j.update(func(v *receiveView) { v.Error, v.Message = "not_found", "Not resumed: "+err.Error()+"." })
		return
	}
	plan := in.Plan(user)
	if len(plan.Tables) == 0 {
		j.update(func(v *receiveView) {
			v.Error, v.Message = sdk.CodeInvalidInput, "Not resumed: every table of that pull appends, and resuming would add its rows twice."
		})
		return
	}
	m.URL = in.Sender
	a.connectJob(ctx, st, j, m, func() { a.runPlan(ctx, st, j, plan) })
}

// runPlan pulls plan over the job's connection, showing the progress. A plan naming
// an unknown strategy is refused: the job stays ready and the page says why.
func (a *Admin) runPlan(ctx context.Context, st *site.Site, j *job, plan pull.Plan) {
	j.mu.Lock()
	c := j.client
	ready := j.view.State == "ready"
	j.mu.Unlock()
	if c == nil || !ready || len(plan.Tables) == 0 {
		return
	}
	if err := plan.Check(); err != nil {
		j.update(func(v *receiveView) { v.Error, v.Message = sdk.CodeInvalidInput, "Not started: "+err.Error()+"." })
		return
	}
	var total int64
	totals := map[string]int64{}
	j.mu.Lock()
	for _, t := range j.view.Tables {
		totals[t.Table] = t.Rows
	}
	sender := j.view.Sender
	j.mu.Unlock()
	progress := map[string]tableProgress{}
	for _, t := range plan.Tables {
		total += totals[t]
		progress[t] = tableProgress{Total: totals[t]}
	}
	ctx, cancel := context.WithCancel(ctx)
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
	plan.Progress = func(p client.Progress) {
		if !p.Done && time.Since(lastPush) < progressEvery {
			return
		}
		lastPush = time.Now()
		j.update(func(v *receiveView) { v.progress(p, start) })
	}
	go func() {
		defer cancel()
		results, err := pull.Transfer(ctx, a.log, st, c, sender, plan)
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
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
			if list, lerr := c.ListTables(rctx); lerr == nil {
				if tables, cerr := c.Compare(rctx, st.Pool, list); cerr == nil {
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

// progress takes a table's progress into the view, with its rate and the time
// left, and the whole transfer's since start.
func (v *receiveView) progress(p client.Progress, start time.Time) {
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
}
