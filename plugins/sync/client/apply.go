package client

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
)

// DefaultWorkers is how many local connections import a table's batches at once
// (TransferOptions.Workers) where the table allows it (parallelOK). A receiving
// database spends an import in one backend: a second one keeps it busy while the
// first commits or waits for the next batch.
const DefaultWorkers = 2

// parallelOK reports whether a table's batches may be imported by several
// connections at once: it has a primary key (batches hold disjoint keys), no foreign
// key to itself (a row may refer to one in a batch not yet committed), and the
// strategy is not append.
func parallelOK(sch *catalog.Schema, s importer.Strategy) bool {
	if len(sch.PrimaryKey) == 0 || s == importer.Append {
		return false
	}
	for _, fk := range sch.ForeignKeys {
		if fk.RefSchema == sch.Schema && fk.RefTable == sch.Name {
			return false
		}
	}
	return true
}

// workers is how many workers import the table of im with options o (see
// TransferOptions.Workers).
func workers(o TransferOptions, im *importer.Importer) int {
	n := o.Workers
	if n <= 0 {
		n = DefaultWorkers
	}
	switch {
	case !parallelOK(im.Schema(), o.Strategy):
		return 1
	case !im.Independent():
		return min(n, 2) // see applier.apply: with two, nothing waits in a circle
	}
	return n
}

// ledger follows a stream's batches from given to applied, from the applier's
// reports, which come in any order: it says which batches were imported in a row
// (to ack) and counts in a Result those committed in a row from the first (so the
// result's last key is an exact resume point). After a failed import nothing
// more counts.
type ledger struct {
	given   map[uint32]given
	done    map[uint32]report
	seen    map[uint32]bool // imported, not yet acked
	applied uint32          // every batch up to this one was reported committed (or not applied)
	acked   uint32          // every batch up to this one was imported
	failed  error
}

// given is what a batch holds, for counting it once committed.
type given struct {
	rows int64
	key  []string
}

// give notes batch seq, of rows rows ending at key.
func (l *ledger) give(seq uint32, rows int64, key []string) {
	if l.given == nil {
		l.given = map[uint32]given{}
	}
	l.given[seq] = given{rows: rows, key: key}
}

// imported notes batch seq imported and returns the last of the batches now
// imported in a row since the last call that returned some, and how many they are.
func (l *ledger) imported(seq uint32) (last uint32, n int) {
	if l.seen == nil {
		l.seen = map[uint32]bool{}
	}
	l.seen[seq] = true
	for l.seen[l.acked+1] {
		delete(l.seen, l.acked+1)
		l.acked++
		n++
	}
	return l.acked, n
}

// committed takes a report of batches committed (or not applied) and adds to res
// those now committed in a row; moved says whether it added any. It returns the
// first import that failed, once one has.
func (l *ledger) committed(r report, res *Result) (moved bool, err error) {
	if l.done == nil {
		l.done = map[uint32]report{}
	}
	l.done[r.from] = r
	for {
		r, ok := l.done[l.applied+1]
		if !ok {
			break
		}
		delete(l.done, l.applied+1)
		if r.err != nil && l.failed == nil && !errors.Is(r.err, errNotApplied) {
			l.failed = r.err
		}
		if r.err == nil && l.failed == nil {
			for s := r.from; s <= r.to; s++ {
				res.Rows += l.given[s].rows
			}
			res.LastKey = l.given[r.to].key
			res.Created += r.res.Created
			res.Updated += r.res.Updated
			res.Skipped += r.res.Skipped
			res.Failed += r.res.Failed
			res.Errors = append(res.Errors, r.res.Errors...)
			moved = true
		}
		for s := r.from; s <= r.to; s++ {
			delete(l.given, s)
		}
		l.applied = r.to
	}
	return moved, l.failed
}

// applier imports a stream's batches into the local table and reports each batch
// twice: once imported (the receiver acks it, so the sender goes on) and once
// committed, in runs from the first batch — what is committed is always a run of
// batches from the first, so the last batch committed is an exact point to resume
// from, however the transfer stops.
//
// One worker imports batch after batch into one transaction and commits it every
// importer.CommitBytes or CommitInterval (ImportCopyDeferred). Several workers —
// each an importer of its own, so its own connection — take batch i in turn (i mod
// n); each batch is its own transaction, and the transactions commit in batch
// order: a batch commits only once the one before it did.
type applier struct {
	workers []*applyWorker
	reports chan report
	wg      sync.WaitGroup
	stopped sync.Once

	pool      *pgxpool.Pool
	mu        sync.Mutex
	committed uint32            // every batch up to this one is committed
	broken    bool              // a batch failed: no later batch commits
	pids      map[uint32]uint32 // the database backend importing each batch

	next uint32 // the next batch to give out
}

type applyWorker struct {
	im  *importer.Importer
	in  chan job
	seq uint32 // the batch it imports (for its OnBegin)
}

// job is one batch for a worker.
type job struct {
	seq    uint32
	data   []byte
	binary bool
}

// report says that batch seq was imported (imported set), or that batches
// from…to were committed (res their sum, err nil) or will never be (err says why).
type report struct {
	imported bool
	seq      uint32
	from, to uint32
	res      importer.Result
	err      error
}

// newApplier starts n workers importing into target with o; the first uses im.
// They run on a context a cancel does not cut: a batch under way is finished (or
// not committed), never cut mid-COPY.
func newApplier(ctx context.Context, pool *pgxpool.Pool, target catalog.Ident, o importer.Options, im *importer.Importer, n int) (*applier, error) {
	a := &applier{reports: make(chan report, 64), next: 1, pool: pool, pids: map[uint32]uint32{}}
	wctx := context.WithoutCancel(ctx)
	for i := range n {
		w := &applyWorker{im: im, in: make(chan job, 1)}
		if i > 0 {
			var err error
			if w.im, err = openImporter(ctx, pool, target, o); err != nil {
				a.stop()
				return nil, err
			}
		}
		w.im.OnBegin(func(pid uint32) {
			a.mu.Lock()
			a.pids[w.seq] = pid
			a.mu.Unlock()
		})
		a.workers = append(a.workers, w)
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if n == 1 {
				a.runGrouped(wctx, w)
				return
			}
			for j := range w.in {
				a.apply(wctx, w, j)
			}
		}()
	}
	return a, nil
}

// runGrouped is the one worker's loop: batches share a transaction until the
// importer commits it, and the batches it held are reported committed together.
func (a *applier) runGrouped(ctx context.Context, w *applyWorker) {
	var held report // the batches in the open transaction
	broken := false
	for j := range w.in {
		if broken {
			// After a failure nothing more is imported: a batch committed after a
			// missing one would leave a gap below the resume point.
			a.reports <- report{from: j.seq, to: j.seq, err: errNotApplied}
			continue
		}
		r, committed, err := w.im.ImportCopyDeferred(ctx, j.data, j.binary)
		if held.from == 0 {
			held.from = j.seq
		}
		held.to = j.seq
		if err != nil {
			// The open transaction rolled back with this batch.
			held.err = err
			a.reports <- held
			held, broken = report{}, true
			continue
		}
		a.reports <- report{imported: true, seq: j.seq}
		held.res.Add(r)
		if committed {
			a.reports <- held
			held = report{}
		}
	}
	if held.from != 0 {
		held.err = w.im.Commit(ctx)
		a.reports <- held
	}
}

// apply imports j, waits for the batch before it to commit, then commits j — or,
// when that batch (or any before it) failed, rolls j back.
//
// While j waits, its transaction holds what it wrote, and the batch before may
// wait on that (a unique value that moved from one row to another across the two
// batches): a wait PostgreSQL cannot see, since j waits in this process. So the
// wait watches the batch before: when its backend is found waiting for a lock, j
// lets go (rolls back), waits — holding nothing — for it to commit, and is
// imported again. With two workers only j can hold what the batch before waits
// for, so nothing waits in a circle.
func (a *applier) apply(ctx context.Context, w *applyWorker, j job) {
	w.seq = j.seq
	acked := false
	for {
		r, err := w.im.ImportCopyOpen(ctx, j.data, j.binary)
		if importer.IsDeadlock(err) {
			// PostgreSQL ended j to free the batch before (each waited on the
			// other's rows): once that one committed, j goes again.
			if a.waitCommitted(j.seq - 1) {
				continue
			}
			err = errNotApplied
		}
		if err == nil && !acked {
			a.reports <- report{imported: true, seq: j.seq}
			acked = true
		}
		if err == nil {
			switch a.waitBefore(ctx, j.seq) {
			case beforeBroken:
				w.im.Rollback()
				err = errNotApplied
			case beforeBlocked:
				w.im.Rollback()
				if a.waitCommitted(j.seq - 1) {
					continue
				}
				err = errNotApplied
			}
		}
		if err == nil {
			err = w.im.Commit(ctx)
		}
		a.mu.Lock()
		if err == nil {
			a.committed = j.seq
		} else {
			a.broken = true
		}
		delete(a.pids, j.seq-1)
		a.mu.Unlock()
		a.reports <- report{from: j.seq, to: j.seq, res: r, err: err}
		return
	}
}

// What the batch before became, for a batch waiting to commit.
const (
	beforeCommitted = iota
	beforeBroken
	beforeBlocked
)

// waitPoll is how often a batch waiting to commit looks at the one before;
// blockedAfter is how long the one before may wait on a lock before the waiting
// batch lets go.
const (
	waitPoll     = 5 * time.Millisecond
	blockedAfter = 100 * time.Millisecond
)

// waitBefore waits until the batch before seq committed, failed, or is found
// waiting for a lock.
func (a *applier) waitBefore(ctx context.Context, seq uint32) int {
	checked := time.Now()
	for {
		a.mu.Lock()
		committed, broken, pid := a.committed, a.broken, a.pids[seq-1]
		a.mu.Unlock()
		switch {
		case committed >= seq-1:
			return beforeCommitted
		case broken:
			return beforeBroken
		}
		if pid != 0 && time.Since(checked) >= blockedAfter {
			checked = time.Now()
			var blocked bool
			err := a.pool.QueryRow(ctx, `SELECT coalesce(bool_or(wait_event_type = 'Lock'), false) FROM pg_stat_activity WHERE pid = $1`, int64(pid)).Scan(&blocked)
			if err == nil && blocked {
				return beforeBlocked
			}
		}
		time.Sleep(waitPoll)
	}
}

// waitCommitted waits, holding no transaction, until batch seq committed; false
// when a batch up to it failed instead.
func (a *applier) waitCommitted(seq uint32) bool {
	for {
		a.mu.Lock()
		committed, broken := a.committed, a.broken
		a.mu.Unlock()
		if committed >= seq {
			return true
		}
		if broken {
			return false
		}
		time.Sleep(waitPoll)
	}
}

// give hands the next batch to its worker; it waits while that worker is busy
// and already holds its next batch.
func (a *applier) give(ctx context.Context, data []byte, binary bool) error {
	j := job{seq: a.next, data: data, binary: binary}
	w := a.workers[int(a.next-1)%len(a.workers)]
	a.next++
	select {
	case w.in <- j:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop lets the workers finish the batches given (committing them in order) and
// ends them; their last reports stay in reports. Only the first call acts.
func (a *applier) stop() {
	a.stopped.Do(func() {
		for _, w := range a.workers {
			close(w.in)
		}
		a.wg.Wait()
	})
}

// errNotApplied is a batch's outcome when one before it failed: it is rolled
// back, so that what is committed stays a run from the first batch.
var errNotApplied = errors.New("not applied: an earlier batch failed")
