package follow

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// Errors an Applier returns (wrapped) for what it refuses.
var (
	// ErrUnknownTable: a change names a table the follow does not write.
	ErrUnknownTable = errors.New("table not followed")
	// ErrUnknownColumn: a change carries a column the local table lacks.
	ErrUnknownColumn = errors.New("unknown column")
	// ErrNoPrimaryKey: a followed local table has no primary key to match rows by.
	ErrNoPrimaryKey = errors.New("table has no primary key")
	// ErrBadChange: a change is malformed (unknown op, a key column missing or NULL).
	ErrBadChange = errors.New("malformed change")
	// ErrOutOfOrder: a part came that does not continue the open transaction.
	ErrOutOfOrder = errors.New("transaction part out of order")
)

// Applied says what Apply did with one part of a sender transaction.
type Applied struct {
	// Committed: the part was its transaction's last; the transaction is committed
	// here with its position.
	Committed bool
	// Skipped: the transaction's position is not past the one stored (a replay): the
	// part was not applied.
	Skipped bool
	// Position is the sender transaction's position.
	Position uint64
	// Changes, Conflicts, Created, Updated and Deleted count what the transaction's
	// parts so far did: changes applied, changes that met a local edit (resolved by
	// the strategy), rows inserted, updated and deleted (a truncate counts as a
	// change, not as rows).
	Changes, Conflicts, Created, Updated, Deleted int
}

// column is one column of a followed local table.
type column struct {
	name   string
	quoted string
	// cast is the type a value's text is converted to for writing: the column's type
	// with domains unwrapped and without typmod; the assignment to the column then
	// applies the typmod and the domain's checks, as the importer does.
	cast string
	// cmp is the type the sender's text is read through to compare it with the local
	// value: the base type with the column's typmod (so numeric(12,2) rounds as the
	// import did).
	cmp       string
	key       bool
	generated bool
	always    bool // identity GENERATED ALWAYS
}

// table is a followed local table.
type table struct {
	sender string // the sender's name for it
	local  catalog.Ident
	quoted string
	cols   []column
	index  map[string]int
	keys   []int
}

// row is a change's row by local column: has says which columns it carries.
type row struct {
	vals []*string
	has  []bool
}

// change is a wire.Change checked against the local tables.
type change struct {
	op     string
	t      *table
	old    row
	new    row // with Unchanged columns taken from old
	tables []*table
}

// Applier applies one follow's transactions. It is used by one goroutine at a time.
type Applier struct {
	pool     *pgxpool.Pool
	store    *Store
	id       string
	strategy importer.Strategy
	tables   map[string]*table
	pos      uint64 // stored position: the last transaction applied

	tx    pgx.Tx  // the open (partial) sender transaction, if any
	txPos uint64  // its position
	next  int     // the part it expects next
	cur   Applied // what it did so far
	// pieces joins a change that comes in pieces (across parts).
	pieces wire.ChangeJoiner
}

// NewApplier prepares the follow id's Applier: tables maps each followed table's
// sender name to the local table it is written to (each is resolved against the
// local catalog again and needs a primary key); strategy resolves conflicts (append
// is refused with ErrAppend). It starts from the position the store holds.
func NewApplier(ctx context.Context, pool *pgxpool.Pool, store *Store, id string, tables map[string]catalog.Ident, strategy importer.Strategy) (*Applier, error) {
	st, err := checkStrategy(strategy)
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", id, err)
	}
	if len(tables) == 0 {
		return nil, fmt.Errorf("follow %s: no tables", id)
	}
	pos, err := store.Position(ctx, id)
	if err != nil {
		return nil, err
	}
	a := &Applier{pool: pool, store: store, id: id, strategy: st, tables: map[string]*table{}, pos: pos}
	for name, local := range tables {
		t, err := prepare(ctx, pool, name, local)
		if err != nil {
			return nil, fmt.Errorf("follow %s: %w", id, err)
		}
		a.tables[name] = t
	}
	return a, nil
}

// prepare reads the local table's definition and its columns' types.
func prepare(ctx context.Context, pool *pgxpool.Pool, sender string, local catalog.Ident) (*table, error) {
	sch, err := catalog.GetSchemaIn(ctx, pool, local.Schema, local.Name)
	if err != nil {
		return nil, fmt.Errorf("table %q: %w", sender, err)
	}
	id := catalog.IdentOf(sch)
	if len(sch.PrimaryKey) == 0 {
		return nil, fmt.Errorf("table %s: %w: following matches rows by key", id, ErrNoPrimaryKey)
	}
	t := &table{sender: sender, local: id, quoted: id.Quoted(), index: map[string]int{}}
	types, err := columnTypes(ctx, pool, id)
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", id, err)
	}
	for _, c := range sch.Columns {
		ty, ok := types[c.Name]
		if !ok {
			return nil, fmt.Errorf("table %s: no type for column %q", id, c.Name)
		}
		t.index[c.Name] = len(t.cols)
		t.cols = append(t.cols, column{name: c.Name, quoted: pgx.Identifier{c.Name}.Sanitize(), cast: ty[0], cmp: ty[1],
			key: c.PrimaryKey, generated: c.Generated != "", always: c.Identity == "always"})
	}
	for _, k := range sch.PrimaryKey {
		t.keys = append(t.keys, t.index[k])
	}
	return t, nil
}

// columnTypes returns, per column, the type its text is written as (domains
// unwrapped, no typmod) and compared as (domains unwrapped, with the typmod of the
// column or its domain).
func columnTypes(ctx context.Context, q catalog.Querier, id catalog.Ident) (map[string][2]string, error) {
	rows, err := q.Query(ctx, `
WITH RECURSIVE d(attname, typ, mod) AS (
	SELECT a.attname, a.atttypid, a.atttypmod FROM pg_attribute a
	WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
	UNION ALL
	SELECT d.attname, t.typbasetype, CASE WHEN d.mod <> -1 THEN d.mod ELSE t.typtypmod END
	FROM d JOIN pg_type t ON t.oid = d.typ AND t.typtype = 'd'
)
SELECT d.attname, format_type(d.typ, -1), format_type(d.typ, d.mod) FROM d JOIN pg_type t ON t.oid = d.typ AND t.typtype <> 'd'`, id.Quoted())
	if err != nil {
		return nil, fmt.Errorf("column types: %w", err)
	}
	defer rows.Close()
	out := map[string][2]string{}
	for rows.Next() {
		var name, cast, cmp string
		if err := rows.Scan(&name, &cast, &cmp); err != nil {
			return nil, fmt.Errorf("column types: %w", err)
		}
		out[name] = [2]string{cast, cmp}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("column types: %w", err)
	}
	return out, nil
}

// Position returns the position of the last transaction applied (or, before any,
// the one the store held when the Applier was made).
func (a *Applier) Position() uint64 { return a.pos }

// Apply applies one part of a sender transaction. Parts come in order: part 0 opens
// a local transaction (a part 0 while another transaction is open abandons that one,
// rolled back: the sender began again), each part's changes are applied in it, and
// the Last part records the position and the counters in the follow's row and
// commits. A transaction whose position is not past the stored one is a replay: its
// parts are reported Skipped and not applied. A part that does not continue the open
// transaction, a malformed or refused change (checked before any of the part's
// statements run), or a failing statement rolls the whole sender transaction back:
// nothing of it stays, the position does not move, and the error names the table,
// op and key. For a part that is not the last, Applied counts the transaction so far.
func (a *Applier) Apply(ctx context.Context, part wire.Txn) (Applied, error) {
	pos, err := wire.ParseLSN(part.Position)
	if err != nil {
		a.rollback(ctx)
		return Applied{}, fmt.Errorf("follow %s: transaction %w", a.id, err)
	}
	if part.Part == 0 {
		a.rollback(ctx) // the sender began (again): nothing of before stays
	}
	if a.tx == nil {
		if pos <= a.pos {
			return Applied{Skipped: true, Position: pos}, nil
		}
		if part.Part != 0 {
			return Applied{Position: pos}, fmt.Errorf("follow %s: %w: part %d of transaction %s without its first part",
				a.id, ErrOutOfOrder, part.Part, part.Position)
		}
	} else if pos != a.txPos || part.Part != a.next {
		open, next := a.txPos, a.next
		a.rollback(ctx)
		return Applied{Position: pos}, fmt.Errorf("follow %s: %w: got part %d of %s, expected part %d of %s",
			a.id, ErrOutOfOrder, part.Part, part.Position, next, wire.FormatLSN(open))
	}
	whole, err := a.join(part)
	if err != nil {
		a.rollback(ctx)
		return Applied{Position: pos}, fmt.Errorf("follow %s: transaction %s: %w: %v", a.id, part.Position, ErrBadChange, err)
	}
	changes, err := a.check(whole)
	if err != nil {
		a.rollback(ctx)
		return Applied{Position: pos}, err
	}
	var commitAt *time.Time
	var senderPos uint64
	if part.Last {
		if part.CommitTime != "" {
			at, err := time.Parse(time.RFC3339Nano, part.CommitTime)
			if err != nil {
				a.rollback(ctx)
				return Applied{Position: pos}, fmt.Errorf("follow %s: transaction %s: %w: commit time %q", a.id, part.Position, ErrBadChange, part.CommitTime)
			}
			commitAt = &at
		}
		if part.SenderPosition != "" {
			if senderPos, err = wire.ParseLSN(part.SenderPosition); err != nil {
				a.rollback(ctx)
				return Applied{Position: pos}, fmt.Errorf("follow %s: transaction %s: sender %w", a.id, part.Position, err)
			}
		}
	}
	if a.tx == nil {
		if err := a.begin(ctx, pos); err != nil {
			return Applied{Position: pos}, err
		}
	}
	for _, c := range changes {
		if err := a.apply(ctx, c); err != nil {
			a.rollback(ctx)
			return Applied{Position: pos}, err
		}
		a.cur.Changes++
	}
	a.next++
	if !part.Last {
		return a.cur, nil
	}
	return a.commit(ctx, pos, commitAt, senderPos)
}

// begin opens the local transaction of the sender transaction at pos.
func (a *Applier) begin(ctx context.Context, pos uint64) error {
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("follow %s: begin transaction %s: %w", a.id, wire.FormatLSN(pos), err)
	}
	// One round trip (no arguments: the simple protocol, which takes both
	// statements). The sender checked its deferrable constraints at its commit: so
	// do we.
	if _, err := tx.Exec(ctx, catalog.TextSettings+"; SET CONSTRAINTS ALL DEFERRED"); err != nil {
		_ = tx.Rollback(ctx)
		return fmt.Errorf("follow %s: transaction %s: text settings: %w", a.id, wire.FormatLSN(pos), err)
	}
	a.tx, a.txPos, a.next, a.cur = tx, pos, 0, Applied{Position: pos}
	return nil
}

// commit records the transaction's position and counters in the follow's row and
// commits. A position the row already holds (another Applier got there first, or an
// earlier commit whose outcome was lost) makes it a replay: rolled back and Skipped.
func (a *Applier) commit(ctx context.Context, pos uint64, commitAt *time.Time, senderPos uint64) (Applied, error) {
	moved, err := record(ctx, a.tx, a.id, pos, commitAt, senderPos, a.cur)
	if err != nil {
		a.rollback(ctx)
		return Applied{Position: pos}, fmt.Errorf("follow %s: record position %s: %w", a.id, wire.FormatLSN(pos), err)
	}
	if !moved {
		var lsn string
		err := a.tx.QueryRow(ctx, `SELECT lsn::text FROM fiberkit_sync_follows WHERE id = $1`, a.id).Scan(&lsn)
		a.rollback(ctx)
		if errors.Is(err, pgx.ErrNoRows) {
			return Applied{Position: pos}, fmt.Errorf("follow %s: %w", a.id, ErrNotFound)
		}
		if err != nil {
			return Applied{Position: pos}, fmt.Errorf("follow %s: read position: %w", a.id, err)
		}
		stored, err := wire.ParseLSN(lsn)
		if err != nil {
			return Applied{Position: pos}, fmt.Errorf("follow %s: stored %w", a.id, err)
		}
		a.pos = max(a.pos, stored)
		return Applied{Skipped: true, Position: pos}, nil
	}
	err = a.tx.Commit(ctx)
	a.tx = nil
	if err != nil {
		return Applied{Position: pos}, fmt.Errorf("follow %s: commit transaction %s: %w", a.id, wire.FormatLSN(pos), err)
	}
	a.pos = pos
	res := a.cur
	res.Committed = true
	return res, nil
}

// join returns part's whole changes: a change in pieces is held until its last
// piece (which may come in a later part), and a transaction may not end inside one.
func (a *Applier) join(part wire.Txn) ([]wire.Change, error) {
	out := make([]wire.Change, 0, len(part.Changes))
	for _, c := range part.Changes {
		whole, done, err := a.pieces.Add(c)
		if err != nil {
			return nil, err
		}
		if done {
			out = append(out, whole)
		}
	}
	if part.Last && a.pieces.Pending() {
		return nil, errors.New("the transaction ends inside a change in pieces")
	}
	return out, nil
}

// rollback abandons the open transaction, if any, and a change in pieces.
func (a *Applier) rollback(ctx context.Context) {
	a.pieces.Reset()
	if a.tx == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = a.tx.Rollback(ctx)
	a.tx = nil
}

// Close rolls back an open (partial) transaction. The Applier may be used again
// afterwards: the next transaction starts afresh.
func (a *Applier) Close() { a.rollback(context.Background()) }

// check resolves a part's changes against the followed tables, before any runs.
func (a *Applier) check(in []wire.Change) ([]change, error) {
	out := make([]change, 0, len(in))
	for _, ch := range in {
		c, err := a.resolve(ch)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// resolve checks one change: its table is followed, its columns exist there, its
// op is known and it carries its key.
func (a *Applier) resolve(ch wire.Change) (change, error) {
	c := change{op: ch.Op}
	if ch.Op == wire.OpTruncate {
		if len(ch.Tables) == 0 {
			return c, fmt.Errorf("follow %s: apply truncate: %w: no tables", a.id, ErrBadChange)
		}
		for _, name := range ch.Tables {
			t, ok := a.tables[name]
			if !ok {
				return c, fmt.Errorf("follow %s: apply truncate on %q: %w", a.id, name, ErrUnknownTable)
			}
			c.tables = append(c.tables, t)
		}
		return c, nil
	}
	fail := func(t *table, r row, err error) error {
		return fmt.Errorf("follow %s: apply %s on %s (key %s): %w", a.id, ch.Op, t.local, t.keyString(r), err)
	}
	t, ok := a.tables[ch.Table]
	if !ok {
		if ch.Op != wire.OpInsert && ch.Op != wire.OpUpdate && ch.Op != wire.OpDelete {
			return c, fmt.Errorf("follow %s: apply %q: %w: unknown op", a.id, ch.Op, ErrBadChange)
		}
		return c, fmt.Errorf("follow %s: apply %s on %q: %w", a.id, ch.Op, ch.Table, ErrUnknownTable)
	}
	c.t = t
	var err error
	if c.old, err = t.row(ch.Old); err != nil {
		return c, fmt.Errorf("follow %s: apply %s on %s: old row: %w", a.id, ch.Op, t.local, err)
	}
	if c.new, err = t.row(ch.New); err != nil {
		return c, fmt.Errorf("follow %s: apply %s on %s: new row: %w", a.id, ch.Op, t.local, err)
	}
	for _, name := range ch.Unchanged {
		i, ok := t.index[name]
		if !ok {
			return c, fmt.Errorf("follow %s: apply %s on %s: unchanged: %w %q", a.id, ch.Op, t.local, ErrUnknownColumn, name)
		}
		if c.old.has[i] && !c.new.has[i] {
			c.new.vals[i], c.new.has[i] = c.old.vals[i], true
		}
	}
	switch ch.Op {
	case wire.OpInsert:
		if err := t.checkKey(c.new); err != nil {
			return c, fail(t, c.new, err)
		}
	case wire.OpUpdate:
		if err := t.checkKey(c.old); err != nil {
			return c, fail(t, c.old, fmt.Errorf("old row: %w", err))
		}
		if err := t.checkKey(c.new); err != nil {
			return c, fail(t, c.old, fmt.Errorf("new row: %w", err))
		}
	case wire.OpDelete:
		if err := t.checkKey(c.old); err != nil {
			return c, fail(t, c.old, err)
		}
	default:
		return c, fmt.Errorf("follow %s: apply %q on %s: %w: unknown op", a.id, ch.Op, t.local, ErrBadChange)
	}
	return c, nil
}

// row maps a change's values onto the table's columns, refusing unknown ones.
func (t *table) row(vals map[string]*string) (row, error) {
	r := row{vals: make([]*string, len(t.cols)), has: make([]bool, len(t.cols))}
	var unknown []string
	for name, v := range vals {
		i, ok := t.index[name]
		if !ok {
			unknown = append(unknown, strconv.Quote(name))
			continue
		}
		r.vals[i], r.has[i] = v, true
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return r, fmt.Errorf("%w %s (the local table lacks it)", ErrUnknownColumn, strings.Join(unknown, ", "))
	}
	return r, nil
}

// checkKey refuses a row that lacks a key column or has it NULL.
func (t *table) checkKey(r row) error {
	for _, k := range t.keys {
		if !r.has[k] || r.vals[k] == nil {
			return fmt.Errorf("%w: key column %q missing or NULL", ErrBadChange, t.cols[k].name)
		}
	}
	return nil
}

// keyString is r's key as "col=value, …" for messages.
func (t *table) keyString(r row) string {
	var b strings.Builder
	for i, k := range t.keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(t.cols[k].name + "=")
		switch {
		case !r.has[k]:
			b.WriteString("?")
		case r.vals[k] == nil:
			b.WriteString("NULL")
		default:
			b.WriteString(*r.vals[k])
		}
	}
	return b.String()
}

// apply applies one checked change in the open transaction.
func (a *Applier) apply(ctx context.Context, c change) error {
	var err error
	key := c.old
	switch c.op {
	case wire.OpTruncate:
		names := make([]string, 0, len(c.tables))
		seen := map[string]bool{}
		for _, t := range c.tables {
			if !seen[t.quoted] {
				seen[t.quoted] = true
				names = append(names, t.quoted)
			}
		}
		if _, err := a.tx.Exec(ctx, "TRUNCATE TABLE "+strings.Join(names, ", ")); err != nil {
			return fmt.Errorf("follow %s: apply truncate on %s: %w", a.id, strings.Join(names, ", "), err)
		}
		return nil
	case wire.OpInsert:
		key = c.new
		err = a.insert(ctx, c.t, c.new)
	case wire.OpUpdate:
		err = a.update(ctx, c.t, c.old, c.new)
	case wire.OpDelete:
		err = a.delete(ctx, c.t, c.old)
	}
	if err != nil {
		return fmt.Errorf("follow %s: apply %s on %s (key %s): %w", a.id, c.op, c.t.local, c.t.keyString(key), err)
	}
	return nil
}

// insert applies an insert of r (see the package doc for the strategies).
func (a *Applier) insert(ctx context.Context, t *table, r row) error {
	n, err := a.exec(ctx, t.insertSQL(r, true))
	if err != nil || n == 1 {
		a.cur.Created += int(n)
		return err
	}
	found, _, same, err := a.lookup(ctx, t, r, nil, &r)
	switch {
	case err != nil:
		return err
	case !found: // deleted since the INSERT looked
		_, err := a.exec(ctx, t.insertSQL(r, false))
		a.cur.Created++
		return err
	case same:
		return nil
	}
	a.cur.Conflicts++
	var set []int
	switch a.strategy {
	case importer.Overwrite:
		set = t.settable(r, nil)
	case importer.Merge:
		set = t.settable(r, func(i int) bool { return r.vals[i] != nil })
	}
	return a.updateCols(ctx, t, set, r, r)
}

// update applies an update from old to r (see the package doc for the strategies).
func (a *Applier) update(ctx context.Context, t *table, old, r row) error {
	for _, k := range t.keys {
		if !equal(old.vals[k], r.vals[k]) { // a key change: a delete and an insert
			if err := a.delete(ctx, t, old); err != nil {
				return err
			}
			return a.insert(ctx, t, r)
		}
	}
	set := t.settable(r, nil)
	n, err := a.exec(ctx, t.updateSQL(set, r, old, &old))
	if err != nil || n == 1 {
		a.cur.Updated += int(n)
		return err
	}
	found, eqOld, same, err := a.lookup(ctx, t, old, &old, &r)
	switch {
	case err != nil:
		return err
	case !found: // deleted here
		a.cur.Conflicts++
		if a.strategy != importer.Overwrite {
			return nil
		}
		_, err := a.exec(ctx, t.insertSQL(r, false))
		a.cur.Created++
		return err
	case same:
		return nil
	}
	edited := false
	for _, eq := range eqOld {
		edited = edited || !eq
	}
	if edited {
		a.cur.Conflicts++
		switch a.strategy {
		case importer.Skip:
			return nil
		case importer.Merge: // columns not edited here take New; edited ones stay
			set = t.settable(r, func(i int) bool {
				eq, compared := eqOld[i]
				return !compared || (eq && !equal(old.vals[i], r.vals[i]))
			})
		}
	}
	return a.updateCols(ctx, t, set, r, old)
}

// delete applies a delete of old (see the package doc for the strategies).
func (a *Applier) delete(ctx context.Context, t *table, old row) error {
	n, err := a.exec(ctx, t.deleteSQL(old, &old))
	if err != nil || n == 1 {
		a.cur.Deleted += int(n)
		return err
	}
	found, _, _, err := a.lookup(ctx, t, old, nil, nil)
	if err != nil || !found {
		return err
	}
	a.cur.Conflicts++
	if a.strategy != importer.Overwrite {
		return nil
	}
	n, err = a.exec(ctx, t.deleteSQL(old, nil))
	a.cur.Deleted += int(n)
	return err
}

// updateCols sets the columns set of the row with key's key to r's values; no
// columns writes nothing.
func (a *Applier) updateCols(ctx context.Context, t *table, set []int, r, key row) error {
	if len(set) == 0 {
		return nil
	}
	n, err := a.exec(ctx, t.updateSQL(set, r, key, nil))
	a.cur.Updated += int(n)
	return err
}

// lookup reads the local row with key's key, locking it: whether there is one, per
// column of old (when given) whether the local value equals old's, and whether the
// local row equals new (when given) in every column new carries. Key columns are
// not compared: the row was found by them.
func (a *Applier) lookup(ctx context.Context, t *table, key row, old, new *row) (found bool, eqOld map[int]bool, same bool, err error) {
	s := &stmt{}
	var cmpCols []int
	var flags []string
	if old != nil {
		for i, c := range t.cols {
			if old.has[i] && !c.generated && !c.key {
				cmpCols = append(cmpCols, i)
				flags = append(flags, s.equal(c, old.vals[i]))
			}
		}
	}
	sameExpr := "true"
	if new != nil {
		var eqs []string
		for i, c := range t.cols {
			if new.has[i] && !c.generated && !c.key {
				eqs = append(eqs, s.equal(c, new.vals[i]))
			}
		}
		if len(eqs) > 0 {
			sameExpr = strings.Join(eqs, " AND ")
		}
	}
	s.b.WriteString("SELECT ARRAY[" + strings.Join(flags, ", ") + "]::bool[], " + sameExpr + " FROM " + t.quoted + " AS t WHERE ")
	s.keyWhere(t, key)
	s.b.WriteString(" FOR UPDATE")
	var got []bool
	err = a.tx.QueryRow(ctx, s.b.String(), s.args...).Scan(&got, &same)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil, false, nil
	}
	if err != nil {
		return false, nil, false, fmt.Errorf("read local row: %w", err)
	}
	eqOld = make(map[int]bool, len(cmpCols))
	for j, i := range cmpCols {
		eqOld[i] = got[j]
	}
	return true, eqOld, same, nil
}

// exec runs s in the open transaction and returns the rows it affected.
func (a *Applier) exec(ctx context.Context, s *stmt) (int64, error) {
	tag, err := a.tx.Exec(ctx, s.b.String(), s.args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// equal reports whether two text values are the same (both NULL included).
func equal(x, y *string) bool {
	if x == nil || y == nil {
		return x == nil && y == nil
	}
	return *x == *y
}

// settable lists the columns r carries that an UPDATE may set (not key, generated or
// identity ALWAYS), those keep accepts when it is given.
func (t *table) settable(r row, keep func(i int) bool) []int {
	var out []int
	for i, c := range t.cols {
		if r.has[i] && !c.key && !c.generated && !c.always && (keep == nil || keep(i)) {
			out = append(out, i)
		}
	}
	return out
}

// stmt is a statement being built: its SQL and its bind parameters.
type stmt struct {
	b    strings.Builder
	args []any
}

// param binds v and returns its placeholder.
func (s *stmt) param(v *string) string {
	s.args = append(s.args, v)
	return "$" + strconv.Itoa(len(s.args))
}

// value is v converted from text to c's type, for writing.
func (s *stmt) value(c column, v *string) string {
	return s.param(v) + "::text::" + c.cast
}

// equal is whether the local value of c equals v, compared as text.
func (s *stmt) equal(c column, v *string) string {
	return "t." + c.quoted + "::text IS NOT DISTINCT FROM " + s.param(v) + "::text::" + c.cmp + "::text"
}

// keyWhere writes the match of r's key.
func (s *stmt) keyWhere(t *table, r row) {
	for j, k := range t.keys {
		if j > 0 {
			s.b.WriteString(" AND ")
		}
		c := t.cols[k]
		s.b.WriteString("t." + c.quoted + " = " + s.param(r.vals[k]) + "::text::" + c.cmp)
	}
}

// matchOld writes " AND" the local row equals old in every column old carries.
func (s *stmt) matchOld(t *table, old row) {
	for i, c := range t.cols {
		if old.has[i] && !c.generated && !c.key {
			s.b.WriteString(" AND " + s.equal(c, old.vals[i]))
		}
	}
}

// insertSQL inserts r (the columns it carries); with ifAbsent, a row with its key
// already there makes it insert nothing.
func (t *table) insertSQL(r row, ifAbsent bool) *stmt {
	s := &stmt{}
	var names, vals []string
	override := false
	for i, c := range t.cols {
		if r.has[i] && !c.generated {
			names = append(names, c.quoted)
			vals = append(vals, s.value(c, r.vals[i]))
			override = override || c.always
		}
	}
	s.b.WriteString("INSERT INTO " + t.quoted + " (" + strings.Join(names, ", ") + ")")
	if override {
		s.b.WriteString(" OVERRIDING SYSTEM VALUE")
	}
	s.b.WriteString(" VALUES (" + strings.Join(vals, ", ") + ")")
	if ifAbsent {
		keys := make([]string, len(t.keys))
		for j, k := range t.keys {
			keys[j] = t.cols[k].quoted
		}
		s.b.WriteString(" ON CONFLICT (" + strings.Join(keys, ", ") + ") DO NOTHING")
	}
	return s
}

// updateSQL sets the columns set to r's values in the row with key's key, and only
// when it equals old (if given). With no column to set (a table of key columns
// only), it sets the first key column to itself, which still says whether the row
// matched.
func (t *table) updateSQL(set []int, r, key row, old *row) *stmt {
	s := &stmt{}
	s.b.WriteString("UPDATE " + t.quoted + " AS t SET ")
	if len(set) == 0 {
		k := t.cols[t.keys[0]].quoted
		s.b.WriteString(k + " = t." + k)
	}
	for j, i := range set {
		if j > 0 {
			s.b.WriteString(", ")
		}
		s.b.WriteString(t.cols[i].quoted + " = " + s.value(t.cols[i], r.vals[i]))
	}
	s.b.WriteString(" WHERE ")
	s.keyWhere(t, key)
	if old != nil {
		s.matchOld(t, *old)
	}
	return s
}

// deleteSQL deletes the row with key's key, and only when it equals old (if given).
func (t *table) deleteSQL(key row, old *row) *stmt {
	s := &stmt{}
	s.b.WriteString("DELETE FROM " + t.quoted + " AS t WHERE ")
	s.keyWhere(t, key)
	if old != nil {
		s.matchOld(t, *old)
	}
	return s
}
