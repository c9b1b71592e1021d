package writer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/plugins/sync/live"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/plugins/sync/writer"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The caller travels in the context, as Handler's caller function puts it there.
type userKey struct{}

func asUser(id int) context.Context { return context.WithValue(context.Background(), userKey{}, id) }

func userOf(ctx context.Context) int { id, _ := ctx.Value(userKey{}).(int); return id }

var errNotYours = errors.New("not your todo")

// ownRows lets a user write only todos they own, and never give one away.
var ownRows = writer.Rules{
	Check: func(ctx context.Context, m *writer.Mutation) error {
		if m.Type == writer.Insert && !writer.Equal(m.Modified["owner"], userOf(ctx)) {
			return errNotYours
		}
		return nil
	},
	Validate: func(ctx context.Context, m *writer.Mutation, current writer.Row) error {
		if current != nil && !writer.Equal(current["owner"], userOf(ctx)) {
			return errNotYours
		}
		if m.Type == writer.Update {
			for _, vals := range []map[string]any{m.Changes, m.Modified} {
				if v, ok := vals["owner"]; ok && !writer.Equal(v, userOf(ctx)) {
					return fmt.Errorf("the owner cannot change: %w", errNotYours)
				}
			}
		}
		return nil
	},
}

const todosDDL = `CREATE TABLE todos (id bigint PRIMARY KEY, owner int NOT NULL, title text NOT NULL, done bool NOT NULL DEFAULT false)`

func setup(t *testing.T) (*pgxpool.Pool, *writer.Writer) {
	t.Helper()
	pool := pgtest.NewPool(t)
	exec(t, pool, todosDDL)
	return pool, writer.New(pool).Allow("todos", ownRows)
}

func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// parse reads mutations as a client sends them.
func parse(t *testing.T, body string) []writer.Mutation {
	t.Helper()
	ms, err := writer.Parse([]byte(body))
	if err != nil {
		t.Fatalf("parse %s: %v", body, err)
	}
	return ms
}

// todos is the table's content: "id:owner:title:done" sorted by id.
func todos(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var s string
	if err := pool.QueryRow(context.Background(),
		`SELECT coalesce(string_agg(id || ':' || owner || ':' || title || ':' || done, ' ' ORDER BY id), '') FROM todos`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// refused asserts err is a *MutationError of mutation index in class.
func refused(t *testing.T, err error, index int, class error) *writer.MutationError {
	t.Helper()
	var me *writer.MutationError
	if !errors.As(err, &me) {
		t.Fatalf("error %v (%T), want a *MutationError", err, err)
	}
	if me.Index != index || !errors.Is(err, class) {
		t.Fatalf("error %v: index %d, want mutation %d refused as %v", err, me.Index, index, class)
	}
	for _, other := range []error{writer.ErrForbidden, writer.ErrInvalid, writer.ErrConflict} {
		if other != class && errors.Is(err, other) {
			t.Fatalf("error %v is %v as well as %v", err, other, class)
		}
	}
	return me
}

func TestAllOrNothing(t *testing.T) {
	ctx := asUser(1)
	pool, w := setup(t)
	exec(t, pool, `INSERT INTO todos VALUES (10, 1, 'mine', false), (20, 2, 'theirs', false)`)
	before := todos(t, pool)

	cases := []struct {
		name, third string
		class       error
	}{
		{"check refuses", `{"type":"insert","modified":{"id":3,"owner":2,"title":"c"}}`, writer.ErrForbidden},
		{"validate refuses", `{"type":"update","original":{"id":20},"changes":{"title":"x"}}`, writer.ErrForbidden},
		{"the owner cannot change", `{"type":"update","original":{"id":10,"owner":1},"modified":{"id":10,"owner":2}}`, writer.ErrForbidden},
		{"a missing row", `{"type":"delete","original":{"id":99}}`, writer.ErrNotFound},
		{"a duplicate key", `{"type":"insert","modified":{"id":1,"owner":1,"title":"again"}}`, writer.ErrConflict},
		{"a NOT NULL column", `{"type":"insert","modified":{"id":3,"owner":1,"title":null}}`, writer.ErrInvalid},
		{"a bad value", `{"type":"insert","modified":{"id":"three","owner":1,"title":"c"}}`, writer.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := `[{"type":"insert","modified":{"id":1,"owner":1,"title":"a"},"syncMetadata":{"relation":["public","todos"]}},
				{"type":"update","original":{"id":10,"owner":1,"title":"mine"},"modified":{"id":10,"owner":1,"title":"edited"},"changes":{"title":"edited"},"syncMetadata":{"relation":["public","todos"]}},
				` + strings.Replace(c.third, `{"type"`, `{"relation":"todos","type"`, 1) + `]`
			_, err := w.Apply(ctx, parse(t, body))
			class := c.class
			if errors.Is(class, writer.ErrConflict) {
				class = writer.ErrConflict
			}
			me := refused(t, err, 2, class)
			if c.class == writer.ErrNotFound && !errors.Is(err, writer.ErrNotFound) {
				t.Fatalf("error %v, want ErrNotFound", err)
			}
			if me.Table != "public.todos" {
				t.Fatalf("error names table %q", me.Table)
			}
			if got := todos(t, pool); got != before {
				t.Fatalf("after a refused batch the table is %q, was %q", got, before)
			}
		})
	}

	// The same first two mutations on their own are applied.
	if _, err := w.Apply(ctx, parse(t, `[{"type":"insert","modified":{"id":1,"owner":1,"title":"a"},"relation":"todos"},
		{"type":"update","original":{"id":10,"owner":1,"title":"mine"},"modified":{"id":10,"owner":1,"title":"edited"},"relation":"todos"}]`)); err != nil {
		t.Fatal(err)
	}
	if got, want := todos(t, pool), "1:1:a:false 10:1:edited:false 20:2:theirs:false"; got != want {
		t.Fatalf("table %q, want %q", got, want)
	}
}

func TestUsersWriteOnlyTheirOwnRows(t *testing.T) {
	pool, w := setup(t)
	exec(t, pool, `INSERT INTO todos VALUES (10, 1, 'one', false), (20, 2, 'two', false)`)
	before := todos(t, pool)
	one := asUser(1)

	for _, c := range []struct {
		name, body string
		key        string
	}{
		{"insert for another", `[{"type":"insert","modified":{"id":30,"owner":2,"title":"x"},"relation":"todos"}]`, `{"id":30}`},
		{"insert without owner", `[{"type":"insert","modified":{"id":30,"title":"x"},"relation":"todos"}]`, `{"id":30}`},
		{"update another's", `[{"type":"update","original":{"id":20,"owner":1},"changes":{"title":"mine now"},"relation":"todos"}]`, `{"id":20}`},
		{"delete another's", `[{"type":"delete","original":{"id":20,"owner":1},"relation":"todos"}]`, `{"id":20}`},
		{"give one away", `[{"type":"update","original":{"id":10},"changes":{"owner":2},"relation":"todos"}]`, `{"id":10}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := w.Apply(one, parse(t, c.body))
			me := refused(t, err, 0, writer.ErrForbidden)
			if !errors.Is(err, errNotYours) {
				t.Fatalf("error %v does not carry the rule's error", err)
			}
			if k, _ := json.Marshal(me.Key); string(k) != c.key {
				t.Fatalf("error names key %s, want %s", k, c.key)
			}
			if !strings.Contains(err.Error(), "mutation 0") || !strings.Contains(err.Error(), c.key) {
				t.Fatalf("message %q names neither the mutation nor its key", err)
			}
			if got := todos(t, pool); got != before {
				t.Fatalf("table %q, was %q", got, before)
			}
		})
	}

	// Their own rows they may write.
	if _, err := w.Apply(one, parse(t, `[{"type":"insert","modified":{"id":30,"owner":1,"title":"new"},"relation":"todos"},
		{"type":"update","original":{"id":10,"owner":1},"changes":{"done":true},"relation":"todos"},
		{"type":"delete","original":{"id":30},"relation":"todos"}]`)); err != nil {
		t.Fatal(err)
	}
	if got, want := todos(t, pool), "10:1:one:true 20:2:two:false"; got != want {
		t.Fatalf("table %q, want %q", got, want)
	}
}

func TestTablesAndColumnsAreChecked(t *testing.T) {
	pool, w := setup(t)
	exec(t, pool, `CREATE TABLE secrets (id int PRIMARY KEY, v text); CREATE TABLE fiberkit_kit (id int PRIMARY KEY);
		CREATE TABLE nokey (v text); CREATE SCHEMA app; CREATE TABLE app.notes (id int PRIMARY KEY, body text)`)
	w.Allow("ghost", writer.Rules{}).Allow("fiberkit_kit", writer.Rules{}).Allow("nokey", writer.Rules{}).
		Allow("app.notes", writer.Rules{Accept: []string{writer.Insert}})
	ctx := asUser(1)
	for _, c := range []struct {
		name, body string
		class      error
	}{
		{"a table not allowed", `[{"type":"insert","modified":{"id":1},"relation":"secrets"}]`, writer.ErrForbidden},
		{"the same table in another schema", `[{"type":"insert","modified":{"id":1},"syncMetadata":{"relation":["app","todos"]}}]`, writer.ErrForbidden},
		{"an allowed table that does not exist", `[{"type":"insert","modified":{"id":1},"relation":"ghost"}]`, writer.ErrInvalid},
		{"a kit table", `[{"type":"insert","modified":{"id":1},"relation":"fiberkit_kit"}]`, writer.ErrInvalid},
		{"an unknown column", `[{"type":"insert","modified":{"id":1,"owner":1,"title":"t","colour":"red"},"relation":"todos"}]`, writer.ErrInvalid},
		{"an unknown column in changes", `[{"type":"update","original":{"id":1},"changes":{"colour":"red"},"relation":"todos"}]`, writer.ErrInvalid},
		{"an update without the key", `[{"type":"update","original":{"title":"t"},"changes":{"title":"u"},"relation":"todos"}]`, writer.ErrInvalid},
		{"an update of a table without a key", `[{"type":"update","original":{"v":"a"},"changes":{"v":"b"},"relation":"nokey"}]`, writer.ErrInvalid},
		{"a type not accepted", `[{"type":"delete","original":{"id":1},"relation":["app","notes"]}]`, writer.ErrForbidden},
		{"an object for an int", `[{"type":"insert","modified":{"id":{"a":1},"owner":1,"title":"t"},"relation":"todos"}]`, writer.ErrInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := w.Apply(ctx, parse(t, c.body))
			refused(t, err, 0, c.class)
		})
	}
	// Tables in other schemas, and inserts into a table without a key, work.
	if _, err := w.Apply(ctx, parse(t, `[{"type":"insert","modified":{"id":1,"body":"b"},"relation":["app","notes"]},
		{"type":"insert","modified":{"v":"x"},"relation":"public.nokey"}]`)); err != nil {
		t.Fatal(err)
	}
	// A mutation Apply is given directly is checked the same way.
	_, err := w.Apply(ctx, []writer.Mutation{{Type: "upsert", Table: "todos"}})
	refused(t, err, 0, writer.ErrInvalid)
	if _, err := w.Apply(ctx, nil); !errors.Is(err, writer.ErrInvalid) {
		t.Fatalf("no mutations: %v", err)
	}
}

// counter counts the statements a pool sends.
type counter struct{ n atomic.Int64 }

func (c *counter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (c *counter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func TestHostileIdentifiersExecuteNothing(t *testing.T) {
	base := pgtest.NewPool(t)
	exec(t, base, `CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)`)
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
	const hostile = `x"; DROP TABLE t; --`
	w := writer.New(pool).Allow("t", writer.Rules{})
	ctx := context.Background()

	// A table not allowed: refused before the database hears of it.
	body, _ := json.Marshal([]map[string]any{{"type": "insert", "modified": map[string]any{"id": 2}, "relation": []string{"public", hostile}}})
	_, err = w.Apply(ctx, parse(t, string(body)))
	refused(t, err, 0, writer.ErrForbidden)
	if n := c.n.Load(); n != 0 {
		t.Fatalf("%d statements ran for a table not allowed", n)
	}

	// Allowed but not a table, and a hostile column of an allowed table: refused
	// as invalid, only catalog reads run.
	w.Allow(hostile, writer.Rules{})
	_, err = w.Apply(ctx, parse(t, string(body)))
	refused(t, err, 0, writer.ErrInvalid)
	if c.n.Load() == 0 {
		t.Fatal("the tracer counts nothing")
	}
	body, _ = json.Marshal([]map[string]any{{"type": "insert", "modified": map[string]any{"id": 2, hostile: 1}, "relation": "t"}})
	_, err = w.Apply(ctx, parse(t, string(body)))
	refused(t, err, 0, writer.ErrInvalid)
	var n int
	if err := base.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("table t: %d rows, %v", n, err)
	}

	// A table that really has that name is written, quoted.
	exec(t, base, `CREATE TABLE "x""; DROP TABLE t; --" (id int PRIMARY KEY, "a""b" text)`)
	body, _ = json.Marshal([]map[string]any{{"type": "insert", "modified": map[string]any{"id": 2, `a"b`: `'); DROP TABLE t; --`}, "relation": hostile}})
	if _, err := w.Apply(ctx, parse(t, string(body))); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := base.QueryRow(ctx, `SELECT "a""b" FROM "x""; DROP TABLE t; --" WHERE id = 2`).Scan(&v); err != nil || v != `'); DROP TABLE t; --` {
		t.Fatalf("hostile table's row: %q, %v", v, err)
	}
	if err := base.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("table t: %d rows, %v", n, err)
	}
}

func TestValuesOfManyTypesRoundTrip(t *testing.T) {
	pool := pgtest.NewPool(t)
	exec(t, pool, `CREATE TYPE mood AS ENUM ('sad', 'ok'); CREATE DOMAIN short AS varchar(3) CHECK (VALUE <> 'bad');
		CREATE TABLE kinds (id int PRIMARY KEY, i8 bigint, n numeric(12,2), b bool, tx text, tz timestamptz, u uuid, jb jsonb, j json,
		tarr text[], iarr int[], c char(5), vc varchar(3), e mood, d short, f8 double precision, nul text, g int GENERATED ALWAYS AS (id * 2) STORED)`)
	w := writer.New(pool).Allow("kinds", writer.Rules{})
	ctx := context.Background()
	body := `[{"type":"insert","relation":"kinds","modified":{"id":1,"i8":9223372036854775807,"n":"12345.67","b":true,
		"tx":"it's \"quoted\" \\ and ünï","tz":"2024-06-01T12:00:00.123456+05:30","u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		"jb":{"a":[1,2.5,"x"],"b":{"c":null}},"j":"just a string","tarr":["a b","c,d","e\"f",null,""],"iarr":[1,null,3],
		"c":"ab","vc":"abc","e":"ok","d":"xyz","f8":1.5e-10,"nul":null}}]`
	txid, err := w.Apply(ctx, parse(t, body))
	if err != nil {
		t.Fatal(err)
	}
	if txid <= 0 || txid >= 1<<32 {
		t.Fatalf("txid %d", txid)
	}
	want := map[string]string{
		"id": "1", "i8": "9223372036854775807", "n": "12345.67", "b": "t", "tx": `it's "quoted" \ and ünï`,
		"tz": "2024-06-01 06:30:00.123456+00", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "jb": `{"a": [1, 2.5, "x"], "b": {"c": null}}`,
		"j": `"just a string"`, "tarr": `{"a b","c,d","e\"f",NULL,""}`, "iarr": "{1,NULL,3}", "c": "ab   ", "vc": "abc", "e": "ok",
		"d": "xyz", "f8": "1.5e-10", "nul": "<NULL>", "g": "2",
	}
	check := func(id int) {
		t.Helper()
		conn, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Release()
		exec := func(sql string) {
			if _, err := conn.Exec(ctx, sql); err != nil {
				t.Fatal(err)
			}
		}
		exec(`SET TimeZone = 'UTC'`)
		rows, err := conn.Query(ctx, `SELECT * FROM kinds WHERE id = $1`, []any{pgx.QueryResultFormats{pgx.TextFormatCode}, id}...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		if !rows.Next() {
			t.Fatalf("no row %d", id)
		}
		for i, f := range rows.FieldDescriptions() {
			got := "<NULL>"
			if raw := rows.RawValues()[i]; raw != nil {
				got = string(raw)
			}
			w := want[f.Name]
			if f.Name == "id" {
				w = fmt.Sprint(id)
			}
			if f.Name == "g" {
				w = fmt.Sprint(id * 2)
			}
			if got != w {
				t.Errorf("row %d column %s = %q, want %q", id, f.Name, got, w)
			}
		}
	}
	check(1)

	// The same values as Go values, through Apply directly.
	_, err = w.Apply(ctx, []writer.Mutation{{Type: writer.Insert, Table: "kinds", Modified: map[string]any{
		"id": 2, "i8": int64(9223372036854775807), "n": 12345.67, "b": true, "tx": `it's "quoted" \ and ünï`,
		"tz": time.Date(2024, 6, 1, 6, 30, 0, 123456000, time.UTC), "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		"jb": map[string]any{"a": []any{1, 2.5, "x"}, "b": map[string]any{"c": nil}}, "j": "just a string",
		"tarr": []any{"a b", "c,d", `e"f`, nil, ""}, "iarr": []any{1, nil, 3}, "c": "ab", "vc": "abc", "e": "ok", "d": "xyz",
		"f8": 1.5e-10, "nul": nil,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	check(2)

	// An update sets only what changed, and the values round-trip the same way.
	if _, err := w.Apply(ctx, parse(t, `[{"type":"update","relation":"kinds","original":{"id":1,"tx":"old"},"modified":{"id":1,"tx":"new","tarr":[]}}]`)); err != nil {
		t.Fatal(err)
	}
	want["tx"], want["tarr"] = "new", "{}"
	check(1)

	// What does not fit its column is refused, not cut or coerced.
	for _, bad := range []string{`"vc":"abcd"`, `"d":"bad"`, `"e":"happy"`, `"n":"1e20"`, `"u":"nope"`, `"tz":"yesterday-ish"`, `"g":5`, `"iarr":[[1],2]`, `"b":{"x":1}`} {
		_, err := w.Apply(ctx, parse(t, `[{"type":"insert","relation":"kinds","modified":{"id":9,`+bad+`}}]`))
		if !errors.Is(err, writer.ErrInvalid) {
			t.Errorf("%s: %v, want invalid", bad, err)
		}
	}
}

func TestUpdateOrDeleteOfAMissingRow(t *testing.T) {
	pool, w := setup(t)
	exec(t, pool, `INSERT INTO todos VALUES (1, 1, 'one', false)`)
	ctx := asUser(1)
	for _, body := range []string{
		`[{"type":"update","original":{"id":404},"changes":{"title":"x"},"relation":"todos"}]`,
		`[{"type":"update","original":{"id":404},"changes":{},"relation":"todos"}]`,
		`[{"type":"delete","original":{"id":404},"relation":"todos"}]`,
	} {
		_, err := w.Apply(ctx, parse(t, body))
		me := refused(t, err, 0, writer.ErrConflict)
		if !errors.Is(err, writer.ErrNotFound) || !writer.Equal(me.Key["id"], 404) {
			t.Fatalf("%s: %v", body, err)
		}
	}
	// A Load of the app's own that finds nothing means the same; so does an UPDATE
	// that matches no row though Load found one.
	w.Allow("todos", writer.Rules{Load: func(context.Context, pgx.Tx, *writer.Mutation) (writer.Row, error) { return nil, nil }})
	_, err := w.Apply(ctx, parse(t, `[{"type":"delete","original":{"id":1},"relation":"todos"}]`))
	refused(t, err, 0, writer.ErrConflict)
	w.Allow("todos", writer.Rules{Load: func(context.Context, pgx.Tx, *writer.Mutation) (writer.Row, error) { return writer.Row{}, nil }})
	_, err = w.Apply(ctx, parse(t, `[{"type":"update","original":{"id":405},"changes":{"title":"x"},"relation":"todos"}]`))
	refused(t, err, 0, writer.ErrConflict)
	if got := todos(t, pool); got != "1:1:one:false" {
		t.Fatalf("table %q", got)
	}
}

func TestHooksRunInTheTransactionInOrder(t *testing.T) {
	pool := pgtest.NewPool(t)
	exec(t, pool, todosDDL+`; CREATE TABLE audit (n serial, what text)`)
	var calls []string
	var inTx int64
	log := func(what string) func(context.Context, pgx.Tx, *writer.Mutation) error {
		return func(ctx context.Context, tx pgx.Tx, m *writer.Mutation) error {
			calls = append(calls, fmt.Sprintf("%s %d", what, m.Index))
			_, err := tx.Exec(ctx, `INSERT INTO audit (what) VALUES ($1)`, fmt.Sprintf("%s %s %v", what, m.Type, m.Key["id"]))
			if what == "after" {
				if err := tx.QueryRow(ctx, `SELECT txid_current() % 4294967296`).Scan(&inTx); err != nil {
					return err
				}
			}
			return err
		}
	}
	w := writer.New(pool).Allow("todos", writer.Rules{
		Check: func(_ context.Context, m *writer.Mutation) error {
			calls = append(calls, fmt.Sprintf("check %d", m.Index))
			if m.Type == writer.Insert {
				m.Modified["owner"] = 7 // the rule sets the owner
			}
			return nil
		},
		Load: func(ctx context.Context, tx pgx.Tx, m *writer.Mutation) (writer.Row, error) {
			calls = append(calls, fmt.Sprintf("load %d", m.Index))
			if m.Type == writer.Insert {
				return nil, nil
			}
			var title string
			err := tx.QueryRow(ctx, `SELECT title FROM todos WHERE id = $1`, m.Key["id"]).Scan(&title)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil, nil
			}
			return writer.Row{"title": title}, err
		},
		Validate: func(_ context.Context, m *writer.Mutation, current writer.Row) error {
			calls = append(calls, fmt.Sprintf("validate %d %v", m.Index, current["title"]))
			return nil
		},
		Before: log("before"),
		After:  log("after"),
	})
	txid, err := w.Apply(context.Background(), parse(t, `[{"type":"insert","modified":{"id":1,"title":"a"},"relation":"todos"},
		{"type":"update","original":{"id":1},"changes":{"title":"b"},"relation":"todos"}]`))
	if err != nil {
		t.Fatal(err)
	}
	want := "check 0,check 1,load 0,validate 0 <nil>,before 0,after 0,load 1,validate 1 a,before 1,after 1"
	if got := strings.Join(calls, ","); got != want {
		t.Fatalf("calls %s\nwant  %s", got, want)
	}
	if txid != inTx {
		t.Fatalf("Apply returned txid %d, txid_current() %% 2^32 in the transaction was %d", txid, inTx)
	}
	var audit, table string
	if err := pool.QueryRow(context.Background(), `SELECT string_agg(what, ',' ORDER BY n), (SELECT string_agg(id || ':' || owner || ':' || title, ',') FROM todos) FROM audit`).Scan(&audit, &table); err != nil {
		t.Fatal(err)
	}
	if audit != "before insert 1,after insert 1,before update 1,after update 1" || table != "1:7:b" {
		t.Fatalf("audit %q, table %q", audit, table)
	}
	// A hook's error rolls everything back and is no refusal of the request's.
	w.Allow("todos", writer.Rules{After: func(context.Context, pgx.Tx, *writer.Mutation) error { return errors.New("disk on fire") }})
	_, err = w.Apply(context.Background(), parse(t, `[{"type":"delete","original":{"id":1},"relation":"todos"}]`))
	var me *writer.MutationError
	if !errors.As(err, &me) || errors.Is(err, writer.ErrForbidden) || errors.Is(err, writer.ErrInvalid) || errors.Is(err, writer.ErrConflict) {
		t.Fatalf("hook error: %v", err)
	}
	if got := todos(t, pool); got != "1:7:b:false" {
		t.Fatalf("table %q", got)
	}
}

// The txid Apply returns is the one the live stream reports for the change.
func TestTxidIsTheOneTheStreamReports(t *testing.T) {
	pool, w := setup(t)
	name := fmt.Sprintf("t_writer_%d", time.Now().UnixNano()%1e12)
	t.Cleanup(func() {
		if err := live.Disable(context.Background(), pool, name); err != nil {
			t.Errorf("disable: %v", err)
		}
	})
	e, err := live.Start(context.Background(), live.Config{Pool: pool, Name: name, ElectEvery: 200 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)

	ctx, cancel := context.WithCancel(context.Background())
	msgs := make(chan syncapi.StreamMessage, 1000)
	done := make(chan error, 1)
	go func() {
		done <- e.Stream(ctx, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "todos"}}, func(m syncapi.StreamMessage) error {
			msgs <- m
			return nil
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	next := func(stop func(syncapi.StreamMessage) bool) syncapi.StreamMessage {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case m := <-msgs:
				if stop(m) {
					return m
				}
			case err := <-done:
				done <- err
				for len(msgs) > 0 { // sent before the end; select picks at random
					if m := <-msgs; stop(m) {
						return m
					}
				}
				t.Fatalf("stream ended: %v", err)
			case <-deadline:
				t.Fatal("no such message within 30s")
			}
		}
	}
	next(func(m syncapi.StreamMessage) bool { return m.Message.Headers.Control == syncapi.ControlUpToDate })

	one := asUser(1)
	txid, err := w.Apply(one, parse(t, `[{"type":"insert","modified":{"id":1,"owner":1,"title":"a"},"syncMetadata":{"relation":["public","todos"]}},
		{"type":"insert","modified":{"id":2,"owner":1,"title":"b"},"syncMetadata":{"relation":["public","todos"]}}]`))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"public"."todos"/"1"`, `"public"."todos"/"2"`} {
		m := next(func(m syncapi.StreamMessage) bool { return m.Message.Key == key })
		if len(m.Message.Headers.Txids) != 1 || m.Message.Headers.Txids[0] != txid {
			t.Fatalf("change %s has txids %v, Apply returned %d", key, m.Message.Headers.Txids, txid)
		}
	}
	txid2, err := w.Apply(one, parse(t, `[{"type":"update","original":{"id":1},"changes":{"done":true},"relation":"todos"},{"type":"delete","original":{"id":2},"relation":"todos"}]`))
	if err != nil {
		t.Fatal(err)
	}
	if txid2 == txid {
		t.Fatal("two transactions, one txid")
	}
	for _, op := range []string{syncapi.OperationUpdate, syncapi.OperationDelete} {
		m := next(func(m syncapi.StreamMessage) bool { return m.Message.Headers.Operation == op })
		if len(m.Message.Headers.Txids) != 1 || m.Message.Headers.Txids[0] != txid2 {
			t.Fatalf("%s has txids %v, Apply returned %d", op, m.Message.Headers.Txids, txid2)
		}
	}
}

func TestParseFormats(t *testing.T) {
	for _, c := range []struct{ name, body, want string }{
		{"tanstack", `[{"type":"update","modified":{"id":1,"n":1.50},"original":{"id":1},"changes":{"n":1.50},"syncMetadata":{"relation":["s","t"]},"mutationId":"x","key":"1"}]`,
			`0 update s.t m=map[id:1 n:1.50] o=map[id:1] c=map[n:1.50]`},
		{"top-level relation", `[{"type":"delete","original":{"id":1},"relation":["s","t"]}]`, `0 delete s.t m=map[] o=map[id:1] c=map[]`},
		{"relation as a name", `[{"type":"insert","modified":{"id":1},"relation":"t"},{"type":"insert","modified":{"id":2},"relation":"s.t"}]`,
			`0 insert public.t m=map[id:1] o=map[] c=map[]|1 insert s.t m=map[id:2] o=map[] c=map[]`},
		{"phoenix data", `[{"type":"insert","data":{"id":1},"relation":["public","t"]}]`, `0 insert public.t m=map[id:1] o=map[] c=map[]`},
		{"wrapped", `{"mutations":[{"type":"insert","modified":{"id":1},"relation":"t"}]}`, `0 insert public.t m=map[id:1] o=map[] c=map[]`},
	} {
		ms, err := writer.Parse([]byte(c.body))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var got []string
		for _, m := range ms {
			got = append(got, fmt.Sprintf("%d %s %s.%s m=%v o=%v c=%v", m.Index, m.Type, m.Schema, m.Table, m.Modified, m.Original, m.Changes))
		}
		if strings.Join(got, "|") != c.want {
			t.Errorf("%s: %s\nwant %s", c.name, strings.Join(got, "|"), c.want)
		}
	}
	for _, bad := range []string{``, `{}`, `[]`, `[1]`, `[{"type":"insert"}]`, `[{"type":"upsert","relation":"t"}]`,
		`[{"type":"insert","relation":["a","b","c"]}]`, `[{"type":"insert","relation":"t"}] x`, `{"mutations":[]}`} {
		if _, err := writer.Parse([]byte(bad)); !errors.Is(err, writer.ErrInvalid) {
			t.Errorf("Parse(%q): %v, want invalid", bad, err)
		}
	}
	_, err := writer.Parse([]byte(`[{"type":"insert","relation":"t"},{"type":"nope","relation":"t"}]`))
	var me *writer.MutationError
	if !errors.As(err, &me) || me.Index != 1 || me.Table != "public.t" {
		t.Fatalf("bad second mutation: %v", err)
	}
}

func TestEqual(t *testing.T) {
	for _, c := range []struct {
		a, b any
		eq   bool
	}{
		{json.Number("1"), 1, true}, {json.Number("1.0"), int64(1), true}, {"1", 1, true}, {1.5, json.Number("1.50"), true},
		{json.Number("9007199254740993"), int64(9007199254740992), false}, {nil, nil, true}, {nil, "", false}, {"a", "b", false},
		{map[string]any{"a": 1}, map[string]any{"a": json.Number("1")}, true}, {true, "true", true}, {[]any{1}, []any{2}, false},
	} {
		if got := writer.Equal(c.a, c.b); got != c.eq {
			t.Errorf("Equal(%#v, %#v) = %v", c.a, c.b, got)
		}
	}
}
