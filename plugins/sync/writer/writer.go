// Package writer is the write path of live sync, the counterpart of Phoenix.Sync's
// Writer: a client (TanStack DB, an Electric app) applies changes optimistically and
// posts them; the writer authorizes and validates each one by the rules the app gave
// for its table, applies them all in one transaction, and returns that transaction's
// id, which the client then waits for in the shape stream (headers.txids) before it
// drops its optimistic state.
//
// A module or the host app builds one Writer over its own pool:
//
//	w := writer.New(pool).
//		Allow("todos", writer.Rules{
//			Check: func(ctx context.Context, m *writer.Mutation) error {
//				if m.Type != writer.Delete && !writer.Equal(m.Modified["owner"], userOf(ctx)) {
//					return errors.New("not your todo")
//				}
//				return nil
//			},
//			Validate: func(ctx context.Context, m *writer.Mutation, current writer.Row) error {
//				if current != nil && !writer.Equal(current["owner"], userOf(ctx)) {
//					return errors.New("not your todo")
//				}
//				return nil
//			},
//		})
//	mux.Handle("POST /api/writes", writer.Handler(w, authenticate))
//
// Nothing the client sends becomes SQL: tables must be allowed and are resolved in
// the catalog (plugins/sync/catalog), columns must be the table's, identifiers are
// quoted, and every value is a bound parameter cast to its column's type.
package writer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
)

// The mutation types.
const (
	Insert = "insert"
	Update = "update"
	Delete = "delete"
)

// Row is a row of a table as the default Load reads it: column → value, as
// to_jsonb reads it and encoding/json decodes it with numbers as json.Number (so a
// timestamptz is an ISO 8601 string, a jsonb column its decoded document). Compare
// its values with a Mutation's with Equal.
type Row map[string]any

// Mutation is one change a client asks for.
type Mutation struct {
	// Index is the mutation's place in the list, from 0.
	Index int
	// Type is Insert, Update or Delete.
	Type string
	// Schema and Table name the table ("public" when the client gave no schema).
	Schema, Table string
	// Modified is the row after the change (insert, update); Original the row
	// before it (update, delete). Changes, when the client sent it, holds the
	// columns an update sets; without it an update sets the columns where Modified
	// differs from Original (all of Modified when there is no Original).
	Modified, Original map[string]any
	Changes            map[string]any
	// Key is the row's primary key, which Apply fills in before Check from Original
	// (Modified for a key column Original lacks). Empty for a table without one.
	Key map[string]any
}

// qualified is "schema.table".
func (m *Mutation) qualified() string {
	if m.Table == "" {
		return ""
	}
	return m.Schema + "." + m.Table
}

// Rules say what the writer does with mutations of one table. Every function is
// optional; an error from Check or Validate refuses the mutation as ErrForbidden
// unless it wraps ErrInvalid or ErrConflict (then that is its class). Hooks run in
// the transaction, in the mutations' order; an error from any of them rolls back
// every mutation. The caller (who is writing) reaches the rules through ctx: put it
// there before Apply (Handler's caller function does).
type Rules struct {
	// Accept lists the mutation types allowed (Insert, Update, Delete); nil allows
	// all three.
	Accept []string
	// Check runs first, for every mutation before any row is read or written, with
	// the mutation's columns checked against the table and its Key filled in. It may
	// change m (set a column, say).
	Check func(ctx context.Context, m *Mutation) error
	// Load reads the current row of an update or delete (and of an insert, if
	// given). By default the row with m.Key is read FOR UPDATE, and a missing row
	// is ErrNotFound; a Load returning a nil Row for an update or delete means the
	// same.
	Load func(ctx context.Context, tx pgx.Tx, m *Mutation) (Row, error)
	// Validate sees the mutation with the current row (nil for an insert, unless
	// Load gave one) and may refuse it: changing the owner, editing another user's row.
	Validate func(ctx context.Context, m *Mutation, current Row) error
	// Before and After run just before and after the mutation's statement.
	Before func(ctx context.Context, tx pgx.Tx, m *Mutation) error
	After  func(ctx context.Context, tx pgx.Tx, m *Mutation) error
}

// Writer applies mutations to the tables it allows. It is safe for concurrent use.
type Writer struct {
	pool  *pgxpool.Pool
	mu    sync.RWMutex
	rules map[[2]string]Rules
}

// New returns a Writer over pool that allows no table yet.
func New(pool *pgxpool.Pool) *Writer {
	return &Writer{pool: pool, rules: map[[2]string]Rules{}}
}

// Allow lets mutations of table through under rules, replacing earlier rules for
// it. table is "name" (in public) or "schema.name"; AllowIn names a table whose
// name holds a dot. It returns w, so calls chain.
func (w *Writer) Allow(table string, rules Rules) *Writer {
	if s, t, ok := strings.Cut(table, "."); ok {
		return w.AllowIn(s, t, rules)
	}
	return w.AllowIn("public", table, rules)
}

// AllowIn is Allow for the table named exactly name in schema.
func (w *Writer) AllowIn(schema, name string, rules Rules) *Writer {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rules[[2]string{schema, name}] = rules
	return w
}

// rulesFor returns the rules of a table, if it is allowed.
func (w *Writer) rulesFor(schema, name string) (Rules, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	r, ok := w.rules[[2]string{schema, name}]
	return r, ok
}

// Apply applies mutations in one transaction — all of them or none — and returns its
// id as logical replication and the shape stream report it (headers.txids): the
// 32-bit xid, pg_current_xact_id()::xid. An update or delete of a row that does not
// exist is ErrNotFound. A refused mutation is a *MutationError (see ErrForbidden,
// ErrInvalid, ErrConflict); an empty list is ErrInvalid. Apply sets each mutation's
// Index, Key, and Schema when empty ("public").
//
// Order: mutations of tables not allowed, or of types not accepted, are refused
// before the database is asked anything. Then, in the transaction, every
// mutation's table and columns are checked and its Check runs; then each in turn is
// loaded, validated and written between its Before and After hooks.
func (w *Writer) Apply(ctx context.Context, mutations []Mutation) (txid int64, err error) {
	if len(mutations) == 0 {
		return 0, fmt.Errorf("%w: no mutations", ErrInvalid)
	}
	ms := make([]*Mutation, len(mutations))
	rules := make([]Rules, len(mutations))
	for i := range mutations {
		m := &mutations[i]
		m.Index = i
		if m.Schema == "" {
			m.Schema = "public"
		}
		ms[i] = m
		fail := func(err error) error {
			return &MutationError{Index: i, Type: m.Type, Table: m.qualified(), Err: err}
		}
		switch m.Type {
		case Insert, Update, Delete:
		default:
			return 0, fail(fmt.Errorf("%w: type %q: want insert, update or delete", ErrInvalid, m.Type))
		}
		r, ok := w.rulesFor(m.Schema, m.Table)
		if !ok {
			return 0, fail(fmt.Errorf("%w: table %s is not allowed", ErrForbidden, pgx.Identifier{m.Schema, m.Table}.Sanitize()))
		}
		if r.Accept != nil && !slices.Contains(r.Accept, m.Type) {
			return 0, fail(fmt.Errorf("%w: %s is not accepted for this table", ErrForbidden, m.Type))
		}
		rules[i] = r
	}

	tx, err := w.pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	tables := map[[2]string]*table{}
	tabs := make([]*table, len(ms))
	for i, m := range ms {
		fail := func(err error) error {
			return &MutationError{Index: i, Type: m.Type, Table: m.qualified(), Key: m.Key, Err: err}
		}
		k := [2]string{m.Schema, m.Table}
		t := tables[k]
		if t == nil {
			if t, err = readTable(ctx, tx, m.Schema, m.Table); err != nil {
				return 0, fail(err)
			}
			tables[k] = t
		}
		tabs[i] = t
		if err := t.prepare(m); err != nil {
			return 0, fail(err)
		}
		if rules[i].Check != nil {
			if err := rules[i].Check(ctx, m); err != nil {
				return 0, fail(refusal(err))
			}
			// Check may have changed the mutation.
			if err := t.prepare(m); err != nil {
				return 0, fail(err)
			}
		}
	}
	for i, m := range ms {
		if err := tabs[i].apply(ctx, tx, m, rules[i]); err != nil {
			return 0, &MutationError{Index: i, Type: m.Type, Table: m.qualified(), Key: m.Key, Err: err}
		}
	}
	if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()::xid::text::bigint`).Scan(&txid); err != nil {
		return 0, fmt.Errorf("read transaction id: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, dbError(fmt.Errorf("commit: %w", err))
	}
	return txid, nil
}

// table is what Apply knows of a table.
type table struct {
	quoted string
	// cast maps each column to the type its text is cast to: its type with domains
	// unwrapped and without typmod, so that the assignment applies the typmod and
	// the domain's checks (an explicit cast to varchar(3) would cut silently).
	cast      map[string]string
	generated map[string]bool
	pk        []string
}

// readTable resolves a table in the catalog and reads its columns' types.
func readTable(ctx context.Context, tx pgx.Tx, schema, name string) (*table, error) {
	sch, err := catalog.GetSchemaIn(ctx, tx, schema, name)
	if errors.Is(err, catalog.ErrUnknownTable) {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err != nil {
		return nil, err
	}
	t := &table{quoted: catalog.IdentOf(sch).Quoted(), cast: map[string]string{}, generated: map[string]bool{}, pk: sch.PrimaryKey}
	rows, err := tx.Query(ctx, `
WITH RECURSIVE d(attname, typ) AS (
	SELECT a.attname, a.atttypid FROM pg_attribute a
	WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
	UNION ALL
	SELECT d.attname, t.typbasetype FROM d JOIN pg_type t ON t.oid = d.typ AND t.typtype = 'd'
)
SELECT d.attname, format_type(d.typ, -1) FROM d JOIN pg_type t ON t.oid = d.typ AND t.typtype <> 'd'`, t.quoted)
	if err != nil {
		return nil, fmt.Errorf("column types of %s: %w", t.quoted, err)
	}
	for rows.Next() {
		var col, typ string
		if err := rows.Scan(&col, &typ); err != nil {
			rows.Close()
			return nil, fmt.Errorf("column types of %s: %w", t.quoted, err)
		}
		t.cast[col] = typ
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("column types of %s: %w", t.quoted, err)
	}
	for _, c := range sch.Columns {
		if t.cast[c.Name] == "" {
			return nil, fmt.Errorf("column types of %s: none for %q", t.quoted, c.Name)
		}
		t.generated[c.Name] = c.Generated != ""
	}
	return t, nil
}

// prepare checks m's columns against the table and fills in its key.
func (t *table) prepare(m *Mutation) error {
	for _, vals := range []map[string]any{m.Modified, m.Original, m.Changes} {
		for col := range vals {
			if _, ok := t.cast[col]; !ok {
				return fmt.Errorf("%w: unknown column %s", ErrInvalid, pgx.Identifier{col}.Sanitize())
			}
		}
	}
	if m.Type == Insert {
		for col := range m.Modified {
			if t.generated[col] {
				return fmt.Errorf("%w: column %s is generated", ErrInvalid, pgx.Identifier{col}.Sanitize())
			}
		}
	}
	m.Key = nil
	if len(t.pk) == 0 {
		if m.Type != Insert {
			return fmt.Errorf("%w: the table has no primary key to find the row by", ErrInvalid)
		}
		return nil
	}
	key := map[string]any{}
	for _, col := range t.pk {
		v, ok := m.Original[col]
		if !ok {
			v, ok = m.Modified[col]
		}
		if !ok || v == nil {
			if m.Type == Insert {
				continue // a default (serial, identity) may give it
			}
			return fmt.Errorf("%w: no value for key column %s", ErrInvalid, pgx.Identifier{col}.Sanitize())
		}
		key[col] = v
	}
	m.Key = key
	return nil
}

// apply loads, validates and writes one mutation between its hooks.
func (t *table) apply(ctx context.Context, tx pgx.Tx, m *Mutation, r Rules) error {
	var current Row
	var err error
	switch {
	case r.Load != nil:
		if current, err = r.Load(ctx, tx, m); err != nil {
			return dbError(err)
		}
		if current == nil && m.Type != Insert {
			return ErrNotFound
		}
	case m.Type != Insert:
		if current, err = t.load(ctx, tx, m.Key); err != nil {
			return err
		}
	}
	if r.Validate != nil {
		if err := r.Validate(ctx, m, current); err != nil {
			return refusal(err)
		}
	}
	if r.Before != nil {
		if err := r.Before(ctx, tx, m); err != nil {
			return dbError(err)
		}
	}
	if err := t.write(ctx, tx, m); err != nil {
		return err
	}
	if r.After != nil {
		if err := r.After(ctx, tx, m); err != nil {
			return dbError(err)
		}
	}
	return nil
}

// load reads the row with key FOR UPDATE.
func (t *table) load(ctx context.Context, tx pgx.Tx, key map[string]any) (Row, error) {
	where, args, err := t.where(key, nil)
	if err != nil {
		return nil, err
	}
	var raw []byte
	err = tx.QueryRow(ctx, `SELECT to_jsonb(r.*)::text FROM `+t.quoted+` AS r WHERE `+where+` FOR UPDATE`, args...).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, dbError(err)
	}
	var row Row
	if err := decode(raw, &row); err != nil {
		return nil, fmt.Errorf("decode the current row: %w", err)
	}
	return row, nil
}

// where is "r.k1 = $n::type AND …" for key, its parameters appended to args.
func (t *table) where(key map[string]any, args []any) (string, []any, error) {
	var parts []string
	for _, col := range t.pk {
		v, err := textOf(key[col], t.cast[col])
		if err != nil {
			return "", nil, fmt.Errorf("key column %s: %w", pgx.Identifier{col}.Sanitize(), err)
		}
		args = append(args, v)
		parts = append(parts, fmt.Sprintf("r.%s = $%d::%s", pgx.Identifier{col}.Sanitize(), len(args), t.cast[col]))
	}
	return strings.Join(parts, " AND "), args, nil
}

// write runs the mutation's statement.
func (t *table) write(ctx context.Context, tx pgx.Tx, m *Mutation) error {
	var sql string
	var args []any
	switch m.Type {
	case Insert:
		cols := sortedKeys(m.Modified)
		if len(cols) == 0 {
			sql = `INSERT INTO ` + t.quoted + ` DEFAULT VALUES`
			break
		}
		names := make([]string, len(cols))
		params := make([]string, len(cols))
		for i, col := range cols {
			v, err := textOf(m.Modified[col], t.cast[col])
			if err != nil {
				return fmt.Errorf("column %s: %w", pgx.Identifier{col}.Sanitize(), err)
			}
			args = append(args, v)
			names[i] = pgx.Identifier{col}.Sanitize()
			params[i] = fmt.Sprintf("$%d::%s", len(args), t.cast[col])
		}
		sql = `INSERT INTO ` + t.quoted + ` (` + strings.Join(names, ", ") + `) VALUES (` + strings.Join(params, ", ") + `)`
	case Update:
		set := updates(m)
		if len(set) == 0 {
			return nil // nothing changes; the row was found (or Load said so)
		}
		cols := sortedKeys(set)
		assigns := make([]string, len(cols))
		for i, col := range cols {
			if t.generated[col] {
				return fmt.Errorf("%w: column %s is generated", ErrInvalid, pgx.Identifier{col}.Sanitize())
			}
			v, err := textOf(set[col], t.cast[col])
			if err != nil {
				return fmt.Errorf("column %s: %w", pgx.Identifier{col}.Sanitize(), err)
			}
			args = append(args, v)
			assigns[i] = fmt.Sprintf("%s = $%d::%s", pgx.Identifier{col}.Sanitize(), len(args), t.cast[col])
		}
		where, wargs, err := t.where(m.Key, args)
		if err != nil {
			return err
		}
		args = wargs
		sql = `UPDATE ` + t.quoted + ` AS r SET ` + strings.Join(assigns, ", ") + ` WHERE ` + where
	case Delete:
		where, wargs, err := t.where(m.Key, nil)
		if err != nil {
			return err
		}
		args = wargs
		sql = `DELETE FROM ` + t.quoted + ` AS r WHERE ` + where
	}
	tag, err := tx.Exec(ctx, sql, args...)
	if err != nil {
		return dbError(err)
	}
	if m.Type != Insert && tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// updates is what an update sets: Changes if the client sent it, else the columns
// where Modified differs from Original, else all of Modified.
func updates(m *Mutation) map[string]any {
	if m.Changes != nil {
		return m.Changes
	}
	if len(m.Original) == 0 {
		return m.Modified
	}
	set := map[string]any{}
	for col, v := range m.Modified {
		if old, ok := m.Original[col]; !ok || !sameJSON(old, v) {
			set[col] = v
		}
	}
	return set
}

// sameJSON reports whether two values encode to the same JSON.
func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
