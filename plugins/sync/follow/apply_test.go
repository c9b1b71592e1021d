package follow_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/follow"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// snapshot is the position the tests' follows start from (the first copy's).
const snapshot = 0x100

// v is a text value; null is NULL.
func v(s string) *string { return &s }

var null *string

// vals is a row of a change: column → text value.
type vals = map[string]*string

// open returns a store on pool.
func open(t *testing.T, pool *pgxpool.Pool) *follow.Store {
	t.Helper()
	s, err := follow.Open(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// begin records the follow id of tables (sender name = local name, in public) with
// strategy, its first copy done at snapshot, and returns its Applier.
func begin(t *testing.T, pool *pgxpool.Pool, store *follow.Store, id string, strategy importer.Strategy, tables ...string) *follow.Applier {
	t.Helper()
	ctx := context.Background()
	if err := store.Start(ctx, follow.Follow{ID: id, Peer: "https://a.example", Tables: tables, Strategy: strategy}); err != nil {
		t.Fatal(err)
	}
	if err := store.Following(ctx, id, snapshot); err != nil {
		t.Fatal(err)
	}
	return applier(t, pool, store, id, strategy, tables...)
}

// applier makes the follow id's Applier of tables (in public).
func applier(t *testing.T, pool *pgxpool.Pool, store *follow.Store, id string, strategy importer.Strategy, tables ...string) *follow.Applier {
	t.Helper()
	m := map[string]catalog.Ident{}
	for _, name := range tables {
		m[name] = catalog.Ident{Schema: "public", Name: name}
	}
	a, err := follow.NewApplier(context.Background(), pool, store, id, m, strategy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// txn is a whole sender transaction at pos.
func txn(pos uint64, changes ...wire.Change) wire.Txn {
	return wire.Txn{Position: wire.FormatLSN(pos), XID: uint32(pos), CommitTime: time.Now().UTC().Format(time.RFC3339Nano),
		Part: 0, Last: true, Changes: changes}
}

func ins(table string, row vals) wire.Change {
	return wire.Change{Op: wire.OpInsert, Table: table, New: row}
}

func upd(table string, old, row vals) wire.Change {
	return wire.Change{Op: wire.OpUpdate, Table: table, Old: old, New: row}
}

func del(table string, old vals) wire.Change {
	return wire.Change{Op: wire.OpDelete, Table: table, Old: old}
}

// apply applies part and fails the test on an error.
func apply(t *testing.T, a *follow.Applier, part wire.Txn) follow.Applied {
	t.Helper()
	res, err := a.Apply(context.Background(), part)
	if err != nil {
		t.Fatalf("apply %s part %d: %v", part.Position, part.Part, err)
	}
	return res
}

// rows returns the rows of query, each as its record's text (under
// catalog.TextSettings), in the query's order.
func rows(t *testing.T, pool *pgxpool.Pool, query string) []string {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, catalog.TextSettings); err != nil {
		t.Fatal(err)
	}
	r, err := tx.Query(ctx, "SELECT x::text FROM ("+query+") x")
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	out, err := pgx.CollectRows(r, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	if out == nil {
		out = []string{}
	}
	return out
}

// checkRows fails unless query returns want.
func checkRows(t *testing.T, pool *pgxpool.Pool, query string, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if got := rows(t, pool, query); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %q\nwant %q", query, got, want)
	}
}

// counts is what an Applied counted.
type counts struct{ changes, conflicts, created, updated, deleted int }

func countsOf(a follow.Applied) counts {
	return counts{a.Changes, a.Conflicts, a.Created, a.Updated, a.Deleted}
}

// Every strategy × op × local situation, with the exact rows left and counts.
func TestStrategies(t *testing.T) {
	pool := pgtest.NewPool(t)
	store := open(t, pool)
	orig := vals{"id": v("1"), "a": v("a0"), "b": v("b0"), "n": v("0")}
	type want struct {
		rows   []string
		counts counts
	}
	cases := []struct {
		name  string
		local string // SQL run on table {t} after its row (1,a0,b0,0) is there
		ch    func(table string) wire.Change
		want  map[importer.Strategy]want
	}{
		{
			name: "insert/no conflict",
			ch:   func(tb string) wire.Change { return ins(tb, vals{"id": v("2"), "a": v("new"), "b": null, "n": v("5")}) },
			want: map[importer.Strategy]want{
				importer.Skip:      {[]string{"(1,a0,b0,0)", "(2,new,,5)"}, counts{1, 0, 1, 0, 0}},
				importer.Overwrite: {[]string{"(1,a0,b0,0)", "(2,new,,5)"}, counts{1, 0, 1, 0, 0}},
				importer.Merge:     {[]string{"(1,a0,b0,0)", "(2,new,,5)"}, counts{1, 0, 1, 0, 0}},
			},
		},
		{
			name:  "insert/local insert",
			local: `INSERT INTO {t} VALUES (2, 'loc', 'locb', NULL)`,
			ch:    func(tb string) wire.Change { return ins(tb, vals{"id": v("2"), "a": v("new"), "b": null, "n": v("5")}) },
			want: map[importer.Strategy]want{
				importer.Skip:      {[]string{"(1,a0,b0,0)", "(2,loc,locb,)"}, counts{1, 1, 0, 0, 0}},
				importer.Overwrite: {[]string{"(1,a0,b0,0)", "(2,new,,5)"}, counts{1, 1, 0, 1, 0}},
				// The importer's merge: New's non-NULL values win, NULLs keep the local value.
				importer.Merge: {[]string{"(1,a0,b0,0)", "(2,new,locb,5)"}, counts{1, 1, 0, 1, 0}},
			},
		},
		{
			name:  "insert/local row equal to new",
			local: `INSERT INTO {t} VALUES (2, 'new', NULL, 5)`,
			ch:    func(tb string) wire.Change { return ins(tb, vals{"id": v("2"), "a": v("new"), "b": null, "n": v("5")}) },
			want: map[importer.Strategy]want{
				importer.Skip:      {[]string{"(1,a0,b0,0)", "(2,new,,5)"}, counts{1, 0, 0, 0, 0}},
				importer.Overwrite: {[]string{"(1,a0,b0,0)", "(2,new,,5)"}, counts{1, 0, 0, 0, 0}},
				importer.Merge:     {[]string{"(1,a0,b0,0)", "(2,new,,5)"}, counts{1, 0, 0, 0, 0}},
			},
		},
		{
			name: "update/no conflict",
			ch: func(tb string) wire.Change {
				return upd(tb, orig, vals{"id": v("1"), "a": v("a1"), "b": v("b0"), "n": v("1")})
			},
			want: map[importer.Strategy]want{
				importer.Skip:      {[]string{"(1,a1,b0,1)"}, counts{1, 0, 0, 1, 0}},
				importer.Overwrite: {[]string{"(1,a1,b0,1)"}, counts{1, 0, 0, 1, 0}},
				importer.Merge:     {[]string{"(1,a1,b0,1)"}, counts{1, 0, 0, 1, 0}},
			},
		},
		{
			// Local edits of a (which the sender changes too) and b (which it does not):
			// merge keeps both local values and takes n, which only the sender changed.
			name:  "update/local edit",
			local: `UPDATE {t} SET a = 'LOCAL', b = 'LB'`,
			ch: func(tb string) wire.Change {
				return upd(tb, orig, vals{"id": v("1"), "a": v("a1"), "b": v("b0"), "n": v("1")})
			},
			want: map[importer.Strategy]want{
				importer.Skip:      {[]string{"(1,LOCAL,LB,0)"}, counts{1, 1, 0, 0, 0}},
				importer.Overwrite: {[]string{"(1,a1,b0,1)"}, counts{1, 1, 0, 1, 0}},
				importer.Merge:     {[]string{"(1,LOCAL,LB,1)"}, counts{1, 1, 0, 1, 0}},
			},
		},
		{
			// Only the column the sender changes was edited here: merge has nothing to take.
			name:  "update/local edit of the same column",
			local: `UPDATE {t} SET a = 'LOCAL'`,
			ch: func(tb string) wire.Change {
				return upd(tb, orig, vals{"id": v("1"), "a": v("a1"), "b": v("b0"), "n": v("0")})
			},
			want: map[importer.Strategy]want{
				importer.Skip:      {[]string{"(1,LOCAL,b0,0)"}, counts{1, 1, 0, 0, 0}},
				importer.Overwrite: {[]string{"(1,a1,b0,0)"}, counts{1, 1, 0, 1, 0}},
				importer.Merge:     {[]string{"(1,LOCAL,b0,0)"}, counts{1, 1, 0, 0, 0}},
			},
		},
		{
			name:  "update/local edit to a NULL",
			local: `UPDATE {t} SET b = NULL`,
			ch: func(tb string) wire.Change {
				return upd(tb, orig, vals{"id": v("1"), "a": v("a1"), "b": v("b1"), "n": v("0")})
			},
			want: map[importer.Strategy]want{
				importer.Skip:      {[]string{"(1,a0,,0)"}, counts{1, 1, 0, 0, 0}},
				importer.Overwrite: {[]string{"(1,a1,b1,0)"}, counts{1, 1, 0, 1, 0}},
				importer.Merge:     {[]string{"(1,a1,,0)"}, counts{1, 1, 0, 1, 0}},
			},
		},
		{
			name:  "update/local row already equal to new",
			local: `UPDATE {t} SET a = 'a1', n = 1`,
			ch: func(tb string) wire.Change {
				return upd(tb, orig, vals{"id": v("1"), "a": v("a1"), "b": v("b0"), "n": v("1")})
			},
			want: map[importer.Strategy]want{
				importer.Skip:      {[]string{"(1,a1,b0,1)"}, counts{1, 0, 0, 0, 0}},
				importer.Overwrite: {[]string{"(1,a1,b0,1)"}, counts{1, 0, 0, 0, 0}},
				importer.Merge:     {[]string{"(1,a1,b0,1)"}, counts{1, 0, 0, 0, 0}},
			},
		},
		{
			name:  "update/local delete",
			local: `DELETE FROM {t}`,
			ch: func(tb string) wire.Change {
				return upd(tb, orig, vals{"id": v("1"), "a": v("a1"), "b": v("b0"), "n": v("1")})
			},
			want: map[importer.Strategy]want{
				importer.Skip:      {nil, counts{1, 1, 0, 0, 0}},
				importer.Overwrite: {[]string{"(1,a1,b0,1)"}, counts{1, 1, 1, 0, 0}},
				importer.Merge:     {nil, counts{1, 1, 0, 0, 0}},
			},
		},
		{
			name: "update key/no conflict",
			ch: func(tb string) wire.Change {
				return upd(tb, orig, vals{"id": v("10"), "a": v("a0"), "b": v("b0"), "n": v("0")})
			},
			want: map[importer.Strategy]want{
				importer.Skip:      {[]string{"(10,a0,b0,0)"}, counts{1, 0, 1, 0, 1}},
				importer.Overwrite: {[]string{"(10,a0,b0,0)"}, counts{1, 0, 1, 0, 1}},
				importer.Merge:     {[]string{"(10,a0,b0,0)"}, counts{1, 0, 1, 0, 1}},
			},
		},
		{
			name:  "update key/local edit",
			local: `UPDATE {t} SET a = 'LOCAL'`,
			ch: func(tb string) wire.Change {
				return upd(tb, orig, vals{"id": v("10"), "a": v("a0"), "b": v("b0"), "n": v("0")})
			},
			want: map[importer.Strategy]want{
				importer.Skip:      {[]string{"(1,LOCAL,b0,0)", "(10,a0,b0,0)"}, counts{1, 1, 1, 0, 0}},
				importer.Overwrite: {[]string{"(10,a0,b0,0)"}, counts{1, 1, 1, 0, 1}},
				importer.Merge:     {[]string{"(1,LOCAL,b0,0)", "(10,a0,b0,0)"}, counts{1, 1, 1, 0, 0}},
			},
		},
		{
			name:  "update key/local delete",
			local: `DELETE FROM {t}`,
			ch: func(tb string) wire.Change {
				return upd(tb, orig, vals{"id": v("10"), "a": v("a0"), "b": v("b0"), "n": v("0")})
			},
			want: map[importer.Strategy]want{
				importer.Skip:      {[]string{"(10,a0,b0,0)"}, counts{1, 0, 1, 0, 0}},
				importer.Overwrite: {[]string{"(10,a0,b0,0)"}, counts{1, 0, 1, 0, 0}},
				importer.Merge:     {[]string{"(10,a0,b0,0)"}, counts{1, 0, 1, 0, 0}},
			},
		},
		{
			name:  "update key/local insert at the new key",
			local: `INSERT INTO {t} VALUES (10, 'loc', NULL, NULL)`,
			ch: func(tb string) wire.Change {
				return upd(tb, orig, vals{"id": v("10"), "a": v("a0"), "b": v("b0"), "n": v("0")})
			},
			want: map[importer.Strategy]want{
				importer.Skip:      {[]string{"(10,loc,,)"}, counts{1, 1, 0, 0, 1}},
				importer.Overwrite: {[]string{"(10,a0,b0,0)"}, counts{1, 1, 0, 1, 1}},
				importer.Merge:     {[]string{"(10,a0,b0,0)"}, counts{1, 1, 0, 1, 1}},
			},
		},
		{
			name: "delete/no conflict",
			ch:   func(tb string) wire.Change { return del(tb, orig) },
			want: map[importer.Strategy]want{
				importer.Skip:      {nil, counts{1, 0, 0, 0, 1}},
				importer.Overwrite: {nil, counts{1, 0, 0, 0, 1}},
				importer.Merge:     {nil, counts{1, 0, 0, 0, 1}},
			},
		},
		{
			name:  "delete/local edit",
			local: `UPDATE {t} SET n = 7`,
			ch:    func(tb string) wire.Change { return del(tb, orig) },
			want: map[importer.Strategy]want{
				importer.Skip:      {[]string{"(1,a0,b0,7)"}, counts{1, 1, 0, 0, 0}},
				importer.Overwrite: {nil, counts{1, 1, 0, 0, 1}},
				importer.Merge:     {[]string{"(1,a0,b0,7)"}, counts{1, 1, 0, 0, 0}},
			},
		},
		{
			name:  "delete/local delete",
			local: `DELETE FROM {t}`,
			ch:    func(tb string) wire.Change { return del(tb, orig) },
			want: map[importer.Strategy]want{
				importer.Skip:      {nil, counts{1, 0, 0, 0, 0}},
				importer.Overwrite: {nil, counts{1, 0, 0, 0, 0}},
				importer.Merge:     {nil, counts{1, 0, 0, 0, 0}},
			},
		},
	}
	n := 0
	for _, c := range cases {
		for _, st := range []importer.Strategy{importer.Skip, importer.Overwrite, importer.Merge} {
			t.Run(c.name+"/"+string(st), func(t *testing.T) {
				n++
				tb := fmt.Sprintf("t%d", n)
				testsupport.Exec(t, pool, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, a text, b text, n int);
					INSERT INTO %[1]s VALUES (1, 'a0', 'b0', 0)`, tb))
				if c.local != "" {
					testsupport.Exec(t, pool, strings.ReplaceAll(c.local, "{t}", tb))
				}
				a := begin(t, pool, store, tb, st, tb)
				res := apply(t, a, txn(snapshot+1, c.ch(tb)))
				w := c.want[st]
				checkRows(t, pool, "SELECT * FROM "+tb+" ORDER BY id", w.rows...)
				if got := countsOf(res); got != w.counts || !res.Committed || res.Skipped {
					t.Fatalf("applied %+v, want counts %+v committed", res, w.counts)
				}
				status, err := store.Get(context.Background(), tb)
				if err != nil {
					t.Fatal(err)
				}
				if status.Position != wire.FormatLSN(snapshot+1) || status.Transactions != 1 || status.Changes != 1 ||
					status.Conflicts != int64(w.counts.conflicts) {
					t.Fatalf("status %+v", status)
				}
			})
		}
	}
}

// Three-way merge, column by column, over several columns and NULLs: each column
// edited here keeps its local value, each other one takes the sender's.
func TestThreeWayMergePerColumn(t *testing.T) {
	pool := pgtest.NewPool(t)
	store := open(t, pool)
	testsupport.Exec(t, pool, `CREATE TABLE m (k1 int, k2 text, c1 text, c2 int, c3 jsonb, c4 numeric(12,2), c5 text, PRIMARY KEY (k1, k2));
		INSERT INTO m VALUES (1, 'x', 'one', 2, '{"a": 1}', 1.50, NULL);
		UPDATE m SET c1 = 'local one', c5 = 'local five'`)
	a := begin(t, pool, store, "m", importer.Merge, "m")
	old := vals{"k1": v("1"), "k2": v("x"), "c1": v("one"), "c2": v("2"), "c3": v(`{"a": 1}`), "c4": v("1.50"), "c5": null}
	// The sender changes c1 (edited here: kept), c2 and c3 (not edited here: taken),
	// c5 (edited here: kept); c4 unchanged.
	res := apply(t, a, txn(snapshot+1, upd("m", old, vals{"k1": v("1"), "k2": v("x"), "c1": v("sender one"), "c2": v("3"),
		"c3": v(`{"a": 2}`), "c4": v("1.50"), "c5": v("sender five")})))
	checkRows(t, pool, "SELECT * FROM m", `(1,x,"local one",3,"{""a"": 2}",1.50,"local five")`)
	if got := countsOf(res); got != (counts{1, 1, 0, 1, 0}) {
		t.Fatalf("applied %+v", res)
	}
	// The sender's Old spelled differently but equal through the local types (jsonb
	// spacing, numeric scale) is no local edit.
	old = vals{"k1": v("1"), "k2": v("x"), "c1": v("local one"), "c2": v("3"), "c3": v(`{"a":2}`), "c4": v("1.5"), "c5": v("local five")}
	res = apply(t, a, txn(snapshot+2, upd("m", old, vals{"k1": v("1"), "k2": v("x"), "c1": v("local one"), "c2": v("4"),
		"c3": v(`{"a":2}`), "c4": v("1.5"), "c5": v("local five")})))
	checkRows(t, pool, "SELECT * FROM m", `(1,x,"local one",4,"{""a"": 2}",1.50,"local five")`)
	if got := countsOf(res); got != (counts{1, 0, 0, 1, 0}) {
		t.Fatalf("applied %+v", res)
	}
}

// Every common type goes through insert, update and delete exactly: the values as
// PostgreSQL prints them under catalog.TextSettings come back byte for byte, and an
// Old row carrying them matches the local row (no false conflict).
func TestTypesRoundTrip(t *testing.T) {
	pool := pgtest.NewPool(t)
	store := open(t, pool)
	testsupport.Exec(t, pool, `CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'it''s "odd"');
		CREATE DOMAIN short AS varchar(5);
		CREATE TABLE ty (id int PRIMARY KEY, i2 int2, i4 int4, i8 int8, num numeric, num2 numeric(12,2), f4 float4, f8 float8,
			tx text, vc varchar(10), ch char(3), sh short, by bytea, bo bool, d date, ts timestamp, tstz timestamptz, iv interval,
			u uuid, js json, jb jsonb, ia int[], ta text[], m mood, ma mood[], tm time, bits bit(4), inet inet)`)
	cols := []string{"id", "i2", "i4", "i8", "num", "num2", "f4", "f8", "tx", "vc", "ch", "sh", "by", "bo", "d", "ts", "tstz", "iv",
		"u", "js", "jb", "ia", "ta", "m", "ma", "tm", "bits", "inet"}
	rowsIn := [][]*string{
		{v("1"), v("-32768"), v("2147483647"), v("-9223372036854775808"), v("12345678901234567890.123456789012"), v("-0.05"),
			v("3.1415927"), v("0.1"), v("unicode ☃ é 𝄞, back\\slash, new\nline, tab\t, quote ' \" and \\N"), v("ten chars!"),
			v("ab "), v("short"), v(`\x00ff5c0a`), v("t"), v("2024-02-29"), v("2024-01-01 10:00:00.123456"),
			v("1999-12-31 23:59:59.999999+00"), v("1 year 2 mons 3 days 04:05:06.789"), v("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
			v(`{"b": 1,  "a": [1, 2.50]}`), v(`{"a": [1, 2.50], "b": {"c": null}}`), v("{1,NULL,-3}"), v(`{"a b","c\"d",NULL,"","\\"}`),
			v(`it's "odd"`), v(`{sad,happy,"it's \"odd\""}`), v("23:59:59.5"), v("1010"), v("192.168.0.1/24")},
		{v("2"), v("0"), v("0"), v("0"), v("NaN"), v("0.00"), v("-Infinity"), v("NaN"), v(""), v(""), v("   "), v(""), v(`\x`),
			v("f"), v("infinity"), v("-infinity"), v("infinity"), v("-00:00:00.000001"), v("00000000-0000-0000-0000-000000000000"),
			v("[]"), v("{}"), v("{}"), v("{}"), v("sad"), v("{}"), v("00:00:00"), v("0000"), v("::1")},
		{v("3"), v("1"), v("1"), v("1"), v("-0.000000000001"), v("9999999999.99"), v("-0"), v("1.7976931348623157e+308"),
			v("x"), v("x"), v("x  "), v("x"), v(`\xdeadbeef`), v("t"), v("0001-01-01 BC"), v("2000-02-29 00:00:00"),
			v("2024-06-01 12:00:00+00"), v("-1 days +02:00:00"), v("ffffffff-ffff-ffff-ffff-ffffffffffff"), v("null"), v(`"s"`),
			v("{{1,2},{3,4}}"), v(`{"{}",NULL}`), v("happy"), v("{NULL}"), v("12:00:00"), v("1111"), v("fe80::1")},
		{v("4"), null, null, null, null, null, v("Infinity"), v("-0"), null, null, null, null, null, null, null, null, null, null,
			null, null, null, null, null, null, null, null, null, null},
	}
	a := begin(t, pool, store, "ty", importer.Skip, "ty")
	row := func(r []*string) vals {
		out := vals{}
		for i, c := range cols {
			out[c] = r[i]
		}
		return out
	}
	var changes []wire.Change
	for _, r := range rowsIn {
		changes = append(changes, ins("ty", row(r)))
	}
	if res := apply(t, a, txn(snapshot+1, changes...)); res.Created != len(rowsIn) || res.Conflicts != 0 {
		t.Fatalf("inserted %+v", res)
	}
	read := func() [][]*string {
		t.Helper()
		ctx := context.Background()
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if _, err := tx.Exec(ctx, catalog.TextSettings); err != nil {
			t.Fatal(err)
		}
		sel := make([]string, len(cols))
		for i, c := range cols {
			// concat prints each value with its type's output function, as COPY does
			// (a cast to text would cut char(n)'s padding).
			q := pgx.Identifier{c}.Sanitize()
			sel[i] = "CASE WHEN " + q + " IS NULL THEN NULL ELSE concat(" + q + ") END"
		}
		r, err := tx.Query(ctx, "SELECT "+strings.Join(sel, ", ")+" FROM ty ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		var out [][]*string
		for r.Next() {
			vs := make([]*string, len(cols))
			dest := make([]any, len(cols))
			for i := range vs {
				dest[i] = &vs[i]
			}
			if err := r.Scan(dest...); err != nil {
				t.Fatal(err)
			}
			out = append(out, vs)
		}
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	got := read()
	if len(got) != len(rowsIn) {
		t.Fatalf("%d rows, want %d", len(got), len(rowsIn))
	}
	for i := range rowsIn {
		for j, c := range cols {
			if !equalText(got[i][j], rowsIn[i][j]) {
				t.Errorf("row %d column %s: got %s, want %s", i, c, show(got[i][j]), show(rowsIn[i][j]))
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	// Updates with these rows as Old match the local rows: each row takes the next
	// row's values (a rotation), under skip, with no conflict.
	changes = nil
	for i, r := range rowsIn {
		next := append([]*string{r[0]}, rowsIn[(i+1)%len(rowsIn)][1:]...)
		changes = append(changes, upd("ty", row(r), row(next)))
	}
	if res := apply(t, a, txn(snapshot+2, changes...)); res.Updated != len(rowsIn) || res.Conflicts != 0 {
		t.Fatalf("updated %+v", res)
	}
	got = read()
	for i := range rowsIn {
		for j, c := range cols[1:] {
			if want := rowsIn[(i+1)%len(rowsIn)][j+1]; !equalText(got[i][j+1], want) {
				t.Errorf("after update: row %d column %s: got %s, want %s", i, c, show(got[i][j+1]), show(want))
			}
		}
	}
	// And deletes with the rotated rows as Old delete them all, again without conflict.
	changes = nil
	for i, r := range rowsIn {
		changes = append(changes, del("ty", row(append([]*string{r[0]}, rowsIn[(i+1)%len(rowsIn)][1:]...))))
	}
	if res := apply(t, a, txn(snapshot+3, changes...)); res.Deleted != len(rowsIn) || res.Conflicts != 0 {
		t.Fatalf("deleted %+v", res)
	}
	checkRows(t, pool, "SELECT * FROM ty")
}

func equalText(x, y *string) bool {
	if x == nil || y == nil {
		return x == nil && y == nil
	}
	return *x == *y
}

func show(s *string) string {
	if s == nil {
		return "NULL"
	}
	return fmt.Sprintf("%q", *s)
}

// Columns an update leaves out of New as unchanged TOASTed values keep their value
// (taken from Old): when updating, when comparing, and when overwrite inserts the
// row again.
func TestUnchangedToastColumns(t *testing.T) {
	pool := pgtest.NewPool(t)
	store := open(t, pool)
	big := strings.Repeat("big value ", 10000)
	testsupport.Exec(t, pool, `CREATE TABLE doc (id int PRIMARY KEY, title text, body text, note text);
		CREATE TABLE doc2 (id int PRIMARY KEY, title text, body text, note text)`)
	testsupport.Exec(t, pool, `INSERT INTO doc VALUES (1, 't0', $1, 'n0'), (2, 't0', $1, 'n0')`, big)
	testsupport.Exec(t, pool, `INSERT INTO doc2 VALUES (1, 't0', $1, 'n0')`, big)
	toast := func(tb, id string, title string) wire.Change {
		o := vals{"id": v(id), "title": v("t0"), "body": v(big), "note": v("n0")}
		c := upd(tb, o, vals{"id": v(id), "title": v(title), "note": v("n0")})
		c.Unchanged = []string{"body"}
		return c
	}
	// Merge with a local edit of note: title taken, body kept, note kept.
	testsupport.Exec(t, pool, `UPDATE doc SET note = 'local' WHERE id = 2`)
	a := begin(t, pool, store, "doc", importer.Merge, "doc")
	res := apply(t, a, txn(snapshot+1, toast("doc", "1", "t1"), toast("doc", "2", "t2")))
	if got := countsOf(res); got != (counts{2, 1, 0, 2, 0}) {
		t.Fatalf("applied %+v", res)
	}
	checkRows(t, pool, "SELECT id, title, body = $$"+big+"$$, note FROM doc ORDER BY id", "(1,t1,t,n0)", "(2,t2,t,local)")
	// Overwrite, the row deleted here: inserted again with the body from Old.
	testsupport.Exec(t, pool, `DELETE FROM doc2`)
	a = begin(t, pool, store, "doc2", importer.Overwrite, "doc2")
	res = apply(t, a, txn(snapshot+1, toast("doc2", "1", "t1")))
	if got := countsOf(res); got != (counts{1, 1, 1, 0, 0}) {
		t.Fatalf("applied %+v", res)
	}
	checkRows(t, pool, "SELECT id, title, body = $$"+big+"$$, note FROM doc2", "(1,t1,t,n0)")
}

// A transaction in several parts is one local transaction: nothing is visible or
// recorded before its last part, which commits it once.
func TestMultiPartTransactionCommitsOnce(t *testing.T) {
	pool := pgtest.NewPool(t)
	store := open(t, pool)
	testsupport.Exec(t, pool, `CREATE TABLE p (id int PRIMARY KEY, v text)`)
	a := begin(t, pool, store, "p", importer.Skip, "p")
	ctx := context.Background()
	pos := uint64(snapshot + 0x10)
	part := func(n int, last bool, ids ...int) wire.Txn {
		tx := txn(pos)
		tx.Part, tx.Last, tx.Changes = n, last, nil
		for _, id := range ids {
			tx.Changes = append(tx.Changes, ins("p", vals{"id": v(fmt.Sprint(id)), "v": v("x")}))
		}
		return tx
	}
	for n, ids := range [][]int{{1, 2}, {3}} {
		res := apply(t, a, part(n, false, ids...))
		if res.Committed || res.Skipped || res.Position != pos {
			t.Fatalf("part %d: %+v", n, res)
		}
		checkRows(t, pool, "SELECT * FROM p")
		if p, err := store.Position(ctx, "p"); err != nil || p != snapshot {
			t.Fatalf("position after part %d: %x, %v", n, p, err)
		}
	}
	res := apply(t, a, part(2, true, 4, 5))
	if !res.Committed || res.Created != 5 || res.Changes != 5 {
		t.Fatalf("last part: %+v", res)
	}
	checkRows(t, pool, "SELECT id FROM p ORDER BY id", "(1)", "(2)", "(3)", "(4)", "(5)")
	st, err := store.Get(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if st.Transactions != 1 || st.Changes != 5 || st.Position != wire.FormatLSN(pos) || a.Position() != pos {
		t.Fatalf("status %+v, applier at %x", st, a.Position())
	}
	// A part that does not continue the open transaction rolls it back.
	pos += 0x10
	apply(t, a, part(0, false, 6))
	if _, err := a.Apply(ctx, part(2, true, 7)); !errors.Is(err, follow.ErrOutOfOrder) {
		t.Fatalf("skipped part: %v", err)
	}
	if _, err := a.Apply(ctx, part(1, true, 7)); !errors.Is(err, follow.ErrOutOfOrder) {
		t.Fatalf("part without its first: %v", err)
	}
	// The sender beginning the transaction again (part 0 while it is open) starts afresh.
	apply(t, a, part(0, false, 6))
	apply(t, a, part(0, false, 6))
	if res := apply(t, a, part(1, true, 7)); !res.Committed || res.Created != 2 {
		t.Fatalf("restarted transaction: %+v", res)
	}
	checkRows(t, pool, "SELECT id FROM p ORDER BY id", "(1)", "(2)", "(3)", "(4)", "(5)", "(6)", "(7)")
}

// A change larger than a part comes in pieces spread over parts (as the sender
// cuts it, wire.SplitChange): it is joined and applied whole, with its neighbours,
// as one change; a transaction that ends inside a change's pieces leaves nothing.
func TestChangeInPiecesAcrossParts(t *testing.T) {
	pool := pgtest.NewPool(t)
	store := open(t, pool)
	testsupport.Exec(t, pool, `CREATE TABLE big (id int PRIMARY KEY, doc text, b bytea, j jsonb); INSERT INTO big VALUES (1, 'old', '\x00', '{}')`)
	a := begin(t, pool, store, "big", importer.Overwrite, "big")
	ctx := context.Background()
	doc := strings.Repeat("ünïcødé <&> \"quoted\"\n", 150_000) // 3.6 MB
	hexed := `\x` + strings.Repeat("00ff7f", 500_000)          // 1.5 MB of bytea
	j := `{"k": "` + strings.Repeat("€", 400_000) + `"}`
	old := vals{"id": v("1"), "doc": v("old"), "b": v(`\x00`), "j": v("{}")}
	change := upd("big", old, vals{"id": v("1"), "doc": v(doc), "b": v(hexed), "j": v(j)})
	pieces := wire.SplitChange(change, wire.FollowPieceBytes)
	if len(pieces) < 10 {
		t.Fatalf("%d pieces", len(pieces))
	}
	// Parts of three pieces each, a small insert before and after the big change.
	all := append(append([]wire.Change{ins("big", vals{"id": v("2"), "doc": v("two"), "b": null, "j": null})}, pieces...),
		ins("big", vals{"id": v("3"), "doc": v("three"), "b": null, "j": null}))
	parts := func(pos uint64, changes []wire.Change, lastPart bool) []wire.Txn {
		var out []wire.Txn
		for i := 0; i < len(changes); i += 3 {
			tx := txn(pos)
			tx.Part, tx.Changes, tx.Last = len(out), changes[i:min(i+3, len(changes))], false
			out = append(out, tx)
		}
		out[len(out)-1].Last = lastPart
		return out
	}
	// Cut short: the last part ends inside the big change.
	cut := parts(snapshot+1, all[:len(all)-3], true)
	for _, p := range cut[:len(cut)-1] {
		apply(t, a, p)
	}
	if _, err := a.Apply(ctx, cut[len(cut)-1]); !errors.Is(err, follow.ErrBadChange) {
		t.Fatalf("a transaction ending inside a change: %v", err)
	}
	checkRows(t, pool, "SELECT id, doc FROM big ORDER BY id", "(1,old)")

	var res follow.Applied
	for _, p := range parts(snapshot+2, all, true) {
		res = apply(t, a, p)
	}
	if !res.Committed || res.Changes != 3 || res.Created != 2 || res.Updated != 1 || res.Conflicts != 0 {
		t.Fatalf("applied %+v", res)
	}
	var gotDoc, gotB, gotJ string
	if err := pool.QueryRow(ctx, `SELECT doc, b::text, j::text FROM big WHERE id = 1`).Scan(&gotDoc, &gotB, &gotJ); err != nil {
		t.Fatal(err)
	}
	var wantJ string
	if err := pool.QueryRow(ctx, `SELECT $1::jsonb::text`, j).Scan(&wantJ); err != nil {
		t.Fatal(err)
	}
	if gotDoc != doc || gotB != hexed || gotJ != wantJ {
		t.Fatalf("the big row came out different: doc %d/%d bytes, bytea %d/%d, jsonb %d/%d",
			len(gotDoc), len(doc), len(gotB), len(hexed), len(gotJ), len(wantJ))
	}
	checkRows(t, pool, "SELECT id, doc FROM big WHERE id > 1 ORDER BY id", "(2,two)", "(3,three)")
}

// A failing change (the 3rd) rolls back the whole sender transaction: the table and
// the position stay as they were, and the error names the table, op and key.
func TestFailureRollsBackTheTransaction(t *testing.T) {
	pool := pgtest.NewPool(t)
	store := open(t, pool)
	testsupport.Exec(t, pool, `CREATE TABLE f (id int PRIMARY KEY, n int NOT NULL, s varchar(3)); INSERT INTO f VALUES (1, 1, 'a')`)
	a := begin(t, pool, store, "f", importer.Overwrite, "f")
	ctx := context.Background()
	good := []wire.Change{
		ins("f", vals{"id": v("2"), "n": v("2"), "s": v("b")}),
		upd("f", vals{"id": v("1"), "n": v("1"), "s": v("a")}, vals{"id": v("1"), "n": v("10"), "s": v("a")}),
	}
	for _, bad := range []wire.Change{
		ins("f", vals{"id": v("3"), "n": v("not a number"), "s": v("c")}),
		ins("f", vals{"id": v("3"), "n": null, "s": v("c")}),
		ins("f", vals{"id": v("3"), "n": v("3"), "s": v("too long")}),
	} {
		_, err := a.Apply(ctx, txn(snapshot+1, append(append([]wire.Change{}, good...), bad)...))
		if err == nil || !strings.Contains(err.Error(), "apply insert on f (key id=3)") {
			t.Fatalf("error %v, want it to name the table, op and key", err)
		}
		checkRows(t, pool, "SELECT * FROM f ORDER BY id", "(1,1,a)")
		if p, err := store.Position(ctx, "f"); err != nil || p != snapshot || a.Position() != snapshot {
			t.Fatalf("position %x (%v), applier %x", p, err, a.Position())
		}
	}
	// The transaction sent again, fixed, applies.
	res := apply(t, a, txn(snapshot+1, append(good, ins("f", vals{"id": v("3"), "n": v("3"), "s": v("c")}))...))
	if !res.Committed || res.Changes != 3 {
		t.Fatalf("applied %+v", res)
	}
	checkRows(t, pool, "SELECT * FROM f ORDER BY id", "(1,10,a)", "(2,2,b)", "(3,3,c)")
}

// A transaction at or before the stored position is a replay: all its parts are
// reported Skipped and change nothing; a new Applier after a restart goes on from
// the stored position, and a partial transaction a crash cut off is applied whole
// when sent again.
func TestReplayAndRestart(t *testing.T) {
	pool := pgtest.NewPool(t)
	store := open(t, pool)
	ctx := context.Background()
	testsupport.Exec(t, pool, `CREATE TABLE r (id int PRIMARY KEY, v text); INSERT INTO r VALUES (1, 'a')`)
	a := begin(t, pool, store, "r", importer.Overwrite, "r")
	t1 := txn(0x200, upd("r", vals{"id": v("1"), "v": v("a")}, vals{"id": v("1"), "v": v("b")}))
	apply(t, a, t1)
	testsupport.Exec(t, pool, `UPDATE r SET v = 'local'`)
	for _, part := range []wire.Txn{t1, txn(0x1ff, ins("r", vals{"id": v("9"), "v": v("x")})), txn(snapshot, del("r", vals{"id": v("1"), "v": v("local")}))} {
		res := apply(t, a, part)
		if !res.Skipped || res.Committed || res.Changes != 0 {
			t.Fatalf("replay of %s: %+v", part.Position, res)
		}
	}
	// Every part of a replayed multi-part transaction is skipped.
	p0, p1 := t1, t1
	p0.Last, p1.Part = false, 1
	for _, part := range []wire.Txn{p0, p1} {
		if res := apply(t, a, part); !res.Skipped {
			t.Fatalf("replay of part %d: %+v", part.Part, res)
		}
	}
	checkRows(t, pool, "SELECT * FROM r", "(1,local)")
	if st, err := store.Get(ctx, "r"); err != nil || st.Transactions != 1 || st.Position != "0/200" {
		t.Fatalf("status %+v, %v", st, err)
	}

	// A crash in the middle of a transaction: its first part applied, then the
	// process gone (Close stands for the connection dying).
	t2 := txn(0x300, ins("r", vals{"id": v("2"), "v": v("x")}))
	t2.Last = false
	apply(t, a, t2)
	a.Close()
	checkRows(t, pool, "SELECT id FROM r ORDER BY id", "(1)")

	// A new Applier on the same store continues from 0/200.
	b := applier(t, pool, store, "r", importer.Overwrite, "r")
	if b.Position() != 0x200 {
		t.Fatalf("restarted at %x", b.Position())
	}
	if res := apply(t, b, t1); !res.Skipped {
		t.Fatalf("replay after restart: %+v", res)
	}
	t2b := t2
	t2b.Part, t2b.Last, t2b.Changes = 1, true, []wire.Change{ins("r", vals{"id": v("3"), "v": v("y")})}
	apply(t, b, t2)
	if res := apply(t, b, t2b); !res.Committed || res.Created != 2 {
		t.Fatalf("transaction after restart: %+v", res)
	}
	checkRows(t, pool, "SELECT * FROM r ORDER BY id", "(1,local)", "(2,x)", "(3,y)")

	// Two Appliers of one follow: the one behind finds the position taken when it
	// records it, rolls back and reports Skipped.
	c := applier(t, pool, store, "r", importer.Overwrite, "r")
	t3 := txn(0x400, ins("r", vals{"id": v("4"), "v": v("z")}))
	apply(t, b, t3)
	t3.Changes = []wire.Change{ins("r", vals{"id": v("5"), "v": v("never")})}
	if res := apply(t, c, t3); !res.Skipped || c.Position() != 0x400 {
		t.Fatalf("stale applier: %+v at %x", res, c.Position())
	}
	checkRows(t, pool, "SELECT id FROM r ORDER BY id", "(1)", "(2)", "(3)", "(4)")
	if st, err := store.Get(ctx, "r"); err != nil || st.Transactions != 3 || st.Position != "0/400" {
		t.Fatalf("status %+v, %v", st, err)
	}
}

// counter counts the statements a pool sends.
type counter struct{ n atomic.Int64 }

func (c *counter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (c *counter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// Unknown tables, unknown columns, hostile names and malformed changes are refused
// before any statement runs, even after good changes of the same part.
func TestRefusedWithoutRunningAnything(t *testing.T) {
	base := pgtest.NewPool(t)
	store := open(t, base)
	testsupport.Exec(t, base, `CREATE TABLE h (id int PRIMARY KEY, v text); INSERT INTO h VALUES (1, 'a');
		CREATE TABLE other (id int PRIMARY KEY)`)
	cfg, err := pgxpool.ParseConfig(base.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	var c counter
	cfg.ConnConfig.Tracer = &c
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	a := begin(t, pool, store, "h", importer.Overwrite, "h")
	const hostile = `h"; DROP TABLE h; --`
	good := ins("h", vals{"id": v("2"), "v": v("b")})
	for _, tc := range []struct {
		ch   wire.Change
		want error
	}{
		{ins("other", vals{"id": v("1")}), follow.ErrUnknownTable},
		{ins(hostile, vals{"id": v("1")}), follow.ErrUnknownTable},
		{ins("public.h", vals{"id": v("1")}), follow.ErrUnknownTable},
		{wire.Change{Op: wire.OpTruncate, Tables: []string{"h", hostile}}, follow.ErrUnknownTable},
		{wire.Change{Op: wire.OpTruncate}, follow.ErrBadChange},
		{ins("h", vals{"id": v("1"), hostile: v("x")}), follow.ErrUnknownColumn},
		{upd("h", vals{"id": v("1"), "v": v("a"), "nope": null}, vals{"id": v("1"), "v": v("b")}), follow.ErrUnknownColumn},
		{wire.Change{Op: wire.OpUpdate, Table: "h", Old: vals{"id": v("1"), "v": v("a")}, New: vals{"id": v("1")}, Unchanged: []string{hostile}}, follow.ErrUnknownColumn},
		{ins("h", vals{"v": v("x")}), follow.ErrBadChange},
		{ins("h", vals{"id": null, "v": v("x")}), follow.ErrBadChange},
		{del("h", vals{"v": v("a")}), follow.ErrBadChange},
		{wire.Change{Op: "drop", Table: "h"}, follow.ErrBadChange},
		{wire.Change{Op: "drop", Table: hostile}, follow.ErrBadChange},
	} {
		before := c.n.Load()
		_, err := a.Apply(context.Background(), txn(snapshot+1, good, tc.ch))
		if !errors.Is(err, tc.want) {
			t.Fatalf("%+v: %v, want %v", tc.ch, err, tc.want)
		}
		if n := c.n.Load() - before; n != 0 {
			t.Fatalf("%+v: %d statements ran", tc.ch, n)
		}
	}
	checkRows(t, base, "SELECT * FROM h", "(1,a)")
	checkRows(t, base, "SELECT count(*) FROM other", "(0)")

	// NewApplier refuses append, a table without a key, and kit or unknown tables.
	testsupport.Exec(t, base, `CREATE TABLE nokey (v text)`)
	ctx := context.Background()
	for _, tc := range []struct {
		tables   map[string]catalog.Ident
		strategy importer.Strategy
		want     error
	}{
		{map[string]catalog.Ident{"h": {Schema: "public", Name: "h"}}, importer.Append, follow.ErrAppend},
		{map[string]catalog.Ident{"h": {Schema: "public", Name: "h"}}, "bogus", importer.ErrBadStrategy},
		{map[string]catalog.Ident{"nokey": {Schema: "public", Name: "nokey"}}, importer.Skip, follow.ErrNoPrimaryKey},
		{map[string]catalog.Ident{"x": {Schema: "public", Name: "fiberkit_sync_follows"}}, importer.Skip, catalog.ErrUnknownTable},
		{map[string]catalog.Ident{"x": {Schema: "public", Name: hostile}}, importer.Skip, catalog.ErrUnknownTable},
	} {
		if _, err := follow.NewApplier(ctx, base, store, "h", tc.tables, tc.strategy); !errors.Is(err, tc.want) {
			t.Fatalf("%v %s: %v, want %v", tc.tables, tc.strategy, err, tc.want)
		}
	}
	if _, err := follow.NewApplier(ctx, base, store, "nobody", map[string]catalog.Ident{"h": {Schema: "public", Name: "h"}}, importer.Skip); !errors.Is(err, follow.ErrNotFound) {
		t.Fatalf("unknown follow: %v", err)
	}
}

// A truncate empties the named local tables, local rows included, whatever the
// strategy; other statements of the transaction go with it.
func TestTruncate(t *testing.T) {
	pool := pgtest.NewPool(t)
	store := open(t, pool)
	testsupport.Exec(t, pool, `CREATE TABLE t1 (id int PRIMARY KEY); CREATE TABLE t2 (id int PRIMARY KEY, t1 int REFERENCES t1);
		CREATE TABLE t3 (id int PRIMARY KEY);
		INSERT INTO t1 VALUES (1), (2); INSERT INTO t2 VALUES (1, 1), (2, NULL); INSERT INTO t3 VALUES (1)`)
	a := begin(t, pool, store, "tr", importer.Skip, "t1", "t2", "t3")
	res := apply(t, a, txn(snapshot+1, wire.Change{Op: wire.OpTruncate, Tables: []string{"t2", "t1"}},
		ins("t1", vals{"id": v("5")})))
	if !res.Committed || res.Changes != 2 || res.Created != 1 {
		t.Fatalf("applied %+v", res)
	}
	checkRows(t, pool, "SELECT id FROM t1", "(5)")
	checkRows(t, pool, "SELECT id FROM t2")
	checkRows(t, pool, "SELECT id FROM t3", "(1)")
	// Not cascaded: truncating a table another one references fails, and rolls back.
	testsupport.Exec(t, pool, `INSERT INTO t2 VALUES (3, 5)`)
	_, err := a.Apply(context.Background(), txn(snapshot+2, ins("t3", vals{"id": v("2")}), wire.Change{Op: wire.OpTruncate, Tables: []string{"t1"}}))
	if err == nil || !strings.Contains(err.Error(), "truncate") {
		t.Fatalf("truncate of a referenced table: %v", err)
	}
	checkRows(t, pool, "SELECT id FROM t3", "(1)")
	checkRows(t, pool, "SELECT id FROM t1", "(5)")
}

// Identity ALWAYS columns are inserted with the sender's value and never updated;
// generated columns are neither written nor compared; a local table in another
// schema is written under its name there.
func TestIdentityGeneratedAndSchema(t *testing.T) {
	pool := pgtest.NewPool(t)
	store := open(t, pool)
	testsupport.Exec(t, pool, `CREATE SCHEMA "App Data";
		CREATE TABLE "App Data"."Items ""x""" (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "Mixed Case" text,
			n int, twice int GENERATED ALWAYS AS (n * 2) STORED, seq int GENERATED ALWAYS AS IDENTITY)`)
	ctx := context.Background()
	if err := store.Start(ctx, follow.Follow{ID: "s", Peer: "p", Tables: []string{"items"}, Schema: "App Data", Strategy: importer.Overwrite}); err != nil {
		t.Fatal(err)
	}
	if err := store.Following(ctx, "s", snapshot); err != nil {
		t.Fatal(err)
	}
	a, err := follow.NewApplier(ctx, pool, store, "s", map[string]catalog.Ident{"items": {Schema: "App Data", Name: `Items "x"`}}, importer.Overwrite)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	row := vals{"id": v("7"), "Mixed Case": v("m"), "n": v("2"), "twice": v("4"), "seq": v("70")}
	apply(t, a, txn(snapshot+1, ins("items", row)))
	res := apply(t, a, txn(snapshot+2, upd("items", row, vals{"id": v("7"), "Mixed Case": v("m2"), "n": v("3"), "twice": v("6"), "seq": v("71")})))
	if res.Updated != 1 || res.Conflicts != 0 {
		t.Fatalf("applied %+v", res)
	}
	checkRows(t, pool, `SELECT * FROM "App Data"."Items ""x"""`, "(7,m2,3,6,70)")
}

// BenchmarkApply applies transactions of 10 updates each (the common case: no
// conflict, one statement per change); b.N counts changes.
func BenchmarkApply(b *testing.B) {
	pool := pgtest.NewPool(b)
	store, err := follow.Open(context.Background(), pool)
	if err != nil {
		b.Fatal(err)
	}
	testsupport.Exec(b, pool, `CREATE TABLE bench (id int PRIMARY KEY, name text, qty int, price numeric(12,2), at timestamptz);
		INSERT INTO bench SELECT i, 'name ' || i, 0, 1.50, '2024-01-01 00:00:00+00' FROM generate_series(1, 1000) i`)
	ctx := context.Background()
	if err := store.Start(ctx, follow.Follow{ID: "b", Peer: "p", Tables: []string{"bench"}, Strategy: importer.Merge}); err != nil {
		b.Fatal(err)
	}
	if err := store.Following(ctx, "b", snapshot); err != nil {
		b.Fatal(err)
	}
	a, err := follow.NewApplier(ctx, pool, store, "b", map[string]catalog.Ident{"bench": {Schema: "public", Name: "bench"}}, importer.Merge)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	qty := make([]int, 1001)
	row := func(id int) vals {
		return vals{"id": v(fmt.Sprint(id)), "name": v(fmt.Sprint("name ", id)), "qty": v(fmt.Sprint(qty[id])), "price": v("1.50"),
			"at": v("2024-01-01 00:00:00+00")}
	}
	b.ResetTimer()
	pos := uint64(snapshot)
	for i := 0; i < b.N; {
		pos++
		var changes []wire.Change
		for j := 0; j < 10 && i < b.N; j, i = j+1, i+1 {
			id := i%1000 + 1
			old := row(id)
			qty[id]++
			changes = append(changes, upd("bench", old, row(id)))
		}
		if _, err := a.Apply(ctx, txn(pos, changes...)); err != nil {
			b.Fatal(err)
		}
	}
}

// Deferrable constraints are checked at the commit, as the sender checked them: a
// child arriving before its parent in one transaction applies. A malformed commit
// time or sender position refuses the transaction before anything runs.
func TestDeferredConstraintsAndMalformedParts(t *testing.T) {
	pool := pgtest.NewPool(t)
	store := open(t, pool)
	testsupport.Exec(t, pool, `CREATE TABLE parent (id int PRIMARY KEY);
		CREATE TABLE child (id int PRIMARY KEY, parent int REFERENCES parent DEFERRABLE INITIALLY IMMEDIATE)`)
	a := begin(t, pool, store, "d", importer.Skip, "parent", "child")
	res := apply(t, a, txn(snapshot+1, ins("child", vals{"id": v("1"), "parent": v("7")}), ins("parent", vals{"id": v("7")})))
	if !res.Committed || res.Created != 2 {
		t.Fatalf("applied %+v", res)
	}
	ctx := context.Background()
	_, err := a.Apply(ctx, txn(snapshot+2, ins("child", vals{"id": v("2"), "parent": v("8")})))
	if err == nil || !strings.Contains(err.Error(), "child_parent_fkey") {
		t.Fatalf("missing parent at commit: %v", err)
	}
	bad := txn(snapshot+2, ins("parent", vals{"id": v("8")}))
	bad.CommitTime = "yesterday"
	if _, err := a.Apply(ctx, bad); !errors.Is(err, follow.ErrBadChange) {
		t.Fatalf("bad commit time: %v", err)
	}
	bad = txn(snapshot+2, ins("parent", vals{"id": v("8")}))
	bad.SenderPosition = "nowhere"
	if _, err := a.Apply(ctx, bad); err == nil {
		t.Fatal("bad sender position applied")
	}
	if _, err := a.Apply(ctx, wire.Txn{Position: "0/1; DROP", Last: true}); err == nil {
		t.Fatal("bad position applied")
	}
	checkRows(t, pool, "SELECT id FROM parent", "(7)")
	checkRows(t, pool, "SELECT id FROM child", "(1)")
	if p, _ := store.Position(ctx, "d"); p != snapshot+1 {
		t.Fatalf("position %x", p)
	}
}
