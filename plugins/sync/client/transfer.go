package client

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/ddl"
	"github.com/fiberkit/fiberkit/plugins/sync/exporter"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// Progress reports a transfer's advance, after every batch.
type Progress struct {
	Table string `json:"table"`
	// Rows are the rows applied (committed) so far.
	Rows    int64         `json:"rows"`
	Total   int64         `json:"total"`
	Batches int           `json:"batches"`
	Elapsed time.Duration `json:"elapsed"`
	Done    bool          `json:"done"`
	// LastKey is the key of the last row applied (of a split table: every row up
	// to it is).
	LastKey []string `json:"last_key,omitempty"`
	// Ranges are a split table's ranges as far as they got (see Result.Ranges).
	Ranges []RangeState `json:"ranges,omitempty"`
}

// TransferOptions configure Transfer.
type TransferOptions struct {
	// Strategy for rows whose key exists locally (default skip).
	Strategy importer.Strategy
	// BatchSize is rows per batch (default wire.DefaultBatchRows).
	BatchSize int
	// CreateMissing creates the table locally when it does not exist.
	CreateMissing bool
	// Schema is the local schema the sender's tables are written to, named by the
	// receiving side (default public). A table is written under the exact name the
	// sender listed, dots and all: one listed as "a.b" goes to Schema."a.b", never to
	// a schema a. Nothing a sender sends chooses the schema. A sender without the
	// fast path (PhoenixKit's) is pulled into public only.
	Schema string
	// IgnoreMissingColumns imports a table without the sender's columns the local
	// table lacks (Result.DroppedColumns lists them) instead of failing it.
	IgnoreMissingColumns bool
	// Compression of the batches: "" or wire.CompressionAuto (the default: none
	// while the link keeps up, zstd once it is what holds the transfer back),
	// wire.CompressionZstd (always) or wire.CompressionNone.
	Compression string
	// Workers is how many local connections import a table's batches at once
	// (default DefaultWorkers; 1: one). A table with a foreign key to itself or
	// without a primary key, and append, get one; a table holding rows with a
	// unique index besides its key at most two (see applier). Batches commit in order whatever
	// the number: what a stopped transfer applied is a run from its first batch.
	Workers int
	// AfterKey resumes after this key (Result.LastKey of an interrupted transfer).
	AfterKey []string
	// SplitWorkers is how many key ranges of one table are copied at once, each by
	// a stream of its own and one local connection, when the sender splits tables
	// (wire.SplitFeature) and the table is larger than SplitBytes there (default
	// DefaultSplitWorkers(); 1: never split; at most wire.MaxStreams). A table
	// without a primary key, with a foreign key to itself, or appended, is never
	// split; nor is one resumed after AfterKey.
	SplitWorkers int
	// SplitBytes is the sender's table size above which a table is split (default
	// DefaultSplitBytes).
	SplitBytes int64
	// Ranges resume a split table: each range after its own last key
	// (Result.Ranges of an interrupted transfer); the done ones are left alone.
	Ranges []RangeState
	// split is set on the options of one range's stream (see splitRows).
	split *rangeRun
	// Progress, when set, is called after every batch.
	Progress func(Progress)
}

// Result is one table's outcome (syncapi.TableResult, which the pull operation answers).
type Result = syncapi.TableResult

// ErrTargetRefused is returned (wrapped) when the local table a sender's table would be
// written to is not one a receiver writes: a name PostgreSQL cannot hold as given, a
// kit table, a system schema, or a name that resolves to another table here.
var ErrTargetRefused = errors.New("local table refused")

// maxIdentLen is the longest identifier PostgreSQL keeps whole (NAMEDATALEN - 1); a
// longer one would be cut to another table's name.
const maxIdentLen = 63

// target is the local table the sender's table, as the sender listed it, is written
// to: the exact name in o.Schema (public unless the receiving side named another).
func (o TransferOptions) target(table string) (catalog.Ident, error) {
	schema := o.Schema
	if schema == "" {
		schema = "public"
	}
	for _, n := range []string{schema, table} {
		if n == "" || len(n) > maxIdentLen || strings.IndexByte(n, 0) >= 0 {
			return catalog.Ident{}, fmt.Errorf("%w: %q is not a name PostgreSQL keeps as given", ErrTargetRefused, n)
		}
	}
	if catalog.IsSecretTable(table) {
		return catalog.Ident{}, fmt.Errorf("%w: %q is reserved for the kit", ErrTargetRefused, table)
	}
	if strings.HasPrefix(schema, "pg_") || schema == "information_schema" {
		return catalog.Ident{}, fmt.Errorf("%w: schema %q is the system's", ErrTargetRefused, schema)
	}
	return catalog.Ident{Schema: schema, Name: table}, nil
}

// Transfer copies one table from the sender into the local database: schema, then
// every row through the fast path, imported with the strategy batch by batch (each
// batch in one local transaction). The rows go to the table o.Schema names under the
// sender's exact name (see TransferOptions.Schema). On failure the result holds what
// was applied and the last key, for resuming.
func (c *Client) Transfer(ctx context.Context, pool *pgxpool.Pool, table string, o TransferOptions) (Result, error) {
	res := Result{Table: table}
	target, err := o.target(table)
	if err != nil {
		return res, fmt.Errorf("transfer %s: %w", table, err)
	}
	sch, err := c.GetSchema(ctx, table)
	if err != nil {
		return res, err
	}
	if _, err := ensureTable(ctx, pool, target, sch, &res, o); err != nil {
		return res, err
	}
	return c.transferRows(ctx, pool, sch, target, res, o)
}

// ensureTable checks that target exists, or creates it from the sender's definition
// when o.CreateMissing (res says so, with ddl's warnings), returning the definition
// as created (nil when the table was there).
func ensureTable(ctx context.Context, pool *pgxpool.Pool, target catalog.Ident, sch *catalog.Schema, res *Result, o TransferOptions) (*catalog.Schema, error) {
	_, err := catalog.ResolveIn(ctx, pool, target.Schema, target.Name)
	switch {
	case err == nil:
		return nil, nil
	case !errors.Is(err, catalog.ErrUnknownTable):
		return nil, fmt.Errorf("transfer %s: %w", res.Table, err)
	case !o.CreateMissing:
		return nil, fmt.Errorf("transfer %s: the table %s does not exist here (set CreateMissing to create it)", res.Table, target.Quoted())
	}
	local, dr, err := createLocal(ctx, pool, target, sch)
	res.Warnings = append(res.Warnings, dr.Warnings...)
	if err != nil {
		return nil, fmt.Errorf("transfer %s: %w", res.Table, err)
	}
	res.TableCreated = true
	return local, nil
}

// createLocal creates target from the sender's definition, which names the table
// but never chooses where it goes, and returns the definition as created.
func createLocal(ctx context.Context, pool *pgxpool.Pool, target catalog.Ident, sch *catalog.Schema) (*catalog.Schema, ddl.Result, error) {
	local := *sch
	local.Schema, local.Name = target.Schema, target.Name
	res, err := ddl.Create(ctx, pool, &local)
	return &local, res, err
}

// openImporter prepares the import into exactly target. importer.New reads a name as
// catalog.Resolve does (public first, then split at a dot): the table it finds must be
// target, or nothing is imported.
func openImporter(ctx context.Context, pool *pgxpool.Pool, target catalog.Ident, o importer.Options) (*importer.Importer, error) {
	name := target.Name
	if target.Schema != "public" {
		name = target.Schema + "." + target.Name
	}
	if err := resolvesTo(ctx, pool, name, target); err != nil {
		return nil, err
	}
	im, err := importer.New(ctx, pool, name, o)
	if err != nil {
		return nil, err
	}
	if got := catalog.IdentOf(im.Schema()); !sameTable(got, target) {
		return nil, fmt.Errorf("import %s: %w: the name resolves to %s here", target.Quoted(), ErrTargetRefused, got.Quoted())
	}
	return im, nil
}

func sameTable(a, b catalog.Ident) bool { return a.Schema == b.Schema && a.Name == b.Name }

func (c *Client) transferRows(ctx context.Context, pool *pgxpool.Pool, sch *catalog.Schema, target catalog.Ident, res Result, o TransferOptions) (Result, error) {
	start := time.Now()
	caps, err := c.Capabilities(ctx)
	if err != nil {
		return res, fmt.Errorf("transfer %s: %w", res.Table, err)
	}
	if caps.Stream() {
		var split bool
		res, split, err = c.splitRows(ctx, pool, sch, target, res, o, start)
		if !split && err == nil {
			res, _, err = c.streamRows(ctx, pool, sch, target, res, o, start, nil)
		}
	} else {
		res, err = c.pageRows(ctx, pool, target, res, o, start) // a PhoenixKit sender
	}
	res.Duration = time.Since(start)
	return res, err
}

// resolvesTo checks that target exists and that table, read here as catalog.Resolve
// reads names (as importer.New and pageRows do), is exactly target.
func resolvesTo(ctx context.Context, pool *pgxpool.Pool, table string, target catalog.Ident) error {
	if _, err := catalog.ResolveIn(ctx, pool, target.Schema, target.Name); err != nil {
		return fmt.Errorf("transfer %s: %w", table, err)
	}
	id, err := catalog.Resolve(ctx, pool, table)
	if err != nil {
		return fmt.Errorf("transfer %s: %w", table, err)
	}
	if !sameTable(id, target) {
		return fmt.Errorf("transfer %s: %w: the name resolves to %s here, not %s", table, ErrTargetRefused, id.Quoted(), target.Quoted())
	}
	return nil
}

// streamRows pulls a table through the fast path (stream.v1) into target. With g nil
// each batch is imported in its own local transaction as it arrives, and the importer
// is finished (its sequences moved) at the end. With a group each batch is staged in
// g (in a temp table of its transaction, not in memory) and nothing is written: the
// caller commits g and then finishes the importer it gets back.
func (c *Client) streamRows(ctx context.Context, pool *pgxpool.Pool, sch *catalog.Schema, target catalog.Ident, res Result, o TransferOptions,
	start time.Time, g *importer.Group) (out Result, _ *importer.Importer, err error) {
	table := res.Table
	if o.BatchSize <= 0 {
		o.BatchSize = wire.DefaultBatchRows
	}
	total, err := o.split.count(ctx, c, table)
	if err != nil {
		return res, nil, err
	}
	res.Requested = total
	var cols []string
	for _, col := range sch.Writable() {
		cols = append(cols, col.Name)
	}
	imOpts := importer.Options{Strategy: o.Strategy, Columns: cols, IgnoreUnknownColumns: o.IgnoreMissingColumns}
	im, err := o.split.importer(ctx, pool, target, imOpts)
	if errors.Is(err, importer.ErrUnknownColumn) && !o.IgnoreMissingColumns {
		return res, nil, fmt.Errorf("transfer %s: %w (the local table lacks the sender's columns; set IgnoreMissingColumns — "+
			"fiberkit-pull -ignore-missing-columns, pull ignore_missing_columns — to import without them)", table, err)
	}
	if err != nil {
		return res, nil, fmt.Errorf("transfer %s: %w", table, err)
	}
	res.DroppedColumns = im.Dropped()
	const credit = wire.DefaultCredit
	sid := c.nextSID.Add(1)
	msgs := make(chan streamMsg, credit+2)
	c.mu.Lock()
	c.streams[sid] = msgs
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.streams, sid)
		c.mu.Unlock()
	}()
	compression, err := c.compression(ctx, o.Compression)
	if err != nil {
		return res, nil, fmt.Errorf("transfer %s: %w", table, err)
	}
	meter := newLinkMeter(compression == wire.CompressionAuto)
	encoding := ""
	if g == nil && len(im.Dropped()) == 0 && binaryCompatible(sch, im.Schema()) {
		if caps, err := c.Capabilities(ctx); err == nil && slices.Contains(caps.Features, wire.BinaryFeature) {
			encoding = wire.EncodingBinary
		}
	}
	if _, err := c.request(ctx, c.topic, wire.StreamStart, wire.Start{Stream: sid, Table: table, AfterKey: o.AfterKey, UntilKey: o.split.until(),
		BatchRows: o.BatchSize, Compression: compression, Encoding: encoding, Credit: credit}); err != nil {
		return res, nil, fmt.Errorf("transfer %s: %w", table, err)
	}
	codec := wire.NewCodec()
	defer codec.Close()
	// Batches count in res once committed (see applier), in order, so that res —
	// LastKey above all — says exactly what was applied. A group's batches are the
	// caller's to commit: they count as received.
	res.LastKey = o.AfterKey
	var ap *applier
	var reports chan report
	var led ledger
	if g == nil {
		if ap, err = newApplier(ctx, pool, target, imOpts, im, workers(o, im)); err != nil {
			return res, nil, fmt.Errorf("transfer %s: %w", table, err)
		}
		reports = ap.reports
	}
	// fold takes a worker's report: batches imported in a row are acked at once, so
	// the sender goes on while they wait to commit; batches committed are counted.
	fold := func(r report) error {
		if r.imported {
			last, n := led.imported(r.seq)
			if n == 0 {
				return nil
			}
			ack := wire.Ack{Stream: sid, Seq: last, Credit: n, Compression: meter.decide()}
			if err := c.write(wire.New(nil, nil, c.topic, wire.StreamAck, ack)); err != nil {
				return fmt.Errorf("transfer %s: %w", table, err)
			}
			return nil
		}
		moved, err := led.committed(r, &res)
		if err != nil {
			return err
		}
		if moved && o.Progress != nil {
			o.Progress(Progress{Table: table, Rows: res.Rows, Total: total, Batches: int(led.applied), Elapsed: time.Since(start), LastKey: res.LastKey})
		}
		return nil
	}
	// Leaving before the stream ended (cancelled, refused, the sender gone, an
	// import failed): tell the sender to stop, so it does not hold the stream waiting
	// for credit. The batches already given are whole and checked: they are imported
	// and committed, in order, unless one before them failed.
	ended := false
	defer func() {
		if !ended {
			_ = c.write(wire.New(nil, nil, c.topic, wire.StreamCancel, wire.StreamRef{Stream: sid}))
		}
		if ap == nil {
			return
		}
		ap.stop()
		if err != nil {
			for len(reports) > 0 {
				_ = fold(<-reports)
			}
			out = res
		}
	}()
	var seq uint32
	var received int64
	for {
		var m streamMsg
		got := false
		select {
		case r := <-reports:
			if err := fold(r); err != nil {
				return res, nil, err
			}
			continue
		case m = <-msgs:
			got = true
		default:
		}
		if !got {
			// Time waiting for the link with nothing to import is what tells a slow link.
			if ap == nil || led.acked == seq {
				meter.waitStart()
			}
			select {
			case r := <-reports:
				meter.waitEnd()
				if err := fold(r); err != nil {
					return res, nil, err
				}
				continue
			case m = <-msgs:
			case <-ctx.Done():
				return res, nil, fmt.Errorf("transfer %s: %w", table, ctx.Err())
			case <-c.done:
				// Drain what already arrived before reporting the loss.
				select {
				case m = <-msgs:
				default:
					return res, nil, fmt.Errorf("transfer %s: %w", table, c.closeErr())
				}
			}
			meter.waitEnd()
		}
		switch {
		case m.err != nil:
			ended = true
			return res, nil, fmt.Errorf("transfer %s: %w", table, m.err)
		case m.end != nil:
			ended = true
			if m.end.Rows != received || m.end.Batches != seq {
				return res, nil, fmt.Errorf("transfer %s: sender sent %d rows in %d batches, received %d in %d", table, m.end.Rows, m.end.Batches, received, seq)
			}
			if g != nil {
				res.Rows += received
				return res, im, nil
			}
			ap.stop() // the workers commit what they hold
			for led.applied < seq {
				if err := fold(<-reports); err != nil {
					return res, nil, err
				}
			}
			if err := im.Finish(ctx); err != nil {
				return res, nil, err
			}
			if o.Progress != nil {
				o.Progress(Progress{Table: table, Rows: res.Rows, Total: total, Batches: int(seq), Elapsed: time.Since(start), Done: true, LastKey: res.LastKey})
			}
			return res, im, nil
		}
		res.Bytes += int64(len(m.batch))
		b, err := codec.DecodeBatch(m.batch)
		if err != nil {
			return res, nil, fmt.Errorf("transfer %s: batch %d: %w", table, seq+1, err)
		}
		if b.Binary != (encoding == wire.EncodingBinary) {
			return res, nil, fmt.Errorf("transfer %s: batch %d: %w", table, b.Seq, errors.New("not in the encoding asked for"))
		}
		if b.Seq != seq+1 {
			return res, nil, fmt.Errorf("transfer %s: batch %d arrived after %d", table, b.Seq, seq)
		}
		seq = b.Seq
		received += int64(b.Rows)
		meter.batch(len(m.batch), len(b.Data))
		if g != nil {
			if err := g.Add(ctx, im, b.Data); err != nil {
				return res, nil, err
			}
			res.LastKey = b.LastKey
			ack := wire.Ack{Stream: sid, Seq: seq, Credit: 1, Compression: meter.decide()}
			if err := c.write(wire.New(nil, nil, c.topic, wire.StreamAck, ack)); err != nil {
				return res, nil, fmt.Errorf("transfer %s: %w", table, err)
			}
			continue
		}
		led.give(seq, int64(b.Rows), b.LastKey)
		if err := ap.give(ctx, b.Data, b.Binary); err != nil {
			return res, nil, fmt.Errorf("transfer %s: %w", table, err)
		}
	}
}

// TransferAllOptions configure TransferAll.
type TransferAllOptions struct {
	// Tables to transfer; empty = every table the sender lists.
	Tables []string
	// Strategy for every table, unless Strategies names one for it.
	Strategy   importer.Strategy
	Strategies map[string]importer.Strategy
	TransferOptions
}

// TransferAll transfers several tables from the sender's one consistent snapshot:
// tables are created first when missing (CreateMissing), filled in foreign-key order,
// and given their foreign keys after all the data is in — only keys between tables
// of this pull; one referencing any other local table is left out with a warning in
// its table's result. The tables of a foreign-key cycle (catalog.Cycles: pagila's
// store ↔ staff) are imported together through importer.Group when the sender has
// the fast path, so new rows referring to each other across the cycle land in tables
// that exist here, whose keys may be NOT NULL and not deferrable. It goes on past a
// failed table and reports each table's outcome; the error is the first failure.
func (c *Client) TransferAll(ctx context.Context, pool *pgxpool.Pool, o TransferAllOptions) (map[string]Result, error) {
	tables := o.Tables
	if len(tables) == 0 {
		list, err := c.ListTables(ctx)
		if err != nil {
			return nil, err
		}
		for _, t := range list {
			tables = append(tables, t.Name)
		}
	}
	schemas := make([]*catalog.Schema, 0, len(tables))
	names := map[*catalog.Schema]string{}
	for _, t := range tables {
		sch, err := c.GetSchema(ctx, t)
		if err != nil {
			return nil, err
		}
		schemas = append(schemas, sch)
		names[sch] = t
	}
	results := map[string]Result{}
	pulled := ddl.Pulled{}
	var created []*catalog.Schema
	var first error
	done := func(p pending, err error) {
		if err != nil {
			p.res.Error = err.Error()
			if first == nil {
				first = err
			}
		} else {
			pulled[catalog.IdentOf(p.sch)] = p.target
		}
		results[p.res.Table] = p.res
	}
	for _, unit := range importUnits(schemas) {
		var ready []pending
		for _, sch := range unit {
			p := pending{sch: sch, res: Result{Table: names[sch]}, opts: o.TransferOptions}
			p.opts.Strategy = o.Strategy
			if s, ok := o.Strategies[p.res.Table]; ok {
				p.opts.Strategy = s
			}
			target, err := o.TransferOptions.target(p.res.Table)
			if err != nil {
				done(p, fmt.Errorf("transfer %s: %w", p.res.Table, err))
				continue
			}
			p.target = target
			local, err := ensureTable(ctx, pool, target, sch, &p.res, o.TransferOptions)
			if local != nil {
				created = append(created, local)
				names[local] = p.res.Table
			}
			if err != nil {
				done(p, err)
				continue
			}
			ready = append(ready, p)
		}
		together := false
		if len(ready) > 1 {
			caps, err := c.Capabilities(ctx)
			if err != nil {
				for _, p := range ready {
					done(p, fmt.Errorf("transfer %s: %w", p.res.Table, err))
				}
				ready = nil
			}
			together = caps.Stream()
		}
		if together {
			errs := c.transferCycle(ctx, pool, ready)
			for i, p := range ready {
				done(p, errs[i])
			}
		} else {
			for _, p := range ready {
				var err error
				p.res, err = c.transferRows(ctx, pool, p.sch, p.target, p.res, p.opts)
				done(p, err)
			}
		}
		if first != nil && !c.Connected() {
			break // the sender is gone: the other tables cannot be read either
		}
	}
	for _, local := range created {
		name := names[local]
		fr, err := ddl.AddForeignKeysWithin(ctx, pool, local, pulled)
		res := results[name]
		res.Warnings = append(res.Warnings, fr.Warnings...)
		if err != nil {
			if res.Error == "" {
				res.Error = err.Error()
			}
			if first == nil {
				first = err
			}
		}
		results[name] = res
	}
	return results, first
}

// pending is a table of TransferAll ready to be filled: the sender's definition, the
// local table it goes to, its options and its result so far.
type pending struct {
	sch    *catalog.Schema
	target catalog.Ident
	opts   TransferOptions
	res    Result
}

// importUnits orders schemas for import: the tables of each foreign-key cycle
// (catalog.Cycles) form one unit, imported together, every other table a unit of its
// own, and each unit comes after the units its tables reference.
func importUnits(schemas []*catalog.Schema) [][]*catalog.Schema {
	unitOf := map[*catalog.Schema]int{}
	var units [][]*catalog.Schema
	for _, cycle := range catalog.Cycles(schemas) {
		for _, t := range cycle {
			unitOf[t] = len(units)
		}
		units = append(units, cycle)
	}
	sorted := catalog.SortByDependencies(schemas)
	for _, t := range sorted {
		if _, ok := unitOf[t]; !ok {
			unitOf[t] = len(units)
			units = append(units, []*catalog.Schema{t})
		}
	}
	byName := map[string]*catalog.Schema{}
	for _, t := range schemas {
		byName[t.Schema+"."+t.Name] = t
	}
	// The units and their references form no cycle: a depth-first walk orders them.
	seen := make([]bool, len(units))
	var out [][]*catalog.Schema
	var visit func(u int)
	visit = func(u int) {
		if seen[u] {
			return
		}
		seen[u] = true
		for _, t := range units[u] {
			for _, fk := range t.ForeignKeys {
				if dep, ok := byName[fk.RefSchema+"."+fk.RefTable]; ok && unitOf[dep] != u {
					visit(unitOf[dep])
				}
			}
		}
		out = append(out, units[u])
	}
	for _, t := range sorted {
		visit(unitOf[t])
	}
	return out
}

// transferCycle imports the tables of one foreign-key cycle together through an
// importer.Group: each table's rows streamed in turn and staged, batch by batch, in
// temp tables of one local transaction (on the database server, not in memory), then
// written with one statement and committed once. The results are filled in place;
// the errors are the tables', in order. When one table fails nothing of the group is
// written, and the others' results say so.
func (c *Client) transferCycle(ctx context.Context, pool *pgxpool.Pool, tables []pending) []error {
	errs := make([]error, len(tables))
	failAll := func(err error, failed int) []error {
		for i := range tables {
			tables[i].res.LastKey = tables[i].opts.AfterKey // nothing was written
			errs[i] = err
			if i != failed {
				errs[i] = fmt.Errorf("transfer %s: nothing imported: %s, of the same foreign-key cycle, failed: %w", tables[i].res.Table, tables[failed].res.Table, err)
			}
		}
		return errs
	}
	g, err := importer.NewGroup(ctx, pool)
	if err != nil {
		return failAll(fmt.Errorf("transfer %s: %w", tables[0].res.Table, err), 0)
	}
	defer g.Close(ctx)
	ims := make([]*importer.Importer, len(tables))
	starts := make([]time.Time, len(tables))
	for i := range tables {
		p := &tables[i]
		starts[i] = time.Now()
		p.res, ims[i], err = c.streamRows(ctx, pool, p.sch, p.target, p.res, p.opts, starts[i], g)
		p.res.Duration = time.Since(starts[i])
		if err == nil {
			// A table the sender sent no batch of joins the group too (with no rows),
			// so Commit, answering in the order tables joined, answers for each in turn.
			err = g.Add(ctx, ims[i], nil)
		}
		if err != nil {
			return failAll(err, i)
		}
	}
	results, err := g.Commit(ctx)
	if err == nil && len(results) != len(tables) {
		err = fmt.Errorf("group import: %d results for %d tables", len(results), len(tables))
	}
	if err != nil {
		return failAll(fmt.Errorf("transfer %s: %w", tables[0].res.Table, err), 0)
	}
	for i, r := range results {
		p := &tables[i]
		p.res.Created += r.Created
		p.res.Updated += r.Updated
		p.res.Skipped += r.Skipped
		p.res.Failed += r.Failed
		p.res.Errors = append(p.res.Errors, r.Errors...)
	}
	for i := range tables {
		p := &tables[i]
		if errs[i] = ims[i].Finish(ctx); errs[i] == nil && p.opts.Progress != nil {
			p.opts.Progress(Progress{Table: p.res.Table, Rows: p.res.Rows, Total: p.res.Requested, Elapsed: time.Since(starts[i]), Done: true})
		}
		p.res.Duration = time.Since(starts[i])
	}
	return errs
}

// TableState compares a sender's table with the local one.
type TableState struct {
	Table     string `json:"table"`
	Rows      int64  `json:"rows"`
	LocalRows int64  `json:"local_rows"`
	// State is "new" (missing here), "different" or "match" (same rows, by count and checksum).
	State string `json:"state"`
}

// Compare tells, for each of the sender's tables, whether the local database lacks
// it, holds different rows, or matches it. The local table is the one a transfer
// writes: public's table of the sender's exact name.
func (c *Client) Compare(ctx context.Context, pool *pgxpool.Pool, tables []catalog.Table) ([]TableState, error) {
	out := make([]TableState, 0, len(tables))
	for _, t := range tables {
		st := TableState{Table: t.Name, Rows: t.Rows, State: "new"}
		local, err := catalog.GetSchemaIn(ctx, pool, "public", t.Name)
		if err == nil {
			st.State = "different"
			if st.LocalRows, err = catalog.CountIn(ctx, pool, local.Schema, local.Name); err != nil {
				return nil, err
			}
			if st.LocalRows == t.Rows {
				remote, cols, err := c.GetChecksum(ctx, t.Name)
				if err != nil {
					return nil, err
				}
				conn, err := pool.Acquire(ctx)
				if err != nil {
					return nil, err
				}
				sum, err := exporter.Checksum(ctx, conn, local, cols)
				conn.Release()
				if err == nil && sum == remote {
					st.State = "match"
				}
			}
		} else if !errors.Is(err, catalog.ErrUnknownTable) {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// compression is the stream:start compression for the option asked (see
// TransferOptions.Compression): auto falls back to none with a sender that does
// not offer it.
func (c *Client) compression(ctx context.Context, asked string) (string, error) {
	switch asked {
	case wire.CompressionNone:
		return "", nil
	case wire.CompressionZstd:
		return wire.CompressionZstd, nil
	case "", wire.CompressionAuto:
		caps, err := c.Capabilities(ctx)
		if err != nil {
			return "", err
		}
		if slices.Contains(caps.Compression, wire.CompressionAuto) {
			return wire.CompressionAuto, nil
		}
		return "", nil
	}
	return "", fmt.Errorf("unknown compression %q (auto, zstd or none)", asked)
}

// binaryTypes are the base types whose COPY binary form is the same on every
// PostgreSQL server: built-in types with a fixed oid, so arrays of them (which
// carry their element's oid) load too. Anything else — enums, domains,
// composites, extension types — goes as text, which every server parses by name.
var binaryTypes = map[string]bool{
	"smallint": true, "integer": true, "bigint": true, "real": true, "double precision": true, "numeric": true,
	"boolean": true, "text": true, "character varying": true, "character": true, `"char"`: true, "name": true,
	"bytea": true, "uuid": true, "json": true, "jsonb": true, "date": true, "interval": true, "money": true,
	"time without time zone": true, "time with time zone": true,
	"timestamp without time zone": true, "timestamp with time zone": true,
	"inet": true, "cidr": true, "macaddr": true, "macaddr8": true, "bit": true, "bit varying": true, "oid": true,
}

// typmods are the "(n)" and "(p,s)" of a type name.
var typmods = regexp.MustCompile(`\(\d+(,\d+)?\)`)

// binaryCompatible reports whether the sender's rows can come in COPY binary into
// local: every column the sender writes has, here, a column of the same built-in
// base type (binaryTypes; arrays of them too), whatever their typmods — the local
// column applies its own, as it does to text.
func binaryCompatible(sender, local *catalog.Schema) bool {
	base := func(t string) string {
		return strings.TrimRight(typmods.ReplaceAllString(t, ""), "[]")
	}
	for _, c := range sender.Writable() {
		l, ok := local.Column(c.Name)
		if !ok || c.Type != c.BaseType || l.Type != l.BaseType {
			return false
		}
		st, lt := typmods.ReplaceAllString(c.Type, ""), typmods.ReplaceAllString(l.Type, "")
		if st != lt || !binaryTypes[base(st)] {
			return false
		}
	}
	return true
}
