// Package importer writes rows received from another site into a local table with a
// conflict strategy, set-based: each batch is COPYed into a temporary all-text table
// and merged with one INSERT … SELECT … ON CONFLICT. Each value is converted from its
// text by the column type's input function and then assigned to the column, so it is
// checked, rounded or refused exactly as COPY would (a string too long for its
// varchar(n) is an error, never silently cut). The import transaction fixes the
// settings that change how text is parsed (DateStyle, IntervalStyle, TimeZone…), so
// the receiving database's own defaults do not matter.
//
// A batch is one transaction: it lands whole or not at all. When a batch's statement
// fails (a constraint, a value, a trigger refusing a row), that batch alone is
// replayed row by row under savepoints, so the good rows land and each bad one is
// reported with its key; the counts are the same as the batch statement's would be.
//
// Strategies (tables with a primary key):
//   - skip: keep an existing row with the same key.
//   - overwrite: replace it.
//   - merge: update it, keeping the existing value where the incoming one is NULL.
//   - append: always insert, letting the key's defaults (identity, sequence) pick a
//     new key; key columns without a default keep their incoming value.
//
// Several rows with one key in a batch: the last one wins, the others count as
// skipped. Identity columns GENERATED ALWAYS are inserted with their incoming value
// but never updated.
//
// Tables without a primary key have no notion of "the same row": only append applies.
//
// Inserts are told from updates by xmax (0 for a row just inserted); a partitioned
// table cannot return it, so there a row counts as updated when its key existed
// before the statement. Tables whose foreign keys form a cycle import together, in
// one statement, through a Group. Finish moves the sequences the columns draw from.
//
// Records (ImportRecords) may leave columns out: a column a record does not mention
// is not supplied, so a new row takes its default and an existing row keeps its
// value; an explicit nil is NULL. Rows in COPY text (ImportCopy) supply every column
// listed in Options.Columns.
package importer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// Strategy says what to do with an incoming row whose key exists (syncapi.Strategy).
type Strategy = syncapi.Strategy

// The strategies (syncapi's).
const (
	Skip      = syncapi.Skip
	Overwrite = syncapi.Overwrite
	Merge     = syncapi.Merge
	Append    = syncapi.Append
)

// ParseStrategy checks a strategy name; "" means Skip.
func ParseStrategy(s string) (Strategy, error) { return syncapi.ParseStrategy(s) }

// Errors callers branch on.
var (
	ErrBadStrategy = syncapi.ErrBadStrategy
	// ErrStrategyNotApplicable: skip, overwrite and merge need a primary key.
	ErrStrategyNotApplicable = errors.New("strategy needs a primary key")
	// ErrNoKeyDefault: append needs a key column with a default (identity or sequence).
	ErrNoKeyDefault = errors.New("append needs a primary key with a default")
	// ErrUnknownColumn: the incoming rows have a column the table lacks (see
	// Options.IgnoreUnknownColumns).
	ErrUnknownColumn = errors.New("unknown column")
	// ErrMalformedBatch: the batch is not valid COPY text for its columns.
	ErrMalformedBatch = errors.New("malformed batch")
)

// Result counts what an import did (syncapi.ImportResult).
type Result = syncapi.ImportResult

// RecordError is one row that could not be imported (syncapi.RecordError).
type RecordError = syncapi.RecordError

// Options configure an Importer.
type Options struct {
	Strategy Strategy
	// Columns of the incoming rows, in order. Columns the table has and the rows
	// lack get their defaults.
	Columns []string
	// IgnoreUnknownColumns drops incoming columns the table lacks instead of refusing
	// the import with ErrUnknownColumn: ImportCopy cuts their fields out of every
	// line, ImportRecords ignores record keys the table lacks. Dropped lists them.
	IgnoreUnknownColumns bool
	// MaxErrors bounds the per-record errors kept per batch (default 100); the counts stay exact.
	MaxErrors int
}

// field is one incoming column as the import's statements see it.
type field struct {
	catalog.Column
	// tmp is its column in the temporary table: c1, c2, … in incoming order, so no
	// user column name can collide with the importer's own ord column.
	tmp string
	// cast is the type its text is converted to: the column's type with domains
	// unwrapped and without typmod. The INSERT's assignment to the column then applies
	// the typmod and the domain's checks, refusing what does not fit as COPY does (an
	// explicit cast to varchar(n), char(n) or bit(n) would cut it silently instead).
	cast string
}

// typed is the field's text converted to its cast type, read from the temp table as s.
func (f field) typed() string { return "s." + f.tmp + "::" + f.cast }

// quoted is the field's column name, quoted.
func (f field) quoted() string { return pgx.Identifier{f.Name}.Sanitize() }

// Importer imports batches into one table. Batches may come from one goroutine at a time.
type Importer struct {
	pool     *pgxpool.Pool
	sch      *catalog.Schema
	strategy Strategy
	cols     []field // incoming columns the table has, in incoming order
	drop     []bool  // per incoming COPY field, whether it is cut out (nil: none is)
	dropped  []string
	ignore   bool    // Options.IgnoreUnknownColumns
	cut      []byte  // ImportCopy's output buffer for lines with fields cut out
	write    []field // columns written (generated ones and append's generated keys dropped)
	keys     []field // primary key columns (empty for append)
	empty    bool    // the table was empty when the import began
	// partitioned: the table is partitioned, so RETURNING cannot read xmax through it
	// and the statements tell inserts from updates by the keys that existed before.
	partitioned bool
	overrides   bool // an identity ALWAYS column is written
	// uniques: the table has a unique or exclusion index besides its primary key.
	uniques   bool
	maxErrors int
	batchSQL  string // the strategy's statement over the whole temp table
	rowSQL    string // the same over the temp row whose ord is $1
	// open is the transaction straight-COPYed batches share (ImportCopyDeferred)
	// until it holds CommitBytes; openBytes is what it holds.
	open      pgx.Tx
	openBytes int
	openSince time.Time
	openTemp  string // the encoding of the temp table the open transaction holds ("": none)
	onBegin   func(pid uint32)
}

// ImportCopyDeferred commits the batches of one transaction once they hold
// CommitBytes of rows or the transaction is CommitInterval old, whichever comes
// first: few enough commits to cost little, often enough that what a transfer
// applied is durable (and its resume point recorded) within a fraction of a second.
const (
	CommitBytes    = 64 << 20
	CommitInterval = 250 * time.Millisecond
)

// tempTable holds a batch's rows as text while they are merged; ord numbers them in
// incoming order. Its data columns are c1…cN, never the user's names.
const tempTable = "pg_temp.fk_import_rows"

// New prepares an import into table (resolved against the local catalog).
func New(ctx context.Context, pool *pgxpool.Pool, table string, o Options) (*Importer, error) {
	sch, err := catalog.GetSchema(ctx, pool, table)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", table, err)
	}
	if o.Strategy == "" {
		o.Strategy = Skip
	}
	if _, err := ParseStrategy(string(o.Strategy)); err != nil {
		return nil, fmt.Errorf("import %s: %w", table, err)
	}
	im := &Importer{pool: pool, sch: sch, strategy: o.Strategy, maxErrors: o.MaxErrors}
	if im.maxErrors <= 0 {
		im.maxErrors = 100
	}
	if len(o.Columns) == 0 {
		for _, c := range sch.Writable() {
			o.Columns = append(o.Columns, c.Name)
		}
	}
	casts, err := castTypes(ctx, pool, sch)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", table, err)
	}
	im.ignore = o.IgnoreUnknownColumns
	drop := make([]bool, len(o.Columns))
	for i, name := range o.Columns {
		c, ok := sch.Column(name)
		if !ok {
			drop[i] = true
			im.dropped = append(im.dropped, name)
			continue
		}
		im.cols = append(im.cols, field{Column: c, tmp: fmt.Sprintf("c%d", len(im.cols)+1), cast: casts[name]})
	}
	if len(im.dropped) > 0 {
		if !o.IgnoreUnknownColumns {
			return nil, fmt.Errorf("import %s: %w %s", table, ErrUnknownColumn, quotedList(im.dropped))
		}
		if len(im.cols) == 0 {
			return nil, fmt.Errorf("import %s: none of the incoming columns exists here (%w %s)", table, ErrUnknownColumn, quotedList(im.dropped))
		}
		im.drop = drop
	}
	if len(sch.PrimaryKey) == 0 && o.Strategy != Append {
		return nil, fmt.Errorf("import %s: %w: the table has none, so only append applies", table, ErrStrategyNotApplicable)
	}
	target := catalog.IdentOf(sch).Quoted()
	if err := pool.QueryRow(ctx, "SELECT NOT EXISTS (SELECT 1 FROM "+target+"), (SELECT c.relkind = 'p' FROM pg_class c WHERE c.oid = $1::regclass), "+
		"EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = $1::regclass AND NOT i.indisprimary AND (i.indisunique OR i.indisexclusion))",
		target).Scan(&im.empty, &im.partitioned, &im.uniques); err != nil {
		return nil, fmt.Errorf("import %s: check whether the table is empty or partitioned: %w", table, err)
	}
	if err := im.plan(""); err != nil {
		return nil, fmt.Errorf("import %s: %w", table, err)
	}
	return im, nil
}

// plan works out, from im.cols, the key, the columns written and the strategy's
// statements; batchWhere selects the temp rows of the batch statement.
func (im *Importer) plan(batchWhere string) error {
	im.keys, im.write, im.overrides = nil, nil, false
	if im.strategy == Append {
		if err := im.checkAppendKey(); err != nil {
			return err
		}
	} else {
		for _, k := range im.sch.PrimaryKey {
			f, ok := im.field(k)
			if !ok {
				return fmt.Errorf("incoming rows lack key column %q", k)
			}
			im.keys = append(im.keys, f)
		}
	}
	for _, f := range im.cols {
		if im.strategy == Append && f.PrimaryKey && f.HasDefault {
			continue // append lets the default pick this part of the key
		}
		if f.Generated != "" {
			continue
		}
		im.write = append(im.write, f)
		if f.Identity == "always" {
			im.overrides = true
		}
	}
	im.batchSQL = im.mergeSQL(batchWhere)
	im.rowSQL = im.mergeSQL(" WHERE s.ord = $1")
	return nil
}

// quotedList is names quoted and comma-separated.
func quotedList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// Dropped lists the incoming columns the table lacks, which the import leaves out
// (Options.IgnoreUnknownColumns).
func (im *Importer) Dropped() []string { return append([]string(nil), im.dropped...) }

// checkAppendKey checks that append can make new keys: at least one key column has a
// default, and every key column without one comes with the incoming rows.
func (im *Importer) checkAppendKey() error {
	if len(im.sch.PrimaryKey) == 0 {
		return nil
	}
	generated := false
	names := make([]string, len(im.sch.PrimaryKey))
	for i, k := range im.sch.PrimaryKey {
		names[i] = fmt.Sprintf("%q", k)
		c, _ := im.sch.Column(k)
		if c.HasDefault {
			generated = true
			continue
		}
		if _, ok := im.field(k); !ok {
			return fmt.Errorf("incoming rows lack key column %q, which has no default", k)
		}
	}
	if !generated {
		return fmt.Errorf("%w: no key column (%s) has a default or identity", ErrNoKeyDefault, strings.Join(names, ", "))
	}
	return nil
}

// castTypes returns, for each column of sch, the type its incoming text is cast to:
// its type with domains unwrapped and without typmod ("character varying" for
// varchar(3), "bpchar" for char(2), "\"bit\"" for bit(4), "numeric" for
// numeric(12,2)). Arrays keep their element type, without typmod.
func castTypes(ctx context.Context, q catalog.Querier, sch *catalog.Schema) (map[string]string, error) {
	rows, err := q.Query(ctx, `
WITH RECURSIVE d(attname, typ) AS (
	SELECT a.attname, a.atttypid FROM pg_attribute a
	WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
	UNION ALL
	SELECT d.attname, t.typbasetype FROM d JOIN pg_type t ON t.oid = d.typ AND t.typtype = 'd'
)
SELECT d.attname, format_type(d.typ, -1) FROM d JOIN pg_type t ON t.oid = d.typ AND t.typtype <> 'd'`, catalog.IdentOf(sch).Quoted())
	if err != nil {
		return nil, fmt.Errorf("read column base types: %w", err)
	}
	casts := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read column base types: %w", err)
		}
		casts[name] = typ
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read column base types: %w", err)
	}
	for _, c := range sch.Columns {
		if casts[c.Name] == "" {
			return nil, fmt.Errorf("read column base types: no type for column %q", c.Name)
		}
	}
	return casts, nil
}

// Schema returns the target table's definition.
func (im *Importer) Schema() *catalog.Schema { return im.sch }

func (im *Importer) field(col string) (field, bool) {
	for _, f := range im.cols {
		if f.Name == col {
			return f, true
		}
	}
	return field{}, false
}

func (im *Importer) has(col string) bool {
	_, ok := im.field(col)
	return ok
}

// ImportRecords imports rows given as column → text value maps, in one transaction.
// A nil value is NULL. A column a record leaves out is not supplied: a new row takes
// the column's default (NULL when it has none) and an existing row keeps its value
// (overwrite, merge). Primary key columns are always supplied (a missing one is
// NULL). Several records with one key: the last one wins, whatever it supplies.
//
// Records supplying every column go the way of ImportCopy. Otherwise the batch is
// COPYed with each record's set of supplied columns, its duplicate keys settled, and
// merged with one statement per set of columns, each writing only its columns.
func (im *Importer) ImportRecords(ctx context.Context, records []map[string]*string) (Result, error) {
	if len(records) == 0 {
		return Result{}, nil
	}
	masks := make([]string, len(records))
	mask := make([]byte, len(im.cols))
	partial := false
	for n, r := range records {
		for k := range r {
			if !im.ignore && !im.has(k) {
				return Result{}, fmt.Errorf("import %s: %w %q", im.sch.Name, ErrUnknownColumn, k)
			}
		}
		for i, c := range im.cols {
			mask[i] = '1'
			if _, ok := r[c.Name]; !ok && !c.PrimaryKey {
				mask[i] = '0'
				partial = true
			}
		}
		masks[n] = string(mask)
	}
	var buf bytes.Buffer
	for n, r := range records {
		for i, c := range im.cols {
			if i > 0 {
				buf.WriteByte('\t')
			}
			AppendCopyValue(&buf, r[c.Name])
		}
		if partial {
			buf.WriteByte('\t')
			buf.WriteString(masks[n])
		}
		buf.WriteByte('\n')
	}
	if !partial {
		return im.importCopy(ctx, buf.Bytes())
	}
	g := &groups{masks: masks, subs: map[string]*Importer{}}
	for _, m := range masks {
		if g.subs[m] != nil {
			continue
		}
		sub, err := im.supplying(m)
		if err != nil {
			return Result{}, fmt.Errorf("import %s: %w", im.sch.Name, err)
		}
		g.subs[m] = sub
		g.order = append(g.order, m)
	}
	var res Result
	err := pgx.BeginFunc(ctx, im.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, catalog.TextSettings); err != nil {
			return fmt.Errorf("set session settings: %w", err)
		}
		r, err := im.viaTemp(ctx, tx, copyIn{data: buf.Bytes()}, len(records), g, false)
		res = r
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("import %s: %w", im.sch.Name, err)
	}
	return res, nil
}

// groups are the records of a batch that do not all supply every column: the temp
// table's column m holds each row's mask ('1' per supplied column of im.cols, '0'
// per column left out), and each distinct mask is merged by its own statement.
type groups struct {
	masks []string             // by temp row: masks[ord-1]
	order []string             // the distinct masks, as first met
	subs  map[string]*Importer // mask → the import of just its columns
}

// supplying returns a copy of im that writes only the columns mask supplies, reading
// them from the same temp columns, its batch statement taking the rows of mask $1.
func (im *Importer) supplying(mask string) (*Importer, error) {
	sub := *im
	sub.cols = nil
	for i, f := range im.cols {
		if mask[i] == '1' {
			sub.cols = append(sub.cols, f)
		}
	}
	if err := sub.plan(" WHERE s.m = $1"); err != nil {
		return nil, err
	}
	return &sub, nil
}

// AppendCopyValue writes one value in COPY text format (nil = NULL).
func AppendCopyValue(buf *bytes.Buffer, v *string) {
	if v == nil {
		buf.WriteString(`\N`)
		return
	}
	for i := 0; i < len(*v); i++ {
		switch c := (*v)[i]; c {
		case '\\':
			buf.WriteString(`\\`)
		case '\n':
			buf.WriteString(`\n`)
		case '\r':
			buf.WriteString(`\r`)
		case '\t':
			buf.WriteString(`\t`)
		default:
			buf.WriteByte(c)
		}
	}
}

// ImportCopy imports one batch of rows in COPY text format, in one transaction. Each
// line holds one field per column of Options.Columns; those of columns dropped
// (Options.IgnoreUnknownColumns) are cut out first.
func (im *Importer) ImportCopy(ctx context.Context, data []byte) (Result, error) {
	if im.drop != nil {
		var err error
		if data, err = im.cutFields(data); err != nil {
			return Result{}, fmt.Errorf("import %s: %w", im.sch.Name, err)
		}
	}
	return im.importCopy(ctx, data)
}

// cutFields returns data without the fields of dropped columns, written to the
// importer's one output buffer (reused batch after batch). In COPY text format a
// line ends at a raw newline and a field at a raw tab: both are escaped inside values.
func (im *Importer) cutFields(data []byte) ([]byte, error) {
	out := im.cut[:0]
	if cap(out) < len(data) {
		out = make([]byte, 0, len(data))
	}
	for line := 1; len(data) > 0; line++ {
		row := data
		end := bytes.IndexByte(data, '\n')
		if end >= 0 {
			row, data = data[:end], data[end+1:]
		} else {
			data = nil
		}
		kept := 0
		for i := 0; ; i++ {
			if i == len(im.drop) {
				return nil, fmt.Errorf("%w: line %d has more than %d fields", ErrMalformedBatch, line, len(im.drop))
			}
			f := row
			tab := bytes.IndexByte(row, '\t')
			if tab >= 0 {
				f, row = row[:tab], row[tab+1:]
			}
			if !im.drop[i] {
				if kept > 0 {
					out = append(out, '\t')
				}
				out = append(out, f...)
				kept++
			}
			if tab < 0 {
				if i+1 != len(im.drop) {
					return nil, fmt.Errorf("%w: line %d has %d fields, want %d", ErrMalformedBatch, line, i+1, len(im.drop))
				}
				break
			}
		}
		if end >= 0 {
			out = append(out, '\n')
		}
	}
	im.cut = out
	return out, nil
}

// importCopy imports one batch in COPY text format, one field per column of im.cols.
func (im *Importer) importCopy(ctx context.Context, data []byte) (Result, error) {
	rows := bytes.Count(data, []byte{'\n'})
	if rows == 0 {
		return Result{}, nil
	}
	var res Result
	err := pgx.BeginFunc(ctx, im.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, catalog.TextSettings); err != nil {
			return fmt.Errorf("set session settings: %w", err)
		}
		if im.straight() {
			// Nothing can conflict: COPY straight into the table. Anything it refuses
			// (a constraint, a concurrent writer) falls back to the general path.
			ok, err := im.straightCopy(ctx, tx, copyIn{data: data})
			if err != nil {
				return err
			}
			if ok {
				res.Created = rows
				return nil
			}
		}
		r, err := im.viaTemp(ctx, tx, copyIn{data: data}, rows, nil, false)
		res = r
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("import %s: %w", im.sch.Name, err)
	}
	return res, nil
}

// straight reports whether a batch can be COPYed straight into the table, nothing
// being able to conflict: the table was empty (and no new key is drawn), or it has
// no key and every row is appended as is.
func (im *Importer) straight() bool {
	return im.empty && im.strategy != Append || len(im.sch.PrimaryKey) == 0 && im.strategy == Append && im.writesAll()
}

// ImportCopyDeferred imports one batch like ImportCopy, except that it may leave
// the batch's transaction open for the batches after it, each under a savepoint,
// until they hold CommitBytes: fewer commits (each waits for a WAL flush), and one
// temporary table for all of them. committed reports whether every batch imported
// so far is committed; Commit commits the rest. When a call fails, the batches not
// committed are rolled back with it (they are not applied).
func (im *Importer) ImportCopyDeferred(ctx context.Context, data []byte, binary bool) (res Result, committed bool, err error) {
	return im.importOpen(ctx, data, binary, true)
}

// ImportCopyOpen imports one batch like ImportCopyDeferred but never commits: the
// batch stays in the importer's open transaction until Commit (or Rollback), so a
// caller running several importers can commit their batches in order. When it
// fails, the open transaction is rolled back.
func (im *Importer) ImportCopyOpen(ctx context.Context, data []byte, binary bool) (Result, error) {
	res, _, err := im.importOpen(ctx, data, binary, false)
	return res, err
}

// IsDeadlock reports whether err is PostgreSQL's deadlock_detected (40P01): the
// import's transaction was rolled back to end a deadlock, and may be run again.
func IsDeadlock(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "40P01"
}

// OnBegin sets a function called with the database backend's process id each
// time the importer begins a transaction of its own (ImportCopyDeferred,
// ImportCopyOpen), so that a caller can tell, from pg_stat_activity, when it waits.
func (im *Importer) OnBegin(f func(pid uint32)) { im.onBegin = f }

func (im *Importer) importOpen(ctx context.Context, data []byte, binary, autoCommit bool) (res Result, committed bool, err error) {
	in := copyIn{data: data, binary: binary}
	var rows int
	switch {
	case binary && im.drop != nil:
		im.rollback()
		return Result{}, false, fmt.Errorf("import %s: binary rows cannot have columns cut out", im.sch.Name)
	case binary:
		if rows, err = countTuples(data, len(im.cols)); err != nil {
			im.rollback()
			return Result{}, false, fmt.Errorf("import %s: %w: %v", im.sch.Name, ErrMalformedBatch, err)
		}
	default:
		if im.drop != nil {
			if in.data, err = im.cutFields(data); err != nil {
				im.rollback()
				return Result{}, false, fmt.Errorf("import %s: %w", im.sch.Name, err)
			}
		}
		rows = bytes.Count(in.data, []byte{'\n'})
	}
	if rows == 0 {
		return Result{}, im.open == nil, nil
	}
	if im.open == nil {
		tx, err := im.pool.Begin(ctx)
		if err != nil {
			return Result{}, false, fmt.Errorf("import %s: %w", im.sch.Name, err)
		}
		im.open, im.openSince = tx, time.Now()
		if im.onBegin != nil {
			im.onBegin(tx.Conn().PgConn().PID())
		}
		if _, err := tx.Exec(ctx, catalog.TextSettings); err != nil {
			im.rollback()
			return Result{}, false, fmt.Errorf("import %s: set session settings: %w", im.sch.Name, err)
		}
	}
	straight := false
	if im.straight() {
		// Anything COPY refuses (a constraint, a concurrent writer) falls back to
		// the general path below, in the same transaction.
		if straight, err = im.straightCopy(ctx, im.open, in); err != nil {
			im.rollback()
			return Result{}, false, fmt.Errorf("import %s: %w", im.sch.Name, err)
		}
	}
	if straight {
		res.Created = rows
	} else {
		if im.openTemp != "" && im.openTemp != in.encoding() {
			if _, err := im.open.Exec(ctx, "DROP TABLE "+tempTable); err != nil {
				im.rollback()
				return Result{}, false, fmt.Errorf("import %s: %w", im.sch.Name, err)
			}
			im.openTemp = ""
		}
		res, err = im.viaTemp(ctx, im.open, in, rows, nil, im.openTemp != "")
		if err != nil {
			im.rollback()
			return Result{}, false, fmt.Errorf("import %s: %w", im.sch.Name, err)
		}
		im.openTemp = in.encoding()
	}
	im.openBytes += len(data)
	if autoCommit && (im.openBytes >= CommitBytes || time.Since(im.openSince) >= CommitInterval) {
		if err := im.Commit(ctx); err != nil {
			return Result{}, false, err
		}
		return res, true, nil
	}
	return res, false, nil
}

// Commit commits the batches ImportCopyDeferred left open, if any.
func (im *Importer) Commit(ctx context.Context) error {
	if im.open == nil {
		return nil
	}
	tx := im.open
	im.open, im.openBytes, im.openTemp = nil, 0, ""
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("import %s: commit: %w", im.sch.Name, err)
	}
	return nil
}

// Rollback rolls back the batches ImportCopyDeferred left open, if any: they are
// not applied.
func (im *Importer) Rollback() { im.rollback() }

func (im *Importer) rollback() {
	if im.open != nil {
		_ = im.open.Rollback(context.Background())
		im.open, im.openBytes, im.openTemp = nil, 0, ""
	}
}

// copyIn is a batch for COPY FROM: text lines, or binary tuples without the
// format's header and trailer (which reader adds).
type copyIn struct {
	data   []byte
	binary bool
}

// binaryHeader starts COPY binary data: the signature, no flags, no extension.
var binaryHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// binaryTrailer ends it.
var binaryTrailer = []byte{0xff, 0xff}

func (in copyIn) reader() io.Reader {
	if !in.binary {
		return bytes.NewReader(in.data)
	}
	return io.MultiReader(bytes.NewReader(binaryHeader), bytes.NewReader(in.data), bytes.NewReader(binaryTrailer))
}

func (in copyIn) format() string {
	if in.binary {
		return " (FORMAT binary)"
	}
	return ""
}

func (in copyIn) encoding() string {
	if in.binary {
		return "binary"
	}
	return "text"
}

// countTuples checks that data is whole COPY binary tuples of fields fields each
// and counts them.
func countTuples(data []byte, fields int) (int, error) {
	n := 0
	for at := 0; at < len(data); n++ {
		if len(data)-at < 2 {
			return 0, errors.New("a tuple cut short")
		}
		if f := int(int16(binary.BigEndian.Uint16(data[at:]))); f != fields {
			return 0, fmt.Errorf("a tuple of %d fields, want %d", f, fields)
		}
		at += 2
		for range fields {
			if len(data)-at < 4 {
				return 0, errors.New("a tuple cut short")
			}
			size := int(int32(binary.BigEndian.Uint32(data[at:])))
			at += 4
			if size < -1 || size > len(data)-at {
				return 0, errors.New("a field runs past the batch")
			}
			at += max(size, 0)
		}
	}
	return n, nil
}

// writesAll reports whether every incoming column is written as is.
func (im *Importer) writesAll() bool { return len(im.write) == len(im.cols) }

func (im *Importer) straightCopy(ctx context.Context, tx pgx.Tx, in copyIn) (bool, error) {
	if !im.writesAll() {
		return false, nil
	}
	if _, err := tx.Exec(ctx, "SAVEPOINT fk_copy"); err != nil {
		return false, fmt.Errorf("savepoint before copy: %w", err)
	}
	cols := make([]catalog.Column, len(im.cols))
	for i, f := range im.cols {
		cols[i] = f.Column
	}
	sql := fmt.Sprintf("COPY %s (%s) FROM STDIN%s", catalog.IdentOf(im.sch).Quoted(), catalog.QuotedColumns(cols), in.format())
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, in.reader(), sql); err != nil {
		if _, rerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT fk_copy"); rerr != nil {
			return false, fmt.Errorf("roll back refused copy (%v): %w", err, rerr)
		}
		im.empty = false
		return false, nil
	}
	if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT fk_copy"); err != nil {
		return false, fmt.Errorf("release savepoint after copy: %w", err)
	}
	return true, nil
}

// viaTemp COPYs the batch into the temp table and merges it from there. With g, each
// line ends with its mask (column m) and each mask's rows are merged by its statement.
// With reuse the transaction made the temp table already (for an earlier batch of
// the same encoding). Binary rows go to a temp table of the columns' cast types.
func (im *Importer) viaTemp(ctx context.Context, tx pgx.Tx, in copyIn, rows int, g *groups, reuse bool) (Result, error) {
	defs := make([]string, len(im.cols))
	tmps := make([]string, len(im.cols))
	for i, f := range im.cols {
		defs[i] = f.tmp + " text"
		if in.binary {
			defs[i] = f.tmp + " " + f.cast
		}
		tmps[i] = f.tmp
	}
	if g != nil {
		defs = append(defs, "m text NOT NULL")
		tmps = append(tmps, "m")
	}
	create := fmt.Sprintf("CREATE TEMP TABLE fk_import_rows (ord bigint GENERATED ALWAYS AS IDENTITY, %s) ON COMMIT DROP", strings.Join(defs, ", "))
	if reuse {
		create = "TRUNCATE " + tempTable + " RESTART IDENTITY"
	}
	if _, err := tx.Exec(ctx, create); err != nil {
		return Result{}, fmt.Errorf("create temp table: %w", err)
	}
	copySQL := fmt.Sprintf("COPY %s (%s) FROM STDIN%s", tempTable, strings.Join(tmps, ", "), in.format())
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, in.reader(), copySQL); err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrMalformedBatch, err)
	}
	if _, err := tx.Exec(ctx, "SAVEPOINT fk_batch"); err != nil {
		return Result{}, fmt.Errorf("savepoint before merge: %w", err)
	}
	var created, updated int
	var err error
	if g == nil {
		created, updated, err = im.merge(ctx, tx, im.batchSQL)
	} else {
		created, updated, err = im.mergeGroups(ctx, tx, g)
	}
	if err == nil {
		if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT fk_batch"); err != nil {
			return Result{}, fmt.Errorf("release savepoint after merge: %w", err)
		}
		return Result{Created: created, Updated: updated, Skipped: rows - created - updated}, nil
	}
	if !replayable(err) {
		return Result{}, fmt.Errorf("merge batch: %w", err)
	}
	if _, rerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT fk_batch"); rerr != nil {
		return Result{}, fmt.Errorf("roll back failed merge (%v): %w", err, rerr)
	}
	rowSQL := func(int64) string { return im.rowSQL }
	if g != nil {
		rowSQL = func(ord int64) string { return g.subs[g.masks[ord-1]].rowSQL }
	}
	return im.rowByRow(ctx, tx, rows, rowSQL)
}

// Independent reports whether importers of disjoint keys into the table, each in a
// transaction of its own, can never wait on one another: the table was empty when
// the import began, or its only unique index is the primary key. (Otherwise a value
// of a unique column moving from one row to another across batches makes the
// import of one wait for the other's transaction.)
func (im *Importer) Independent() bool { return im.empty || !im.uniques }

// mergeGroups merges the temp rows mask by mask. With several masks, the rows a later
// row of the same key overrides are deleted first, so that the last row of each key
// wins across masks as it does within one statement.
func (im *Importer) mergeGroups(ctx context.Context, tx pgx.Tx, g *groups) (created, updated int, err error) {
	if len(g.order) > 1 && len(im.keys) > 0 {
		keys := make([]string, len(im.keys))
		for i, k := range im.keys {
			keys[i] = "(" + k.typed() + ")"
		}
		del := fmt.Sprintf(`DELETE FROM %s d USING (SELECT s.ord, row_number() OVER (PARTITION BY %s ORDER BY s.ord DESC) AS n FROM %s s) w
			WHERE d.ord = w.ord AND w.n > 1`, tempTable, strings.Join(keys, ", "), tempTable)
		if _, err := tx.Exec(ctx, del); err != nil {
			return 0, 0, err
		}
	}
	if len(g.order) > 4 {
		// One index scan per mask instead of one scan of the whole batch.
		if _, err := tx.Exec(ctx, "CREATE INDEX ON "+tempTable+" (m)"); err != nil {
			return 0, 0, err
		}
		if _, err := tx.Exec(ctx, "ANALYZE "+tempTable); err != nil {
			return 0, 0, err
		}
	}
	for _, m := range g.order {
		c, u, err := im.merge(ctx, tx, g.subs[m].batchSQL, m)
		if err != nil {
			return 0, 0, err
		}
		created += c
		updated += u
	}
	return created, updated, nil
}

// replayable reports whether the batch statement's error may be down to some of its
// rows, so that replaying them one by one is worth it: any error the server raised
// about the statement (a constraint, a bad value, a trigger's exception), but not a
// lost connection, a cancelled query, a shutdown, a serialization failure or deadlock,
// a lack of resources or an internal error, which no replay would get past.
func replayable(err error) bool {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) || len(pg.Code) < 2 {
		return false
	}
	switch pg.Code[:2] {
	case "08", // connection exception
		"25", // invalid transaction state
		"40", // transaction rollback: serialization failure, deadlock
		"53", // insufficient resources
		"57", // operator intervention: query canceled, admin shutdown
		"58", // system error
		"XX": // internal error
		return false
	}
	return true
}

// rowByRow replays the batch one row at a time under savepoints, collecting errors.
// Like the batch statement, it writes only the last row of each key; the earlier ones
// count as skipped, so the counts and the rows that land are those the batch would
// have given, but for the bad rows.
func (im *Importer) rowByRow(ctx context.Context, tx pgx.Tx, rows int, rowSQL func(ord int64) string) (Result, error) {
	ords, err := im.replayOrder(ctx, tx)
	if err != nil {
		return Result{}, err
	}
	// One index scan per replayed row instead of one scan of the whole batch.
	if _, err := tx.Exec(ctx, "CREATE INDEX ON "+tempTable+" (ord)"); err != nil {
		return Result{}, fmt.Errorf("index temp table: %w", err)
	}
	if _, err := tx.Exec(ctx, "ANALYZE "+tempTable); err != nil {
		return Result{}, fmt.Errorf("analyze temp table: %w", err)
	}
	res := Result{Skipped: rows - len(ords)}
	for _, ord := range ords {
		if _, err := tx.Exec(ctx, "SAVEPOINT fk_row"); err != nil {
			return Result{}, fmt.Errorf("savepoint before row %d: %w", ord, err)
		}
		c, u, err := im.merge(ctx, tx, rowSQL(ord), ord)
		if err == nil {
			if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT fk_row"); err != nil {
				return Result{}, fmt.Errorf("release savepoint after row %d: %w", ord, err)
			}
			res.Created += c
			res.Updated += u
			res.Skipped += 1 - c - u
			continue
		}
		if !replayable(err) {
			return Result{}, fmt.Errorf("replay row %d: %w", ord, err)
		}
		if _, rerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT fk_row"); rerr != nil {
			return Result{}, fmt.Errorf("roll back row %d (%v): %w", ord, err, rerr)
		}
		res.Failed++
		if len(res.Errors) < im.maxErrors {
			key, kerr := im.rowKey(ctx, tx, ord)
			if kerr != nil {
				return Result{}, kerr
			}
			res.Errors = append(res.Errors, RecordError{Key: key, Reason: reason(err)})
		}
	}
	return res, nil
}

// replayOrder returns the ords of the temp rows the batch statement would write, in
// incoming order: all of them for append, else the last row of each key. Keys are
// compared as typed values, as the batch statement does; when a key value does not
// even convert to its type, they are compared as text instead (that row then fails
// on its own when replayed).
func (im *Importer) replayOrder(ctx context.Context, tx pgx.Tx) ([]int64, error) {
	var ords []int64
	if len(im.keys) == 0 {
		err := tx.QueryRow(ctx, "SELECT coalesce(array_agg(ord ORDER BY ord), '{}') FROM "+tempTable).Scan(&ords)
		if err != nil {
			return nil, fmt.Errorf("list rows to replay: %w", err)
		}
		return ords, nil
	}
	typed := make([]string, len(im.keys))
	text := make([]string, len(im.keys))
	for i, k := range im.keys {
		typed[i] = "(" + k.typed() + ")"
		text[i] = "s." + k.tmp
	}
	winners := func(keys []string) string {
		k := strings.Join(keys, ", ")
		return fmt.Sprintf("SELECT coalesce(array_agg(ord ORDER BY ord), '{}') FROM (SELECT DISTINCT ON (%s) s.ord FROM %s s ORDER BY %s, s.ord DESC) w",
			k, tempTable, k)
	}
	if _, err := tx.Exec(ctx, "SAVEPOINT fk_keys"); err != nil {
		return nil, fmt.Errorf("savepoint before listing rows to replay: %w", err)
	}
	err := tx.QueryRow(ctx, winners(typed)).Scan(&ords)
	if err == nil {
		if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT fk_keys"); err != nil {
			return nil, fmt.Errorf("release savepoint after listing rows to replay: %w", err)
		}
		return ords, nil
	}
	if !replayable(err) {
		return nil, fmt.Errorf("list rows to replay: %w", err)
	}
	if _, rerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT fk_keys"); rerr != nil {
		return nil, fmt.Errorf("roll back listing rows to replay (%v): %w", err, rerr)
	}
	if err := tx.QueryRow(ctx, winners(text)).Scan(&ords); err != nil {
		return nil, fmt.Errorf("list rows to replay by text key: %w", err)
	}
	return ords, nil
}

func reason(err error) string {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		if pg.Detail != "" {
			return pg.Message + ": " + pg.Detail
		}
		return pg.Message
	}
	return err.Error()
}

// rowKey reads the key of temp row ord (all values when the table has no key or the
// strategy is append).
func (im *Importer) rowKey(ctx context.Context, tx pgx.Tx, ord int64) (map[string]*string, error) {
	fields := im.keys
	if len(fields) == 0 {
		fields = im.cols
	}
	vals := make([]*string, len(fields))
	dest := make([]any, len(fields))
	cols := make([]string, len(fields))
	for i, f := range fields {
		dest[i] = &vals[i]
		cols[i] = f.tmp + "::text"
	}
	sql := fmt.Sprintf("SELECT %s FROM %s WHERE ord = $1", strings.Join(cols, ", "), tempTable)
	if err := tx.QueryRow(ctx, sql, ord).Scan(dest...); err != nil {
		return nil, fmt.Errorf("read key of row %d: %w", ord, err)
	}
	key := make(map[string]*string, len(fields))
	for i, f := range fields {
		key[f.Name] = vals[i]
	}
	return key, nil
}

// merge runs sql, a statement of mergeSQL, and returns how many rows it created and
// updated.
func (im *Importer) merge(ctx context.Context, tx pgx.Tx, sql string, args ...any) (created, updated int, err error) {
	err = tx.QueryRow(ctx, sql, args...).Scan(&created, &updated)
	return created, updated, err
}

// mergeSQL builds the strategy's one statement over the temp rows matching where
// (which may use s.ord). It returns one row: how many rows it created and updated.
func (im *Importer) mergeSQL(where string) string {
	if im.strategy == Overwrite && !im.partitioned && len(im.sets()) > 0 {
		return im.updateInsertSQL(where)
	}
	return "WITH ins AS (" + im.insertSQL(tempTable, where) + ") " + im.counting("ins")
}

// updateInsertSQL is overwrite's statement: UPDATE the rows whose key exists from
// the batch, then INSERT the others. INSERT … ON CONFLICT DO UPDATE would lock
// every existing row before updating it (a WAL record more per row) and try each
// as an insert first; into a table that holds most keys already this costs about
// a third less. The INSERT keeps ON CONFLICT for a key inserted concurrently.
func (im *Importer) updateInsertSQL(where string) string {
	target := catalog.IdentOf(im.sch).Quoted()
	keys := make([]string, len(im.keys))
	inner := make([]string, 0, len(im.write)+len(im.keys))
	for i, f := range im.write {
		inner = append(inner, fmt.Sprintf("%s AS v%d", f.typed(), i+1))
	}
	on := make([]string, len(im.keys))
	seen := make([]string, len(im.keys))
	kout := make([]string, len(im.keys))
	for i, k := range im.keys {
		keys[i] = "(" + k.typed() + ")"
		inner = append(inner, fmt.Sprintf("%s AS k%d", k.typed(), i+1))
		on[i] = fmt.Sprintf("t.%s = v.k%d", k.quoted(), i+1)
		seen[i] = fmt.Sprintf("u.k%d = v.k%d", i+1, i+1)
		kout[i] = fmt.Sprintf("v.k%d", i+1)
	}
	var sets []string
	outs := make([]string, len(im.write))
	cols := make([]catalog.Column, len(im.write))
	for i, f := range im.write {
		outs[i] = fmt.Sprintf("v.v%d", i+1)
		cols[i] = f.Column
		if !f.PrimaryKey && f.Identity != "always" {
			sets = append(sets, fmt.Sprintf("%s = v.v%d", f.quoted(), i+1))
		}
	}
	override := ""
	if im.overrides {
		override = " OVERRIDING SYSTEM VALUE"
	}
	// Several rows with one key in a batch: the last one wins, the others count as skipped.
	v := fmt.Sprintf("SELECT DISTINCT ON (%s) %s FROM %s s%s ORDER BY %s, s.ord DESC",
		strings.Join(keys, ", "), strings.Join(inner, ", "), tempTable, where, strings.Join(keys, ", "))
	upd := fmt.Sprintf("UPDATE %s t SET %s FROM v WHERE %s RETURNING %s", target, strings.Join(sets, ", "), strings.Join(on, " AND "), strings.Join(kout, ", "))
	ins := fmt.Sprintf("INSERT INTO %s (%s)%s SELECT %s FROM v WHERE NOT EXISTS (SELECT 1 FROM u WHERE %s) ON CONFLICT (%s) DO UPDATE SET %s RETURNING (xmax = 0) AS created",
		target, catalog.QuotedColumns(cols), override, strings.Join(outs, ", "), strings.Join(seen, " AND "),
		catalog.QuoteNames(im.sch.PrimaryKey), strings.Join(im.sets(), ", "))
	return fmt.Sprintf("WITH v AS MATERIALIZED (%s), u AS (%s), ins AS (%s) "+
		"SELECT (SELECT count(*) FROM ins WHERE created), (SELECT count(*) FROM u) + (SELECT count(*) FROM ins WHERE NOT created)", v, upd, ins)
}

// insertSQL builds the strategy's INSERT of the rows of from (a table of the temp
// table's shape) matching where (which may use s.ord), RETURNING what counting counts.
//
// Each value is its text cast to the column's type without typmod; the INSERT's
// assignment applies the typmod and domain checks. Merge takes the existing value
// where the incoming one is NULL already in the SELECT (read from the statement's
// snapshot), so that the proposed row passes NOT NULL checks before ON CONFLICT.
func (im *Importer) insertSQL(from, where string) string {
	target := catalog.IdentOf(im.sch).Quoted()
	override := ""
	if im.overrides {
		override = " OVERRIDING SYSTEM VALUE"
	}
	typed := make([]string, len(im.write))
	for i, f := range im.write {
		typed[i] = f.typed()
	}
	var src string
	if im.strategy == Append {
		src = fmt.Sprintf("SELECT %s FROM %s s%s ORDER BY s.ord", strings.Join(typed, ", "), from, where)
	} else {
		keys := make([]string, len(im.keys))
		for i, k := range im.keys {
			keys[i] = "(" + k.typed() + ")"
		}
		inner := make([]string, len(typed))
		outs := make([]string, len(typed))
		for i := range typed {
			inner[i] = fmt.Sprintf("%s AS v%d", typed[i], i+1)
			outs[i] = fmt.Sprintf("v.v%d", i+1)
		}
		join := ""
		if im.strategy == Merge {
			// The existing row, joined on the keys carried along as k1…kN.
			on := make([]string, len(im.keys))
			for i, k := range im.keys {
				inner = append(inner, fmt.Sprintf("%s AS k%d", k.typed(), i+1))
				on[i] = fmt.Sprintf("cur.%s = v.k%d", k.quoted(), i+1)
			}
			join = fmt.Sprintf(" LEFT JOIN %s cur ON %s", target, strings.Join(on, " AND "))
			for i, f := range im.write {
				if !f.PrimaryKey {
					outs[i] = fmt.Sprintf("coalesce(v.v%d, cur.%s)", i+1, f.quoted())
				}
			}
		}
		// Several rows with one key in a batch: the last one wins, the others count as skipped.
		last := fmt.Sprintf("SELECT DISTINCT ON (%s) %s FROM %s s%s ORDER BY %s, s.ord DESC",
			strings.Join(keys, ", "), strings.Join(inner, ", "), from, where, strings.Join(keys, ", "))
		src = fmt.Sprintf("SELECT %s FROM (%s) v%s", strings.Join(outs, ", "), last, join)
	}
	conflict := ""
	if im.strategy != Append {
		sets := im.sets()
		if len(sets) == 0 {
			conflict = fmt.Sprintf(" ON CONFLICT (%s) DO NOTHING", catalog.QuoteNames(im.sch.PrimaryKey))
		} else {
			conflict = fmt.Sprintf(" ON CONFLICT (%s) DO UPDATE SET %s", catalog.QuoteNames(im.sch.PrimaryKey), strings.Join(sets, ", "))
		}
	}
	cols := make([]catalog.Column, len(im.write))
	for i, f := range im.write {
		cols[i] = f.Column
	}
	list := ""
	if len(cols) > 0 {
		list = " (" + catalog.QuotedColumns(cols) + ")"
	}
	// No column written (append of records supplying none): every column takes its default.
	return fmt.Sprintf("INSERT INTO %s%s%s %s%s RETURNING %s", target, list, override, src, conflict, im.returning())
}

// sets are the assignments of the strategy's ON CONFLICT DO UPDATE: none for skip,
// nor when every column written is a key or an identity ALWAYS column (DO NOTHING).
func (im *Importer) sets() []string {
	var sets []string
	if im.strategy == Skip || im.strategy == Append {
		return nil
	}
	for _, f := range im.write {
		// Key columns are what matched; identity ALWAYS columns cannot be updated.
		if f.PrimaryKey || f.Identity == "always" {
			continue
		}
		sets = append(sets, f.quoted()+" = EXCLUDED."+f.quoted())
	}
	return sets
}

// neverUpdates reports whether the strategy's INSERT only ever inserts: append (no
// ON CONFLICT) and DO NOTHING return only rows they created.
func (im *Importer) neverUpdates() bool { return len(im.sets()) == 0 }

// returning is what the strategy's INSERT returns per row written, for counting:
// whether xmax is 0 (a row just inserted; an updated one carries the updating
// transaction) on a plain table. A partitioned table has no xmax to return ("cannot
// retrieve a system column in this context"): there it returns the key, which counting
// looks up as it was before the statement. A statement that never updates needs neither.
func (im *Importer) returning() string {
	switch {
	case im.neverUpdates():
		return "1"
	case im.partitioned:
		return catalog.QuoteNames(im.sch.PrimaryKey)
	default:
		return "(xmax = 0) AS created"
	}
}

// counting is the SELECT over ins (the rows insertSQL returned) that answers one row:
// how many rows were created and how many updated. For a partitioned target a row
// whose key existed is an update: the lookup reads the statement's snapshot, which
// does not see the INSERT's own rows (a key a concurrent transaction inserts after the
// snapshot and the statement then updates counts as created).
func (im *Importer) counting(ins string) string {
	switch {
	case im.neverUpdates():
		return "SELECT count(*), 0 FROM " + ins
	case im.partitioned:
		on := make([]string, len(im.sch.PrimaryKey))
		for i, k := range im.sch.PrimaryKey {
			q := pgx.Identifier{k}.Sanitize()
			on[i] = "cur." + q + " = " + ins + "." + q
		}
		return fmt.Sprintf(`SELECT count(*) FILTER (WHERE NOT existed), count(*) FILTER (WHERE existed)
		FROM (SELECT EXISTS (SELECT 1 FROM %s cur WHERE %s) AS existed FROM %s) x`, catalog.IdentOf(im.sch).Quoted(), strings.Join(on, " AND "), ins)
	default:
		return "SELECT count(*) FILTER (WHERE created), count(*) FILTER (WHERE NOT created) FROM " + ins
	}
}

// Finish moves every sequence the table's columns draw from past the imported
// values, so the app's next insert does not collide with an imported key: the
// sequences of serial and identity columns, and free-standing ones a default names
// (id bigint DEFAULT nextval('s'), as pg_dump output has), found through the
// dependencies PostgreSQL records (catalog.Sequences), never by reading the default's
// text. A sequence is never moved backwards: one already past the table's largest
// value (smallest, for a descending one) is left alone, as is one of an empty table.
// A sequence several columns draw from is moved past all of them.
func (im *Importer) Finish(ctx context.Context) error {
	if err := im.Commit(ctx); err != nil {
		return err
	}
	table := catalog.IdentOf(im.sch).Quoted()
	seqs, err := catalog.Sequences(ctx, im.pool, catalog.IdentOf(im.sch).String())
	if err != nil {
		return fmt.Errorf("import %s: find its sequences: %w", im.sch.Name, err)
	}
	for _, seq := range seqs {
		agg, past := "max", ">"
		if seq.Increment < 0 {
			agg, past = "min", "<"
		}
		vals := make([]string, len(seq.Columns))
		for i, c := range seq.Columns {
			vals[i] = fmt.Sprintf("%s(%s)::bigint", agg, pgx.Identifier{c}.Sanitize())
		}
		extreme := vals[0]
		if len(vals) > 1 {
			extreme = map[string]string{"max": "greatest", "min": "least"}[agg] + "(" + strings.Join(vals, ", ") + ")"
		}
		// setval(…, m, true): the next value is m + increment, past every imported one.
		sql := fmt.Sprintf(`SELECT setval($1::text::regclass, x.m, true) FROM (SELECT %s AS m FROM %s) x, %s s
			WHERE x.m %s s.last_value OR (x.m = s.last_value AND NOT s.is_called)`, extreme, table, seq.Quoted(), past)
		if _, err := im.pool.Exec(ctx, sql, seq.Quoted()); err != nil {
			return fmt.Errorf("import %s: move sequence %s past column %s: %w", im.sch.Name, seq, quotedList(seq.Columns), err)
		}
	}
	return nil
}
