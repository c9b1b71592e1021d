package client

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// RangeState is one key range of a split table and how far it got (syncapi.RangeState).
type RangeState = syncapi.RangeState

// DefaultSplitBytes is the sender's table size (heap and TOAST) above which a
// table is split (TransferOptions.SplitBytes): below it, cutting and starting
// several streams costs more than the table takes.
const DefaultSplitBytes int64 = 64 << 20

// DefaultSplitWorkers is how many ranges of a large table are copied at once when
// TransferOptions.SplitWorkers is not set: what the machine can use. A range keeps
// about two cores busy end to end — the sending database's COPY, the receiving
// database's backend writing it, and the two plugins between them — so the default
// is half the cores, at least one (no split) and at most wire.MaxStreams (see
// docs/benchmarks.md, "split"). On one machine holding both sites, as the
// benchmark's, that is the right count; a receiver whose sender runs elsewhere may
// ask for more.
func DefaultSplitWorkers() int {
	return max(1, min(runtime.NumCPU()/2, wire.MaxStreams))
}

// Split reports whether the sender cuts tables into key ranges (split.v1).
func (c Capabilities) Split() bool { return slices.Contains(c.Features, wire.SplitFeature) }

// rangeRun is what one range's stream needs beyond a table's options: where it
// ends, the table's row count (asked once for all ranges) and its importer,
// opened with the others before any range wrote a row.
type rangeRun struct {
	untilKey []string
	total    int64
	im       *importer.Importer
}

// until is the stream's upper key (nil for a whole table, or the last range).
func (r *rangeRun) until() []string {
	if r == nil {
		return nil
	}
	return r.untilKey
}

// count is the table's row count on the sender: known for a range, asked otherwise.
func (r *rangeRun) count(ctx context.Context, c *Client, table string) (int64, error) {
	if r != nil {
		return r.total, nil
	}
	return c.GetCount(ctx, table)
}

// importer is the range's importer, or a new one into target.
func (r *rangeRun) importer(ctx context.Context, pool *pgxpool.Pool, target catalog.Ident, o importer.Options) (*importer.Importer, error) {
	if r != nil && r.im != nil {
		return r.im, nil
	}
	return openImporter(ctx, pool, target, o)
}

// splitWorkers is the ranges to copy at once (TransferOptions.SplitWorkers).
func (o TransferOptions) splitWorkers() int {
	n := o.SplitWorkers
	if n <= 0 {
		n = DefaultSplitWorkers()
	}
	return min(n, wire.MaxStreams)
}

// splitPlan decides whether the table is split and into which ranges: those
// o.Ranges resumes, or those the sender cuts (request:ranges) when it splits
// tables, the table is larger than o.SplitBytes there, has a primary key and no
// foreign key to itself here or there, the strategy is not append (appended rows
// take new keys in the order they come: ranges at once would number them
// otherwise than one stream), the transfer is not resumed after a key, and the
// local pool holds a connection per range and one more. None: one stream.
func (c *Client) splitPlan(ctx context.Context, pool *pgxpool.Pool, sch *catalog.Schema, target catalog.Ident, o TransferOptions) ([]RangeState, error) {
	caps, err := c.Capabilities(ctx)
	if err != nil {
		return nil, err
	}
	if len(o.Ranges) > 0 {
		if !caps.Split() {
			return nil, errors.New("resume by ranges: the sender does not split tables (resume after the result's last key)")
		}
		return slices.Clone(o.Ranges), nil
	}
	n := min(o.splitWorkers(), int(pool.Config().MaxConns)-1)
	if n <= 1 || o.AfterKey != nil || !caps.Split() || !parallelOK(sch, o.Strategy) {
		return nil, nil
	}
	local, err := catalog.GetSchemaIn(ctx, pool, target.Schema, target.Name)
	if err != nil {
		return nil, err
	}
	if !parallelOK(local, o.Strategy) {
		return nil, nil
	}
	var r wire.Ranges
	if err := c.call(ctx, wire.RequestRanges, wire.RangesRequest{Table: sch.Name, Parts: n}, &r); err != nil {
		return nil, err
	}
	limit := o.SplitBytes
	if limit <= 0 {
		limit = DefaultSplitBytes
	}
	if r.Bytes < limit || len(r.Bounds) == 0 {
		return nil, nil
	}
	ranges := make([]RangeState, len(r.Bounds)+1)
	for i, b := range r.Bounds {
		ranges[i].Until, ranges[i+1].After = b, b
	}
	return ranges, nil
}

// splitRows copies a split table (see splitPlan): every range not done at once, a
// stream each (stream:start with its after and until keys) into an importer each,
// all opened before any row is written — so each sees the table as it was, and
// none waits on another's rows: the ranges' keys are disjoint. Each range commits
// its batches in order on its own, so each stops at an exact resume point
// (Result.Ranges); Result.LastKey is the end of the ranges done from the first.
// The rows, the counts and the errors are the ranges' summed. split is false when
// the table goes by one stream instead (res untouched).
func (c *Client) splitRows(ctx context.Context, pool *pgxpool.Pool, sch *catalog.Schema, target catalog.Ident, res Result, o TransferOptions, start time.Time) (_ Result, split bool, err error) {
	table := res.Table
	ranges, err := c.splitPlan(ctx, pool, sch, target, o)
	if err != nil || ranges == nil {
		if err != nil {
			err = fmt.Errorf("transfer %s: split: %w", table, err)
		}
		return res, false, err
	}
	var todo []int
	for i, r := range ranges {
		if !r.Done {
			todo = append(todo, i)
		}
	}
	var cols []string
	for _, col := range sch.Writable() {
		cols = append(cols, col.Name)
	}
	imOpts := importer.Options{Strategy: o.Strategy, Columns: cols, IgnoreUnknownColumns: o.IgnoreMissingColumns}
	ims := make([]*importer.Importer, len(ranges))
	for _, i := range todo {
		im, err := openImporter(ctx, pool, target, imOpts)
		if err != nil || !im.Independent() && len(o.Ranges) == 0 {
			// One stream says why the importer fails, or imports a table whose other
			// unique values could make ranges wait on one another.
			return res, false, nil
		}
		ims[i] = im
	}
	total, err := c.GetCount(ctx, table)
	if err != nil {
		return res, true, err
	}
	res.Requested = total

	var mu sync.Mutex
	applied := make([]int64, len(ranges)) // rows each range applied in this run
	report := func() {                    // mu held
		if o.Progress == nil {
			return
		}
		var rows int64
		for _, n := range applied {
			rows += n
		}
		o.Progress(Progress{Table: table, Rows: rows, Total: total, Elapsed: time.Since(start), LastKey: RangesAppliedKey(ranges), Ranges: slices.Clone(ranges)})
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]Result, len(ranges))
	errs := make([]error, len(ranges))
	var wg sync.WaitGroup
	for _, i := range todo {
		ro := o
		ro.AfterKey, ro.Ranges, ro.Workers = ranges[i].ResumeKey(), nil, 1
		ro.split = &rangeRun{untilKey: ranges[i].Until, total: total, im: ims[i]}
		ro.Progress = func(p Progress) {
			mu.Lock()
			defer mu.Unlock()
			applied[i] = p.Rows
			if p.LastKey != nil {
				ranges[i].LastKey = p.LastKey
			}
			ranges[i].Done = p.Done
			report()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _, err := c.streamRows(rctx, pool, sch, target, Result{Table: table}, ro, start, nil)
			if err != nil {
				cancel() // one range failed: the others stop too, each at its own resume point
			}
			results[i], errs[i] = r, err
		}()
	}
	wg.Wait()
	var first error
	for _, i := range todo {
		r := results[i]
		res.Rows += r.Rows
		res.Bytes += r.Bytes
		res.Created += r.Created
		res.Updated += r.Updated
		res.Skipped += r.Skipped
		res.Failed += r.Failed
		res.Errors = append(res.Errors, r.Errors...)
		if res.DroppedColumns == nil {
			res.DroppedColumns = r.DroppedColumns
		}
		if len(r.LastKey) > 0 {
			ranges[i].LastKey = r.LastKey
		}
		ranges[i].Done = errs[i] == nil
		if errs[i] != nil && (first == nil || errors.Is(first, context.Canceled) && !errors.Is(errs[i], context.Canceled)) {
			first = errs[i]
		}
	}
	res.Ranges, res.LastKey = ranges, RangesAppliedKey(ranges)
	if first == nil && ctx.Err() != nil {
		first = fmt.Errorf("transfer %s: %w", table, ctx.Err())
	}
	if first == nil && len(todo) > 0 {
		// Each range moved the sequences when it ended; once more now all are in.
		first = ims[todo[0]].Finish(ctx)
	}
	if first == nil && o.Progress != nil {
		o.Progress(Progress{Table: table, Rows: res.Rows, Total: total, Elapsed: time.Since(start), Done: true, LastKey: res.LastKey, Ranges: slices.Clone(ranges)})
	}
	return res, true, first
}

// RangesAppliedKey is the key up to which every row of a split table is applied
// (Result.LastKey of one): the end
// of the ranges done from the first, then the last key of the first range not done
// (nil when nothing from the start is).
func RangesAppliedKey(ranges []RangeState) []string {
	var key []string
	for _, r := range ranges {
		if !r.Done {
			if len(r.LastKey) > 0 {
				return r.LastKey
			}
			return key
		}
		key = r.Until
		if key == nil {
			key = r.LastKey // the last range: its last row
		}
	}
	return key
}
