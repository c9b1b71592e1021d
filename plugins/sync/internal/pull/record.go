package pull

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/plugins/sync/syncmetrics"
)

// historyTimeout bounds a pull's history writes, which go on after the pull's
// context ended (a cancelled pull is recorded as cancelled).
const historyTimeout = 10 * time.Second

// checkpointEvery is how often a running pull records how far each table got.
const checkpointEvery = 500 * time.Millisecond

// recorder records a pull in the history and the metrics: running entries before
// rows move (history.Begin), each table's rows and last key as batches land, every
// table's outcome at the end.
type recorder struct {
	log    *slog.Logger
	st     *site.Site
	sender string
	by     string
	s      strategies
	tables []string
	fresh  map[string]bool
	pull   *history.Pull // nil when the pull could not be recorded as running
	start  time.Time

	mu    sync.Mutex
	seen  map[string]client.Progress // each table's latest progress
	dirty map[string]bool            // progress not yet checkpointed

	stop, stopped chan struct{}
}

// begin records a pull of tables about to start (afterKeys: where resumed tables
// resume) and starts checkpointing it. A history failure is logged: the pull runs
// unrecorded rather than not at all.
func begin(ctx context.Context, log *slog.Logger, st *site.Site, sender string, p Plan, s strategies, tables []string) *recorder {
	r := &recorder{log: log, st: st, sender: sender, by: p.StartedBy, s: s, tables: tables, fresh: map[string]bool{}, start: time.Now(),
		seen: map[string]client.Progress{}, dirty: map[string]bool{}, stop: make(chan struct{}), stopped: make(chan struct{})}
	entries := make([]history.Transfer, 0, len(tables))
	for _, t := range tables {
		entries = append(entries, history.Transfer{Direction: syncmetrics.Receive, Peer: sender, Table: t, Strategy: string(s.of(t)),
			StartedBy: p.StartedBy, LastKey: p.AfterKeys[t], Ranges: p.Ranges[t]})
		if s.of(t) != importer.Append { // appended rows get keys of their own: no resume key here
			fresh, err := freshTarget(ctx, st, t)
			if err != nil {
				log.Warn("pull: look at the local table", "table", t, "err", err)
			}
			r.fresh[t] = fresh
		}
		st.Metrics.TransferStarted(syncmetrics.Receive, string(s.of(t)))
	}
	pull, err := st.History.Begin(ctx, entries, r.fresh)
	if err != nil {
		log.Error("record the pull as running", "peer", sender, "err", err)
	}
	r.pull = pull
	go r.checkpoints(ctx)
	return r
}

// progress returns the Progress callback of the transfer: it notes each table's
// advance for the next checkpoint, then calls next (the plan's own).
func (r *recorder) progress(next func(client.Progress)) func(client.Progress) {
	return func(p client.Progress) {
		r.mu.Lock()
		r.seen[p.Table], r.dirty[p.Table] = p, true
		r.mu.Unlock()
		if next != nil {
			next(p)
		}
	}
}

// checkpoints records the tables' advance every checkpointEvery until finish.
func (r *recorder) checkpoints(ctx context.Context) {
	defer close(r.stopped)
	if r.pull == nil {
		return
	}
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		todo := map[string]client.Progress{}
		for table := range r.dirty {
			todo[table] = r.seen[table]
		}
		r.dirty = map[string]bool{}
		r.mu.Unlock()
		for table, p := range todo {
			if p.Ranges != nil {
				// A split table: each range's last key as committed, and every
				// row up to p.LastKey applied.
				if err := r.pull.CheckpointRanges(ctx, table, p.Ranges); err != nil {
					r.log.Warn("pull: checkpoint", "table", table, "err", err)
				}
				if err := r.pull.Checkpoint(ctx, table, p.Rows, p.LastKey); err != nil {
					r.log.Warn("pull: checkpoint", "table", table, "err", err)
				}
				continue
			}
			var key []string
			if r.fresh[table] {
				var err error
				if key, err = LocalLastKey(ctx, r.st, table); err != nil {
					r.log.Warn("pull: read the last key applied", "table", table, "err", err)
				}
			}
			if err := r.pull.Checkpoint(ctx, table, p.Rows, key); err != nil {
				r.log.Warn("pull: checkpoint", "table", table, "err", err)
			}
		}
	}
}

// finish stops checkpointing and records every table's outcome — one stopped by a
// cancellation as cancelled, one the pull never reached as failed (or cancelled)
// with the pull's error — in the history and the metrics.
func (r *recorder) finish(ctx context.Context, results map[string]client.Result, pullErr error) {
	close(r.stop)
	<-r.stopped
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), historyTimeout)
	defer cancel()
	cancelled := errors.Is(pullErr, context.Canceled)
	outcomes := make([]history.Transfer, 0, len(r.tables))
	for _, table := range r.tables {
		strategy := string(r.s.of(table))
		rec := history.Transfer{Direction: syncmetrics.Receive, Peer: r.sender, Table: table, Strategy: strategy, StartedBy: r.by, Status: syncmetrics.Done}
		res, ok := results[table]
		switch {
		case ok:
			rec.Requested, rec.Rows, rec.Bytes, rec.Created, rec.Updated, rec.Skipped, rec.Failed, rec.Duration, rec.LastKey, rec.Ranges =
				res.Requested, res.Rows, res.Bytes, res.Created, res.Updated, res.Skipped, res.Failed, res.Duration, res.LastKey, res.Ranges
			rec.Error = res.Error
		case pullErr != nil:
			rec.Error = "not transferred: " + pullErr.Error()
		default:
			rec.Error = "not transferred"
		}
		if rec.Error != "" {
			rec.Status = syncmetrics.Failed
			if cancelled {
				rec.Status = syncmetrics.Cancelled
			}
		}
		switch rec.Status {
		case syncmetrics.Done:
			r.st.Metrics.TransferFinished(syncmetrics.Receive, strategy, rec.Duration)
		case syncmetrics.Cancelled:
			r.st.Metrics.TransferCancelled(syncmetrics.Receive, strategy, rec.Duration)
		default:
			r.st.Metrics.TransferFailed(syncmetrics.Receive, strategy, rec.Duration)
		}
		r.st.Metrics.Moved(syncmetrics.Receive, rec.Rows, rec.Bytes)
		outcomes = append(outcomes, rec)
	}
	if r.pull != nil {
		if err := r.pull.Finish(ctx, outcomes); err != nil {
			r.log.Error("record the pull's outcome in the history", "peer", r.sender, "err", err)
		}
		return
	}
	for _, rec := range outcomes {
		if _, err := r.st.History.Record(ctx, rec); err != nil {
			r.log.Error("record pull in the history", "peer", r.sender, "table", rec.Table, "err", err)
		}
	}
}

// recordFailure writes the one history row of a pull that failed before any table
// (refused, unreachable).
func recordFailure(ctx context.Context, log *slog.Logger, st *site.Site, peer, by string, s strategies, pullErr error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), historyTimeout)
	defer cancel()
	status := syncmetrics.Failed
	if errors.Is(pullErr, context.Canceled) {
		status = syncmetrics.Cancelled
	}
	if _, err := st.History.Record(ctx, history.Transfer{Direction: syncmetrics.Receive, Peer: peer, Table: "(pull)", Strategy: string(s.def),
		Status: status, Error: pullErr.Error(), StartedBy: by}); err != nil {
		log.Error("record pull in the history", "peer", peer, "err", err)
	}
}

// freshTarget reports whether table's local target (public, the exact name) is
// missing or empty: rows then land in the sender's key order, so its greatest key
// is the last one applied.
func freshTarget(ctx context.Context, st *site.Site, table string) (bool, error) {
	id, err := catalog.ResolveIn(ctx, st.Pool, "public", table)
	if errors.Is(err, catalog.ErrUnknownTable) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	var empty bool
	if err := st.Pool.QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM `+id.Quoted()+`)`).Scan(&empty); err != nil {
		return false, fmt.Errorf("look into %s: %w", id, err)
	}
	return empty, nil
}

// LocalLastKey returns the greatest primary key of table's local target (public,
// the exact name) as text, in the exporter's text settings (nil for an empty table
// or one without a primary key).
func LocalLastKey(ctx context.Context, st *site.Site, table string) ([]string, error) {
	return LocalLastKeyIn(ctx, st, table, nil, nil)
}

// LocalLastKeyIn is LocalLastKey among the keys after after (nil: from the start)
// up to and including until (nil: to the end): one range of a split table. The
// bounds go as values, cast to the key's types.
func LocalLastKeyIn(ctx context.Context, st *site.Site, table string, after, until []string) ([]string, error) {
	sch, err := catalog.GetSchemaIn(ctx, st.Pool, "public", table)
	if err != nil || len(sch.PrimaryKey) == 0 {
		return nil, err
	}
	cols := make([]string, len(sch.PrimaryKey))
	keys := make([]string, len(sch.PrimaryKey))
	order := make([]string, len(sch.PrimaryKey))
	for i, k := range sch.PrimaryKey {
		q := pgx.Identifier{k}.Sanitize()
		cols[i], keys[i], order[i] = q+"::text", q, q+" DESC"
	}
	var conds []string
	var args []any
	bound := func(key []string, op string) error {
		if key == nil {
			return nil
		}
		if len(key) != len(sch.PrimaryKey) {
			return fmt.Errorf("last key of %s: a bound of %d values for a key of %d columns", table, len(key), len(sch.PrimaryKey))
		}
		vals := make([]string, len(key))
		for i, v := range key {
			c, _ := sch.Column(sch.PrimaryKey[i])
			args = append(args, v)
			vals[i] = fmt.Sprintf("$%d::text::%s", len(args), c.Type)
		}
		conds = append(conds, "("+strings.Join(keys, ", ")+") "+op+" ("+strings.Join(vals, ", ")+")")
		return nil
	}
	if err := bound(after, ">"); err != nil {
		return nil, err
	}
	if err := bound(until, "<="); err != nil {
		return nil, err
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	var key []string
	err = pgx.BeginFunc(ctx, st.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, catalog.TextSettings); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `SELECT ARRAY[`+strings.Join(cols, ", ")+`] FROM `+catalog.IdentOf(sch).Quoted()+where+
			` ORDER BY `+strings.Join(order, ", ")+` LIMIT 1`, args...).Scan(&key)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("last key of %s: %w", table, err)
	}
	return key, nil
}
