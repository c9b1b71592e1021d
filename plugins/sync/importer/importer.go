// Package importer writes rows received from another site into a local table with a
// conflict strategy, set-based: each batch is COPYed into a temporary all-text table
// and merged with one INSERT … SELECT … ON CONFLICT. Values are cast from their text
// representation by the column types' own input functions, exactly as COPY would.
// A batch is one transaction: it lands whole or not at all. When a batch's statement
// fails (a NOT NULL, CHECK or foreign key violation), that batch alone is replayed
// row by row under savepoints, so the good rows land and each bad one is reported
// with its key.
//
// Strategies (tables with a primary key):
//   - skip: keep an existing row with the same key.
//   - overwrite: replace it.
//   - merge: update it, keeping the existing value where the incoming one is NULL.
//   - append: always insert, letting the key's default (identity, sequence) pick a new key.
//
// Tables without a primary key have no notion of "the same row": only append applies.
package importer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
)

// Strategy says what to do with an incoming row whose key exists.
type Strategy string

// The strategies.
const (
	Skip      Strategy = "skip"
	Overwrite Strategy = "overwrite"
	Merge     Strategy = "merge"
	Append    Strategy = "append"
)

// ParseStrategy checks a strategy name.
func ParseStrategy(s string) (Strategy, error) {
	switch Strategy(s) {
	case Skip, Overwrite, Merge, Append:
		return Strategy(s), nil
	case "":
		return Skip, nil
	}
	return "", fmt.Errorf("%w: %q (want skip, overwrite, merge or append)", ErrBadStrategy, s)
}

// Errors callers branch on.
var (
	ErrBadStrategy = errors.New("unknown strategy")
	// ErrStrategyNotApplicable: skip, overwrite and merge need a primary key.
	ErrStrategyNotApplicable = errors.New("strategy needs a primary key")
	// ErrNoKeyDefault: append needs the key to have a default (identity or sequence).
	ErrNoKeyDefault = errors.New("append needs a primary key with a default")
	// ErrUnknownColumn: the incoming rows have a column the table lacks.
	ErrUnknownColumn = errors.New("unknown column")
	// ErrMalformedBatch: the batch is not valid COPY text for its columns.
	ErrMalformedBatch = errors.New("malformed batch")
)

// Result counts what an import did.
type Result struct {
	Created int           `json:"created"`
	Updated int           `json:"updated"`
	Skipped int           `json:"skipped"`
	Errors  []RecordError `json:"errors"`
}

// Add adds r's counts and errors to res.
func (res *Result) Add(r Result) {
	res.Created += r.Created
	res.Updated += r.Updated
	res.Skipped += r.Skipped
	res.Errors = append(res.Errors, r.Errors...)
}

// RecordError is one row that could not be imported.
type RecordError struct {
	// Key maps key column → text value (the row's values when the table has no key).
	Key    map[string]*string `json:"key"`
	Reason string             `json:"reason"`
}

// Options configure an Importer.
type Options struct {
	Strategy Strategy
	// Columns of the incoming rows, in order. Columns the table has and the rows
	// lack get their defaults.
	Columns []string
	// MaxErrors bounds the per-record errors kept per batch (default 100); the counts stay exact.
	MaxErrors int
}

// Importer imports batches into one table. Batches may come from one goroutine at a time.
type Importer struct {
	pool      *pgxpool.Pool
	sch       *catalog.Schema
	strategy  Strategy
	cols      []catalog.Column // incoming columns, in incoming order
	write     []catalog.Column // columns written (append drops the key)
	empty     bool             // the table was empty when the import began
	overrides bool             // an identity ALWAYS column is written
	maxErrors int
}

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
	for _, name := range o.Columns {
		c, ok := sch.Column(name)
		if !ok {
			return nil, fmt.Errorf("import %s: %w %q", table, ErrUnknownColumn, name)
		}
		im.cols = append(im.cols, c)
	}
	if len(sch.PrimaryKey) == 0 && o.Strategy != Append {
		return nil, fmt.Errorf("import %s: %w: the table has none, so only append applies", table, ErrStrategyNotApplicable)
	}
	for _, k := range sch.PrimaryKey {
		if !im.has(k) && o.Strategy != Append {
			return nil, fmt.Errorf("import %s: incoming rows lack key column %q", table, k)
		}
	}
	for _, c := range im.cols {
		if o.Strategy == Append && c.PrimaryKey {
			if !c.HasDefault {
				return nil, fmt.Errorf("import %s: %w: key column %q has no default or identity", table, ErrNoKeyDefault, c.Name)
			}
			continue // append lets the default pick the key
		}
		if c.Generated != "" {
			continue
		}
		im.write = append(im.write, c)
		if c.Identity == "always" {
			im.overrides = true
		}
	}
	if err := pool.QueryRow(ctx, "SELECT NOT EXISTS (SELECT 1 FROM "+sch.Ident().Quoted()+")").Scan(&im.empty); err != nil {
		return nil, fmt.Errorf("import %s: %w", table, err)
	}
	return im, nil
}

// Schema returns the target table's definition.
func (im *Importer) Schema() *catalog.Schema { return im.sch }

func (im *Importer) has(col string) bool {
	for _, c := range im.cols {
		if c.Name == col {
			return true
		}
	}
	return false
}

// ImportRecords imports rows given as column → text value maps (nil = NULL).
func (im *Importer) ImportRecords(ctx context.Context, records []map[string]*string) (Result, error) {
	var buf bytes.Buffer
	for _, r := range records {
		for k := range r {
			if !im.has(k) {
				return Result{}, fmt.Errorf("import %s: %w %q", im.sch.Name, ErrUnknownColumn, k)
			}
		}
		for i, c := range im.cols {
			if i > 0 {
				buf.WriteByte('\t')
			}
			AppendCopyValue(&buf, r[c.Name])
		}
		buf.WriteByte('\n')
	}
	return im.ImportCopy(ctx, buf.Bytes())
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

// ImportCopy imports one batch of rows in COPY text format, in one transaction.
func (im *Importer) ImportCopy(ctx context.Context, data []byte) (Result, error) {
	rows := bytes.Count(data, []byte{'\n'})
	if rows == 0 {
		return Result{}, nil
	}
	var res Result
	err := pgx.BeginFunc(ctx, im.pool, func(tx pgx.Tx) error {
		if im.empty && im.strategy != Append || len(im.sch.PrimaryKey) == 0 && im.strategy == Append && im.writesAll() {
			// Nothing can conflict: COPY straight into the table. Anything it refuses
			// (a constraint, a concurrent writer) falls back to the general path.
			ok, err := im.straightCopy(ctx, tx, data)
			if err != nil {
				return err
			}
			if ok {
				res.Created = rows
				return nil
			}
		}
		r, err := im.viaTemp(ctx, tx, data, rows)
		res = r
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("import %s: %w", im.sch.Name, err)
	}
	return res, nil
}

// writesAll reports whether every incoming column is written as is.
func (im *Importer) writesAll() bool { return len(im.write) == len(im.cols) }

func (im *Importer) straightCopy(ctx context.Context, tx pgx.Tx, data []byte) (bool, error) {
	if !im.writesAll() {
		return false, nil
	}
	if _, err := tx.Exec(ctx, "SAVEPOINT fk_copy"); err != nil {
		return false, err
	}
	sql := fmt.Sprintf("COPY %s (%s) FROM STDIN", im.sch.Ident().Quoted(), catalog.QuotedColumns(im.cols))
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(data), sql); err != nil {
		if _, rerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT fk_copy"); rerr != nil {
			return false, rerr
		}
		im.empty = false
		return false, nil
	}
	_, err := tx.Exec(ctx, "RELEASE SAVEPOINT fk_copy")
	return err == nil, err
}

const tempTable = "fk_import_rows"

func (im *Importer) viaTemp(ctx context.Context, tx pgx.Tx, data []byte, rows int) (Result, error) {
	defs := make([]string, len(im.cols))
	for i, c := range im.cols {
		defs[i] = pgx.Identifier{c.Name}.Sanitize() + " text"
	}
	create := fmt.Sprintf("CREATE TEMP TABLE %s (%s, fk_ord bigint GENERATED ALWAYS AS IDENTITY) ON COMMIT DROP", tempTable, strings.Join(defs, ", "))
	if _, err := tx.Exec(ctx, create); err != nil {
		return Result{}, err
	}
	copySQL := fmt.Sprintf("COPY %s (%s) FROM STDIN", tempTable, catalog.QuotedColumns(im.cols))
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(data), copySQL); err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrMalformedBatch, err)
	}
	if _, err := tx.Exec(ctx, "SAVEPOINT fk_batch"); err != nil {
		return Result{}, err
	}
	created, updated, err := im.merge(ctx, tx, "")
	if err == nil {
		if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT fk_batch"); err != nil {
			return Result{}, err
		}
		return Result{Created: created, Updated: updated, Skipped: rows - created - updated}, nil
	}
	if !isDataError(err) {
		return Result{}, err
	}
	if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT fk_batch"); err != nil {
		return Result{}, err
	}
	return im.rowByRow(ctx, tx, rows)
}

// isDataError reports whether err is about the rows (a constraint, a bad value),
// not the connection: only those are worth replaying row by row.
func isDataError(err error) bool {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) {
		return false
	}
	// Class 22: data exception; 23: integrity constraint violation.
	return strings.HasPrefix(pg.Code, "22") || strings.HasPrefix(pg.Code, "23")
}

// rowByRow replays the batch one row at a time under savepoints, collecting errors.
func (im *Importer) rowByRow(ctx context.Context, tx pgx.Tx, rows int) (Result, error) {
	var res Result
	for ord := 1; ord <= rows; ord++ {
		if _, err := tx.Exec(ctx, "SAVEPOINT fk_row"); err != nil {
			return Result{}, err
		}
		c, u, err := im.merge(ctx, tx, fmt.Sprintf(" WHERE fk_ord = %d", ord))
		if err == nil {
			if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT fk_row"); err != nil {
				return Result{}, err
			}
			res.Created += c
			res.Updated += u
			res.Skipped += 1 - c - u
			continue
		}
		if !isDataError(err) {
			return Result{}, err
		}
		if _, rerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT fk_row"); rerr != nil {
			return Result{}, rerr
		}
		res.Skipped++
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

// rowKey reads the key of temp row ord (all values when the table has no key).
func (im *Importer) rowKey(ctx context.Context, tx pgx.Tx, ord int) (map[string]*string, error) {
	names := im.sch.PrimaryKey
	if len(names) == 0 || im.strategy == Append {
		names = nil
		for _, c := range im.cols {
			names = append(names, c.Name)
		}
	}
	vals := make([]*string, len(names))
	dest := make([]any, len(names))
	for i := range vals {
		dest[i] = &vals[i]
	}
	if err := tx.QueryRow(ctx, fmt.Sprintf("SELECT %s FROM %s WHERE fk_ord = $1", catalog.QuoteNames(names), tempTable), ord).Scan(dest...); err != nil {
		return nil, err
	}
	key := make(map[string]*string, len(names))
	for i, n := range names {
		key[n] = vals[i]
	}
	return key, nil
}

// merge runs the strategy's one statement over the temp rows matching where and
// returns how many rows it created and updated.
func (im *Importer) merge(ctx context.Context, tx pgx.Tx, where string) (created, updated int, err error) {
	target := im.sch.Ident().Quoted()
	typed := make([]string, len(im.write))
	for i, c := range im.write {
		typed[i] = pgx.Identifier{c.Name}.Sanitize() + "::" + c.Type
	}
	override := ""
	if im.overrides {
		override = " OVERRIDING SYSTEM VALUE"
	}
	var src string
	if im.strategy == Append {
		src = fmt.Sprintf("SELECT %s FROM %s%s ORDER BY fk_ord", strings.Join(typed, ", "), tempTable, where)
	} else {
		// Several rows with one key in a batch: the last one wins, the others count as skipped.
		keys := make([]string, len(im.sch.PrimaryKey))
		for i, k := range im.sch.PrimaryKey {
			c, _ := im.sch.Column(k)
			keys[i] = "(" + pgx.Identifier{k}.Sanitize() + "::" + c.Type + ")"
		}
		src = fmt.Sprintf("SELECT DISTINCT ON (%s) %s FROM %s%s ORDER BY %s, fk_ord DESC",
			strings.Join(keys, ", "), strings.Join(typed, ", "), tempTable, where, strings.Join(keys, ", "))
	}
	conflict := ""
	switch im.strategy {
	case Skip:
		conflict = fmt.Sprintf(" ON CONFLICT (%s) DO NOTHING", catalog.QuoteNames(im.sch.PrimaryKey))
	case Overwrite, Merge:
		var sets []string
		for _, c := range im.write {
			if c.PrimaryKey {
				continue
			}
			q := pgx.Identifier{c.Name}.Sanitize()
			if im.strategy == Overwrite {
				sets = append(sets, q+" = EXCLUDED."+q)
			} else {
				sets = append(sets, q+" = COALESCE(EXCLUDED."+q+", t."+q+")")
			}
		}
		if len(sets) == 0 {
			conflict = fmt.Sprintf(" ON CONFLICT (%s) DO NOTHING", catalog.QuoteNames(im.sch.PrimaryKey))
		} else {
			conflict = fmt.Sprintf(" ON CONFLICT (%s) DO UPDATE SET %s", catalog.QuoteNames(im.sch.PrimaryKey), strings.Join(sets, ", "))
		}
	}
	sql := fmt.Sprintf(`WITH ins AS (INSERT INTO %s AS t (%s)%s %s%s RETURNING (xmax = 0) AS created)
		SELECT count(*) FILTER (WHERE created), count(*) FILTER (WHERE NOT created) FROM ins`,
		target, catalog.QuotedColumns(im.write), override, src, conflict)
	err = tx.QueryRow(ctx, sql).Scan(&created, &updated)
	return created, updated, err
}

// Finish moves the table's sequences (serial and identity columns) past the largest
// imported value, so the app's next insert does not collide with imported keys.
func (im *Importer) Finish(ctx context.Context) error {
	for _, c := range im.sch.Columns {
		if c.Identity == "" && (c.Default == nil || !strings.HasPrefix(*c.Default, "nextval(")) {
			continue
		}
		col := pgx.Identifier{c.Name}.Sanitize()
		_, err := im.pool.Exec(ctx, fmt.Sprintf(`SELECT setval(seq, greatest((SELECT max(%s) FROM %s), 1)::bigint)
			FROM pg_get_serial_sequence($1, $2) AS seq WHERE seq IS NOT NULL`, col, im.sch.Ident().Quoted()),
			im.sch.Ident().Quoted(), c.Name)
		if err != nil {
			return fmt.Errorf("import %s: reset sequence of %s: %w", im.sch.Name, c.Name, err)
		}
	}
	return nil
}
