// Package pull brings a sender's tables into this site's database: it connects to
// the sender through the outgoing URL guard, transfers the tables with the
// strategies asked for (an unknown strategy is refused before anything moves), and
// writes the outcome to the transfer history. The pull operation, the Receive page
// and scheduled remotes all pull through it.
package pull

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/urlguard"
	"github.com/fiberkit/fiberkit/plugins/sync/remote"
	"github.com/fiberkit/fiberkit/plugins/sync/syncmetrics"
)

// Target is the sender a pull connects to, and as whom.
type Target struct {
	URL string
	// Code and Password open a code session; Token a permanent connection instead.
	Code     string
	Password string
	Token    string
	// Timeout bounds connecting, approval included (0: the client's default).
	Timeout time.Duration
	// Via and Caller tell the sender who asks (its receiver info): the page, the
	// operation or the remote, and for an operation the calling module or user.
	Via    string
	Caller string
	// OnAwaitingApproval is called when the sender holds the connection for approval.
	OnAwaitingApproval func()
}

// Plan is what a pull transfers, and how.
type Plan struct {
	// Tables to pull; empty means every table the sender offers.
	Tables []string
	// Strategy for every table ("" = skip), unless Strategies names one for it.
	Strategy   string
	Strategies map[string]string
	// CreateMissing creates tables this site lacks from the sender's definition.
	CreateMissing bool
	// IgnoreMissingColumns imports without the sender's columns a local table lacks.
	IgnoreMissingColumns bool
	BatchSize            int
	// Progress, when set, is called as batches are imported.
	Progress func(client.Progress)
	// StartedBy names who started the pull in the history.
	StartedBy string
	// AfterKeys resume tables after these keys (an interrupted pull's last keys:
	// see Interrupted and Resume).
	AfterKeys map[string][]string
	// Ranges resume split tables, each range after its own last key (an
	// interrupted pull's ranges); a table named here is resumed by them, not by
	// AfterKeys.
	Ranges map[string][]client.RangeState
	// SplitWorkers is how many key ranges of a large table are copied at once
	// (client.TransferOptions.SplitWorkers: 0 the default, 1 never split).
	SplitWorkers int
	// Resumes is the id of the interrupted pull this one takes over: once it ran,
	// that pull's entries say resumed.
	Resumes string
}

// strategies is a plan's strategies, checked.
type strategies struct {
	def      importer.Strategy
	perTable map[string]importer.Strategy
}

// of returns table's strategy.
func (s strategies) of(table string) importer.Strategy {
	if v, ok := s.perTable[table]; ok {
		return v
	}
	return s.def
}

// Check refuses a plan naming an unknown strategy (the error wraps
// importer.ErrBadStrategy).
func (p Plan) Check() error {
	_, err := p.strategies()
	return err
}

func (p Plan) strategies() (strategies, error) {
	def, err := importer.ParseStrategy(p.Strategy)
	if err != nil {
		return strategies{}, err
	}
	s := strategies{def: def, perTable: map[string]importer.Strategy{}}
	for table, name := range p.Strategies {
		v, err := importer.ParseStrategy(name)
		if err != nil {
			return strategies{}, fmt.Errorf("%s: %w", table, err)
		}
		s.perTable[table] = v
	}
	return s, nil
}

// ConnectError is a pull that could not connect to the sender (unreachable,
// refused, timed out); a refused URL is a urlguard refusal instead.
type ConnectError struct {
	Err error
}

// Error implements error: the client's own message.
func (e *ConnectError) Error() string { return e.Err.Error() }

// Unwrap returns the client's error (a *client.RemoteError, *client.HTTPError …).
func (e *ConnectError) Unwrap() error { return e.Err }

// Connect connects to t's sender from st, guarded by st.Outgoing: a refused URL
// matches urlguard.Refused. The connection counts as a receiving session in the
// metrics while it is up.
func Connect(ctx context.Context, st *site.Site, t Target) (*client.Client, error) {
	info := map[string]any{"site": st.Public, "via": t.Via}
	if t.Caller != "" {
		info["caller"] = t.Caller
	}
	opts, err := st.Outgoing(ctx, t.URL, client.Options{Token: t.Token, Password: t.Password, Timeout: t.Timeout,
		ReceiverInfo: info, OnAwaitingApproval: t.OnAwaitingApproval})
	if err != nil {
		return nil, err
	}
	c, err := client.Connect(ctx, t.URL, t.Code, opts)
	if err != nil {
		return nil, err
	}
	st.Metrics.SessionOpened(syncmetrics.Receive)
	go func() {
		// The client says when it is closed or dropped only by Connected.
		tick := time.NewTicker(sessionPoll)
		defer tick.Stop()
		for range tick.C {
			if !c.Connected() {
				st.Metrics.SessionClosed(syncmetrics.Receive)
				return
			}
		}
	}()
	return c, nil
}

// sessionPoll is how often Connect looks whether its connection is still up.
const sessionPoll = 250 * time.Millisecond

// Transfer pulls p's tables over c, connected to sender, into st's database. Before
// rows move, the pull is recorded in the history as running (a table each), and
// how far each table got is recorded as batches land, so a receiver that dies
// mid-pull keeps the record (see Recover); at the end each table's outcome is
// recorded, and counted in the metrics. The results carry a result for every table
// transferred, a failed one saying why, even when an error ends the pull.
func Transfer(ctx context.Context, log *slog.Logger, st *site.Site, c *client.Client, sender string, p Plan) (map[string]client.Result, error) {
	s, err := p.strategies()
	if err != nil {
		return nil, err
	}
	tables := p.Tables
	if len(tables) == 0 {
		list, err := c.ListTables(ctx)
		if err != nil {
			recordFailure(ctx, log, st, sender, p.StartedBy, s, err)
			return nil, err
		}
		for _, t := range list {
			tables = append(tables, t.Name)
		}
	}
	rec := begin(ctx, log, st, sender, p, s, tables)
	opts := client.TransferAllOptions{Strategy: s.def, Strategies: s.perTable,
		TransferOptions: client.TransferOptions{CreateMissing: p.CreateMissing, BatchSize: p.BatchSize,
			IgnoreMissingColumns: p.IgnoreMissingColumns, Progress: rec.progress(p.Progress), SplitWorkers: p.SplitWorkers}}
	res, err := transferAll(ctx, st, c, tables, p.AfterKeys, p.Ranges, opts)
	rec.finish(ctx, res, err)
	if p.Resumes != "" && len(res) > 0 {
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), historyTimeout)
		if herr := st.History.MarkResumed(hctx, p.Resumes); herr != nil {
			log.Error("mark the interrupted pull resumed", "pull", p.Resumes, "err", herr)
		}
		cancel()
	}
	return res, err
}

// transferAll transfers tables with o: those afterKeys or ranges name one table at
// a time, each resumed after its key or by its ranges, once the others went
// together.
func transferAll(ctx context.Context, st *site.Site, c *client.Client, tables []string, afterKeys map[string][]string,
	ranges map[string][]client.RangeState, o client.TransferAllOptions) (map[string]client.Result, error) {
	var whole, resumed []string
	for _, t := range tables {
		if len(afterKeys[t]) > 0 || len(ranges[t]) > 0 {
			resumed = append(resumed, t)
		} else {
			whole = append(whole, t)
		}
	}
	results := map[string]client.Result{}
	var first error
	run := func(tables []string, after []string, ranges []client.RangeState) {
		if len(tables) == 0 || (first != nil && !c.Connected()) {
			return
		}
		o := o
		o.Tables, o.AfterKey, o.Ranges = tables, after, ranges
		if len(ranges) > 0 {
			o.AfterKey = nil
		}
		res, err := c.TransferAll(ctx, st.Pool, o)
		for t, r := range res {
			results[t] = r
		}
		if first == nil {
			first = err
		}
	}
	run(whole, nil, nil)
	for _, t := range resumed {
		run([]string{t}, afterKeys[t], ranges[t])
	}
	return results, first
}

// Run is a whole pull: check the plan, connect, transfer, close. A connection that
// failed (not a refused URL) is recorded in the history and returned as a
// *ConnectError.
func Run(ctx context.Context, log *slog.Logger, st *site.Site, t Target, p Plan) (map[string]client.Result, error) {
	s, err := p.strategies()
	if err != nil {
		return nil, err
	}
	c, err := Connect(ctx, st, t)
	if err != nil {
		if urlguard.Refused(err) {
			return nil, err
		}
		recordFailure(ctx, log, st, t.URL, p.StartedBy, s, err)
		return nil, &ConnectError{Err: err}
	}
	defer c.Close()
	return Transfer(ctx, log, st, c, t.URL, p)
}

// Remote pulls a remote's tables with its token (a scheduled run, or one run now).
func Remote(ctx context.Context, log *slog.Logger, st *site.Site, r remote.Remote, token string) (map[string]client.Result, error) {
	return Run(ctx, log, st, Target{URL: r.URL, Token: token, Via: "remote " + r.Name},
		Plan{Tables: r.Tables, Strategy: r.Strategy, CreateMissing: true, StartedBy: "remote:" + r.Name})
}
