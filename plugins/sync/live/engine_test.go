package live

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/devpg"
	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/plugins/sync/capture"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// startEngine starts live sync on pool under a name of the test's own (slots are
// per cluster), removed when the test ends.
func startEngine(t *testing.T, pool *pgxpool.Pool, name string) *Engine {
	t.Helper()
	e, err := Start(context.Background(), Config{Pool: pool, Name: name, ElectEvery: 200 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close) // Close may be called twice
	return e
}

// testName is a slot name for the test.
func testName(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("t_live_%d", time.Now().UnixNano()%1e12)
}

// teardown drops the test's slot and publication at the end (after the engines).
func teardown(t *testing.T, pool *pgxpool.Pool, name string) {
	t.Cleanup(func() {
		if err := Disable(context.Background(), pool, name); err != nil {
			t.Errorf("disable: %v", err)
		}
	})
}

func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// reader runs a stream and hands over its messages.
type reader struct {
	msgs   chan syncapi.StreamMessage
	cancel context.CancelFunc
	done   chan error
}

func read(t *testing.T, e *Engine, req syncapi.StreamRequest) *reader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &reader{msgs: make(chan syncapi.StreamMessage, 100000), cancel: cancel, done: make(chan error, 1)}
	go func() {
		r.done <- e.Stream(ctx, req, func(m syncapi.StreamMessage) error {
			r.msgs <- m
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// until collects messages up to and including the first that satisfies stop.
func (r *reader) until(t *testing.T, stop func(syncapi.StreamMessage) bool) []syncapi.StreamMessage {
	t.Helper()
	var got []syncapi.StreamMessage
	deadline := time.After(30 * time.Second)
	for {
		select {
		case m := <-r.msgs:
			got = append(got, m)
			if stop(m) {
				return got
			}
		case err := <-r.done:
			// select picks among ready cases at random: messages sent before the
			// end may still wait in msgs.
			for len(r.msgs) > 0 {
				m := <-r.msgs
				got = append(got, m)
				if stop(m) {
					return got
				}
			}
			t.Fatalf("stream ended after %d messages: %v", len(got), err)
		case <-deadline:
			t.Fatalf("stop condition not met within 30s; got %d messages: %s", len(got), summary(got))
		}
	}
}

func upToDate(m syncapi.StreamMessage) bool {
	return m.Message.Headers.Control == syncapi.ControlUpToDate
}

func summary(ms []syncapi.StreamMessage) string {
	var b strings.Builder
	for _, m := range ms {
		h := m.Message.Headers
		if h.Control != "" {
			fmt.Fprintf(&b, "[%s %s] ", h.Control, m.Offset)
			continue
		}
		fmt.Fprintf(&b, "[%s %s %v] ", h.Operation, m.Message.Key, values(m.Message.Value))
	}
	return b.String()
}

func values(v map[string]*string) string {
	var keys []string
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		if v[k] == nil {
			parts = append(parts, k+"=NULL")
		} else {
			parts = append(parts, k+"="+*v[k])
		}
	}
	return strings.Join(parts, ",")
}

// rows applies a stream's messages to a reader's copy of the shape: key → row.
type rows map[string]map[string]*string

func (rs rows) apply(t *testing.T, ms []syncapi.StreamMessage) {
	t.Helper()
	for _, m := range ms {
		msg := m.Message
		switch msg.Headers.Operation {
		case syncapi.OperationInsert:
			if _, dup := rs[msg.Key]; dup {
				t.Fatalf("insert of %s, which the reader already has (seen twice)", msg.Key)
			}
			row := map[string]*string{}
			for k, v := range msg.Value {
				row[k] = v
			}
			rs[msg.Key] = row
		case syncapi.OperationUpdate:
			row, ok := rs[msg.Key]
			if !ok {
				t.Fatalf("update of %s, which the reader does not have", msg.Key)
			}
			for k, v := range msg.Value {
				row[k] = v
			}
		case syncapi.OperationDelete:
			if _, ok := rs[msg.Key]; !ok {
				t.Fatalf("delete of %s, which the reader does not have", msg.Key)
			}
			delete(rs, msg.Key)
		}
		if msg.Headers.Control == syncapi.ControlMustRefetch {
			for k := range rs {
				delete(rs, k)
			}
		}
	}
}

// want reads the rows a shape should hold from the database: key → columns.
func want(t *testing.T, pool *pgxpool.Pool, query string, args ...any) rows {
	t.Helper()
	rs, err := pool.Query(context.Background(), query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	out := rows{}
	fields := rs.FieldDescriptions()
	for rs.Next() {
		vals := make([]*string, len(fields))
		ptrs := make([]any, len(fields))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := map[string]*string{}
		for i, f := range fields {
			row[f.Name] = vals[i]
		}
		out[`"public"."items"/"`+*vals[0]+`"`] = row
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameRows(t *testing.T, got, want rows) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("reader has %d rows, database %d", len(got), len(want))
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Fatalf("reader lacks %s", k)
		}
		if values(g) != values(w) {
			t.Fatalf("row %s: reader %s, database %s", k, values(g), values(w))
		}
	}
}

// itemsEngine starts an engine on a fresh database whose items table holds n rows
// of owner 1.
func itemsEngine(t *testing.T, n int) (*pgxpool.Pool, *Engine) {
	t.Helper()
	pool := pgtest.NewPool(t)
	name := testName(t)
	teardown(t, pool, name)
	exec(t, pool, itemsDDL)
	exec(t, pool, `INSERT INTO items SELECT g, 1, 't', g, NULL, NULL FROM generate_series(1, $1::int) g`, n)
	return pool, startEngine(t, pool, name)
}

const itemsDDL = `CREATE TABLE items (id bigint PRIMARY KEY, owner int NOT NULL, title text, price numeric(12,2), tags text[], at timestamptz)`

const itemsCols = `id::text AS id, owner::text AS owner, title, price::text AS price, tags::text AS tags, at::text AS at`

func TestSnapshotThenChangesInCommitOrder(t *testing.T) {
	pool := pgtest.NewPool(t)
	name := testName(t)
	teardown(t, pool, name)
	exec(t, pool, itemsDDL)
	exec(t, pool, `INSERT INTO items SELECT g, g % 3, 'item ' || g, g * 1.5, ARRAY['a', 'b'], '2024-01-01 00:00:00+00' FROM generate_series(1, 30) g`)
	e := startEngine(t, pool, name)

	req := syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "items", Where: "owner = $1", Params: []string{"1"}}}
	r := read(t, e, req)
	got := rows{}
	first := r.until(t, upToDate)
	got.apply(t, first)
	sameRows(t, got, want(t, pool, `SELECT `+itemsCols+` FROM items WHERE owner = 1`))
	handle := first[0].Handle
	if handle == "" || first[len(first)-1].Handle != handle {
		t.Fatalf("messages without one handle: %s", summary(first))
	}

	// Changes: an insert in the shape, one outside, an update within, a move out,
	// a move in, a delete, a key change — in one transaction and in several.
	exec(t, pool, `INSERT INTO items VALUES (100, 1, 'new', 9.99, NULL, NULL)`)
	exec(t, pool, `INSERT INTO items VALUES (101, 2, 'other', 1, NULL, NULL)`)
	exec(t, pool, `BEGIN; UPDATE items SET title = 'renamed' WHERE id = 1; UPDATE items SET owner = 2 WHERE id = 4; UPDATE items SET owner = 1 WHERE id = 2; COMMIT`)
	exec(t, pool, `DELETE FROM items WHERE id = 7`)
	exec(t, pool, `UPDATE items SET id = 1000 WHERE id = 10`)
	exec(t, pool, `UPDATE items SET title = NULL, price = NULL WHERE id = 13`)
	var txid int64
	if err := pool.QueryRow(context.Background(), `INSERT INTO items VALUES (102, 1, 'last', 2, NULL, NULL) RETURNING txid_current() % 4294967296`).Scan(&txid); err != nil {
		t.Fatal(err)
	}
	changes := r.until(t, func(m syncapi.StreamMessage) bool { return m.Message.Key == `"public"."items"/"102"` })
	got.apply(t, changes)
	sameRows(t, got, want(t, pool, `SELECT `+itemsCols+` FROM items WHERE owner = 1`))

	last := changes[len(changes)-1]
	if len(last.Message.Headers.Txids) != 1 || last.Message.Headers.Txids[0] != txid {
		t.Fatalf("last change's txids %v, the inserting transaction was %d", last.Message.Headers.Txids, txid)
	}
	// Offsets only grow, and the update carries only what changed (replica default).
	prev := ""
	for _, m := range changes {
		if m.Message.Headers.Control != "" {
			continue
		}
		if prev != "" && !offsetLess(t, prev, m.Offset) {
			t.Fatalf("offset %s after %s", m.Offset, prev)
		}
		prev = m.Offset
		if m.Message.Key == `"public"."items"/"1"` && m.Message.Headers.Operation == syncapi.OperationUpdate {
			if _, ok := m.Message.Value["price"]; ok || len(m.Message.Value) != 2 {
				t.Fatalf("update of item 1 sends %s; want the key and title", values(m.Message.Value))
			}
		}
	}
	ops := summary(changes)
	for _, want := range []string{`[insert "public"."items"/"100"`, `[delete "public"."items"/"4"`, `[insert "public"."items"/"2"`,
		`[delete "public"."items"/"7"`, `[delete "public"."items"/"10"`, `[insert "public"."items"/"1000"`} {
		if !strings.Contains(ops, want) {
			t.Fatalf("no %s in %s", want, ops)
		}
	}
	if strings.Contains(ops, `"101"`) {
		t.Fatalf("a row outside the shape was sent: %s", ops)
	}
}

func offsetLess(t *testing.T, a, b string) bool {
	t.Helper()
	var al, bl uint64
	var ao, bo int
	if _, err := fmt.Sscanf(a, "%d_%d", &al, &ao); err != nil {
		t.Fatalf("offset %q: %v", a, err)
	}
	if _, err := fmt.Sscanf(b, "%d_%d", &bl, &bo); err != nil {
		t.Fatalf("offset %q: %v", b, err)
	}
	return al < bl || al == bl && ao < bo
}

// Writers run while a shape is created: whatever the interleaving, the reader's
// copy equals the table, each change seen once (apply fails on a duplicate insert
// or an update of an unknown row).
func TestSnapshotAndStreamJoinUnderConcurrentWrites(t *testing.T) {
	pool := pgtest.NewPool(t)
	name := testName(t)
	teardown(t, pool, name)
	exec(t, pool, itemsDDL)
	exec(t, pool, `INSERT INTO items SELECT g, g % 2, 't', g, NULL, NULL FROM generate_series(1, 2000) g`)
	e := startEngine(t, pool, name)

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				id := 3000 + w*100000 + i
				_, _ = pool.Exec(ctx, `BEGIN; INSERT INTO items VALUES ($1, $1 % 2, 'w', 1, NULL, NULL);
					UPDATE items SET price = price + 1, owner = 1 - owner WHERE id = $2; DELETE FROM items WHERE id = $3; COMMIT`,
					id, 1+(id*7)%2000, 1+(id*13)%2000)
			}
		}(w)
	}
	time.Sleep(300 * time.Millisecond)
	r := read(t, e, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "items", Where: "owner = 0"}})
	got := rows{}
	got.apply(t, r.until(t, upToDate))
	time.Sleep(500 * time.Millisecond)
	stop()
	wg.Wait()
	var txid int64
	if err := pool.QueryRow(context.Background(), `INSERT INTO items VALUES (-1, 0, 'marker', 0, NULL, NULL) RETURNING 1`).Scan(&txid); err != nil {
		t.Fatal(err)
	}
	got.apply(t, r.until(t, func(m syncapi.StreamMessage) bool { return m.Message.Key == `"public"."items"/"-1"` }))
	sameRows(t, got, want(t, pool, `SELECT `+itemsCols+` FROM items WHERE owner = 0`))
}

func TestSameDefinitionIsOneShape(t *testing.T) {
	pool := pgtest.NewPool(t)
	name := testName(t)
	teardown(t, pool, name)
	exec(t, pool, itemsDDL)
	e := startEngine(t, pool, name)
	a := read(t, e, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "items", Where: "owner = $1", Params: []string{"5"}}})
	b := read(t, e, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Namespace: "public", Table: "items", Where: "OWNER=5",
		Columns: []string{"at", "id", "owner", "price", "tags", "title"}, Replica: "default"}})
	ha, hb := a.until(t, upToDate)[0].Handle, b.until(t, upToDate)[0].Handle
	if ha != hb {
		t.Fatalf("one definition, two handles: %s and %s", ha, hb)
	}
	c := read(t, e, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "items", Where: "owner = 6"}})
	if hc := c.until(t, upToDate)[0].Handle; hc == ha {
		t.Fatal("two definitions share a handle")
	}
	shapes, err := e.Shapes(context.Background())
	if err != nil || len(shapes) != 2 {
		t.Fatalf("shapes %+v %v", shapes, err)
	}
}

// A reader that stops and comes back with its handle and last offset gets exactly
// what it missed — across an engine restart too (a plugin restart).
func TestResumeByOffsetAcrossARestart(t *testing.T) {
	pool, e := itemsEngine(t, 10)
	spec := syncapi.ShapeSpec{Table: "items"}
	r := read(t, e, syncapi.StreamRequest{Shape: spec})
	got := rows{}
	ms := r.until(t, upToDate)
	got.apply(t, ms)
	exec(t, pool, `UPDATE items SET title = 'a' WHERE id = 1`)
	ms = r.until(t, func(m syncapi.StreamMessage) bool { return m.Message.Key == `"public"."items"/"1"` })
	got.apply(t, ms)
	handle, offset := ms[len(ms)-1].Handle, ms[len(ms)-1].Offset
	r.cancel()
	<-r.done
	r.done <- nil // for the cleanup

	exec(t, pool, `UPDATE items SET title = 'b' WHERE id = 2`)
	e.Close()
	exec(t, pool, `DELETE FROM items WHERE id = 3`)
	e2 := startEngine(t, pool, e.cfg.Name)
	exec(t, pool, `INSERT INTO items VALUES (11, 1, 'n', 1, NULL, NULL)`)
	r2 := read(t, e2, syncapi.StreamRequest{Shape: spec, Handle: handle, Offset: offset})
	ms = r2.until(t, func(m syncapi.StreamMessage) bool { return m.Message.Key == `"public"."items"/"11"` })
	if ms[0].Handle != handle {
		t.Fatalf("handle changed across the restart: %s → %s", handle, ms[0].Handle)
	}
	got.apply(t, ms)
	sameRows(t, got, want(t, pool, `SELECT `+itemsCols+` FROM items`))
	for _, m := range ms {
		if m.Message.Key == `"public"."items"/"1"` {
			t.Fatalf("the resumed stream repeated a change before its offset: %s", summary(ms))
		}
	}
}

// TRUNCATE and ALTER TABLE make a shape's readers refetch: a must-refetch with a new
// handle, then the new shape's rows from the beginning.
func TestTruncateAndAlterMakeReadersRefetch(t *testing.T) {
	pool, e := itemsEngine(t, 5)
	r := read(t, e, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "items"}})
	first := r.until(t, upToDate)
	h1 := first[0].Handle

	exec(t, pool, `BEGIN; TRUNCATE items; INSERT INTO items VALUES (50, 1, 'after', 1, NULL, NULL); COMMIT`)
	ms := r.until(t, func(m syncapi.StreamMessage) bool { return m.Message.Headers.Control == syncapi.ControlMustRefetch })
	h2 := ms[len(ms)-1].Handle
	if h2 == "" || h2 == h1 {
		t.Fatalf("must-refetch without a new handle: %q (was %q)", h2, h1)
	}
	got := rows{}
	got.apply(t, r.until(t, upToDate))
	sameRows(t, got, want(t, pool, `SELECT `+itemsCols+` FROM items`))

	exec(t, pool, `ALTER TABLE items ADD COLUMN note text`)
	exec(t, pool, `UPDATE items SET note = 'x' WHERE id = 50`)
	ms = r.until(t, func(m syncapi.StreamMessage) bool { return m.Message.Headers.Control == syncapi.ControlMustRefetch })
	if h3 := ms[len(ms)-1].Handle; h3 == h2 {
		t.Fatal("ALTER TABLE kept the handle")
	}
	after := r.until(t, upToDate)
	if len(after) != 2 || after[0].Message.Value["note"] == nil || *after[0].Message.Value["note"] != "x" {
		t.Fatalf("after the ALTER: %s", summary(after))
	}
}

func TestInterruptMakesMatchingShapesRefetch(t *testing.T) {
	pool := pgtest.NewPool(t)
	name := testName(t)
	teardown(t, pool, name)
	exec(t, pool, itemsDDL)
	exec(t, pool, `CREATE TABLE other (id int PRIMARY KEY)`)
	e := startEngine(t, pool, name)
	a := read(t, e, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "items", Where: "owner = 1"}})
	b := read(t, e, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "items", Where: "owner = 2"}})
	c := read(t, e, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "other"}})
	for _, r := range []*reader{a, b, c} {
		r.until(t, upToDate)
	}
	n, err := e.Interrupt(context.Background(), syncapi.ShapeMatch{Table: "items", Where: "owner=1"})
	if err != nil || n != 1 {
		t.Fatalf("interrupt by where: %d %v", n, err)
	}
	a.until(t, func(m syncapi.StreamMessage) bool { return m.Message.Headers.Control == syncapi.ControlMustRefetch })
	a.until(t, upToDate)
	if n, err := e.Interrupt(context.Background(), syncapi.ShapeMatch{Table: "items"}); err != nil || n != 2 {
		t.Fatalf("interrupt by table: %d %v", n, err)
	}
	b.until(t, func(m syncapi.StreamMessage) bool { return m.Message.Headers.Control == syncapi.ControlMustRefetch })
	select {
	case m := <-c.msgs:
		t.Fatalf("a shape of another table was interrupted: %s", summary([]syncapi.StreamMessage{m}))
	case <-time.After(300 * time.Millisecond):
	}
}

func TestBadShapesAreRefused(t *testing.T) {
	pool := pgtest.NewPool(t)
	name := testName(t)
	teardown(t, pool, name)
	exec(t, pool, itemsDDL)
	exec(t, pool, `CREATE TABLE nokey (a int)`)
	e := startEngine(t, pool, name)
	for _, tc := range []struct {
		spec syncapi.ShapeSpec
		want string
	}{
		{syncapi.ShapeSpec{Table: "nope"}, "unknown table"},
		{syncapi.ShapeSpec{Table: "nokey"}, "no primary key"},
		{syncapi.ShapeSpec{Table: "items", Columns: []string{"title"}}, "primary key"},
		{syncapi.ShapeSpec{Table: "items", Columns: []string{"id", "nope"}}, "unknown column"},
		{syncapi.ShapeSpec{Table: "items", Where: "owner = (SELECT 1)"}, "where"},
		{syncapi.ShapeSpec{Table: "items", Where: "owner = $2", Params: []string{"1"}}, "$2"},
		{syncapi.ShapeSpec{Table: "items", Replica: "half"}, "replica"},
		{syncapi.ShapeSpec{Table: `items"; DROP TABLE items; --`}, "unknown table"},
	} {
		err := e.Stream(context.Background(), syncapi.StreamRequest{Shape: tc.spec}, func(syncapi.StreamMessage) error { return nil })
		var inv *InvalidError
		if !errors.As(err, &inv) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an InvalidError saying %q", tc.spec, err, tc.want)
		}
	}
	err := e.Stream(context.Background(), syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "items"}, Handle: "x", Offset: "soon"},
		func(syncapi.StreamMessage) error { return nil })
	var inv *InvalidError
	if !errors.As(err, &inv) {
		t.Errorf("a bad offset: %v", err)
	}
}

// Two engines on one database are two replicas: one captures, and a stream on the
// other sees every change; when the capturing one stops, the other takes over.
func TestReplicasShareOneCaptureAndTakeOver(t *testing.T) {
	pool := pgtest.NewPool(t)
	name := testName(t)
	teardown(t, pool, name)
	exec(t, pool, itemsDDL)
	a := startEngine(t, pool, name)
	b := startEngine(t, pool, name)
	deadline := time.Now().Add(10 * time.Second)
	for a.capturing.Load() == b.capturing.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("capturing: a %v, b %v", a.capturing.Load(), b.capturing.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	capturer, other := a, b
	if b.capturing.Load() {
		capturer, other = b, a
	}
	r := read(t, other, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "items"}})
	got := rows{}
	got.apply(t, r.until(t, upToDate))
	exec(t, pool, `INSERT INTO items VALUES (1, 1, 'one', 1, NULL, NULL)`)
	got.apply(t, r.until(t, func(m syncapi.StreamMessage) bool { return m.Message.Key == `"public"."items"/"1"` }))

	capturer.Close()
	exec(t, pool, `INSERT INTO items VALUES (2, 1, 'two', 1, NULL, NULL)`)
	got.apply(t, r.until(t, func(m syncapi.StreamMessage) bool { return m.Message.Key == `"public"."items"/"2"` }))
	if !other.capturing.Load() {
		t.Fatal("the other replica did not take over capture")
	}
	sameRows(t, got, want(t, pool, `SELECT `+itemsCols+` FROM items`))
	var slots int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(&slots); err != nil || slots != 1 {
		t.Fatalf("%d slots named %s: %v", slots, name, err)
	}
}

// A burst of writes to a table no shape uses must not leave the slot holding WAL.
func TestIdleSlotKeepsUpWithUnrelatedWrites(t *testing.T) {
	pool := pgtest.NewPool(t)
	name := testName(t)
	teardown(t, pool, name)
	exec(t, pool, itemsDDL)
	exec(t, pool, `CREATE TABLE noise (id serial PRIMARY KEY, pad text)`)
	e, err := Start(context.Background(), Config{Pool: pool, Name: name, ElectEvery: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	r := read(t, e, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "items"}})
	r.until(t, upToDate)
	exec(t, pool, `INSERT INTO noise (pad) SELECT repeat('x', 1000) FROM generate_series(1, 20000)`)
	deadline := time.Now().Add(40 * time.Second)
	for {
		st, err := e.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.LagBytes < 1<<20 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slot still holds %d bytes of WAL after a burst on an unrelated table", st.LagBytes)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// A database without wal_level=logical: Start says so and how to fix it.
func TestStartOnADatabaseWithoutLogicalReplication(t *testing.T) {
	ctx := context.Background()
	srv, err := devpg.Start(ctx, devpg.Options{Settings: map[string]string{"wal_level": "replica"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	pool, err := pgxpool.New(ctx, srv.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	_, err = Start(ctx, Config{Pool: pool, Name: "t_nolive"})
	var nr *capture.NotReadyError
	if !errors.As(err, &nr) || !strings.Contains(err.Error(), "wal_level") {
		t.Fatalf("Start on wal_level=replica: %v", err)
	}
}

// Every common type arrives exactly: a row's values in the snapshot, in an insert
// and in a replica-full update are the text PostgreSQL's output functions print.
func TestEveryCommonTypeIsExactInSnapshotAndChanges(t *testing.T) {
	pool := pgtest.NewPool(t)
	name := testName(t)
	teardown(t, pool, name)
	exec(t, pool, `CREATE TYPE mood AS ENUM ('sad', 'ok');
		CREATE TABLE kinds (id int PRIMARY KEY, b bool, i2 smallint, i8 bigint, n numeric(20,6), f4 real, f8 double precision,
		c char(5), vc varchar(10), tx text, by bytea, u uuid, d date, ts timestamp, tz timestamptz, tm time, iv interval,
		j json, jb jsonb, arr int[], tarr text[], e mood, inet inet, r int4range, touch int)`)
	const row = `(%d, true, -32768, 9223372036854775807, -12345.678901, 1.5e-10, 'NaN', 'ab', 'ünï', E'line\nbreak "q" \\',
		'\xdeadbeef', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '0044-03-15 BC', '2024-02-29 23:59:59.999999', '2024-06-01 12:00:00+05:30',
		'24:00', '1 year 2 mons -3 days 04:05:06', '{"a": [1, 2]}', '{"b": {"c": null}, "a": 1}', '{1,NULL,3}', '{"x y","z,w",NULL}', 'ok',
		'192.168.0.1/24', '[1,10)', 0)`
	exec(t, pool, fmt.Sprintf(`INSERT INTO kinds VALUES `+row, 1))
	e := startEngine(t, pool, name)
	r := read(t, e, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "kinds", Replica: syncapi.ReplicaFull}})
	snap := r.until(t, upToDate)
	exec(t, pool, fmt.Sprintf(`INSERT INTO kinds VALUES `+row, 2))
	exec(t, pool, `UPDATE kinds SET touch = 1 WHERE id = 1`)
	changes := r.until(t, func(m syncapi.StreamMessage) bool { return m.Message.Headers.Operation == syncapi.OperationUpdate })

	// What the output functions print, column by column.
	rs, err := pool.Query(context.Background(), `SELECT * FROM kinds WHERE id = 1`, pgx.QueryResultFormats{pgx.TextFormatCode})
	if err != nil {
		t.Fatal(err)
	}
	wantRow := map[string]*string{}
	for rs.Next() {
		for i, f := range rs.FieldDescriptions() {
			if raw := rs.RawValues()[i]; raw != nil {
				v := string(raw)
				wantRow[f.Name] = &v
			}
		}
	}
	rs.Close()
	check := func(what string, got map[string]*string, skip ...string) {
		t.Helper()
		for col, w := range wantRow {
			if slices.Contains(skip, col) {
				continue
			}
			g := got[col]
			if g == nil || *g != *w {
				t.Errorf("%s: column %s = %v, want %q", what, col, deref(g), *w)
			}
		}
	}
	check("snapshot", snap[0].Message.Value, "touch")
	check("insert", changes[0].Message.Value, "id", "touch")
	upd := changes[len(changes)-1]
	check("replica-full update", upd.Message.Value)
	if old := upd.Message.OldValue; len(old) != 1 || old["touch"] == nil || *old["touch"] != "0" {
		t.Errorf("update's old value: %v", values(old))
	}
}

func deref(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

// A shape whose log of changes outgrows the cap is replaced: its readers get a
// must-refetch and the new shape's snapshot, which holds the rows as they are now.
func TestALogOverItsCapIsReplaced(t *testing.T) {
	pool := pgtest.NewPool(t)
	name := testName(t)
	teardown(t, pool, name)
	exec(t, pool, itemsDDL)
	exec(t, pool, `INSERT INTO items SELECT g, 1, 't', g, NULL, NULL FROM generate_series(1, 3) g`)
	e, err := Start(context.Background(), Config{Pool: pool, Name: name, LogCap: 4 << 10, ElectEvery: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	r := read(t, e, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "items"}})
	h1 := r.until(t, upToDate)[0].Handle
	for i := 0; i < 60; i++ {
		exec(t, pool, `UPDATE items SET title = repeat('x', 100) || $1 WHERE id = 1`, fmt.Sprint(i))
	}
	ms := r.until(t, func(m syncapi.StreamMessage) bool { return m.Message.Headers.Control == syncapi.ControlMustRefetch })
	if h2 := ms[len(ms)-1].Handle; h2 == h1 || h2 == "" {
		t.Fatalf("replaced shape's handle %q (was %q)", h2, h1)
	}
	got := rows{}
	got.apply(t, r.until(t, upToDate))
	exec(t, pool, `INSERT INTO items VALUES (99, 1, 'marker', 1, NULL, NULL)`)
	got.apply(t, r.until(t, func(m syncapi.StreamMessage) bool { return m.Message.Key == `"public"."items"/"99"` }))
	sameRows(t, got, want(t, pool, `SELECT `+itemsCols+` FROM items`))
	var logged int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM fiberkit_sync_shape_log WHERE handle = $1`, h1).Scan(&logged); err != nil || logged != 0 {
		t.Fatalf("the replaced shape's log still holds %d entries (%v)", logged, err)
	}
}

// Poll serves readers that ask page by page: the snapshot, a long-poll answered by
// a write, a timed-out long-poll, and a gone handle (must refetch, with the new one).
func TestPollPagesLongPollsAndRefetches(t *testing.T) {
	pool, e := itemsEngine(t, 5)
	ctx := context.Background()
	spec := syncapi.ShapeSpec{Table: "items"}
	first, err := e.Poll(ctx, PollRequest{Shape: spec, Limit: 3})
	if err != nil || first.UpToDate || len(first.Messages) != 3 || first.Handle == "" {
		t.Fatalf("first page: %+v %v", first, err)
	}
	rest, err := e.Poll(ctx, PollRequest{Shape: spec, Handle: first.Handle, Offset: first.Offset, Limit: 3})
	if err != nil || !rest.UpToDate || len(rest.Messages) != 2 {
		t.Fatalf("second page: %+v %v", rest, err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = pool.Exec(ctx, `INSERT INTO items VALUES (6, 1, 'new', 1, NULL, NULL)`)
	}()
	start := time.Now()
	live, err := e.Poll(ctx, PollRequest{Shape: spec, Handle: rest.Handle, Offset: rest.Offset, Live: true, Wait: 10 * time.Second})
	if err != nil || len(live.Messages) != 1 || live.Messages[0].Message.Key != `"public"."items"/"6"` || !live.UpToDate {
		t.Fatalf("long-poll: %+v %v", live, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the long-poll answered after %v", d)
	}
	idle, err := e.Poll(ctx, PollRequest{Shape: spec, Handle: live.Handle, Offset: live.Offset, Live: true, Wait: 300 * time.Millisecond})
	if err != nil || len(idle.Messages) != 0 || !idle.UpToDate || idle.Offset != live.Offset {
		t.Fatalf("timed-out long-poll: %+v %v", idle, err)
	}
	if _, err := e.Drop(ctx, live.Handle); err != nil {
		t.Fatal(err)
	}
	gone, err := e.Poll(ctx, PollRequest{Shape: spec, Handle: live.Handle, Offset: live.Offset, Live: true, Wait: time.Second})
	if err != nil || !gone.MustRefetch || gone.Handle == live.Handle || gone.Handle == "" {
		t.Fatalf("poll of a dropped shape: %+v %v", gone, err)
	}
	again, err := e.Poll(ctx, PollRequest{Shape: spec, Handle: gone.Handle, Offset: syncapi.OffsetBeginning})
	if err != nil || len(again.Messages) != 6 || !again.UpToDate {
		t.Fatalf("the new shape from its beginning: %d messages %+v %v", len(again.Messages), again.UpToDate, err)
	}
	// A handle is good only for its own shape: another shape's handle (someone
	// else's rows) gets a must-refetch with this shape's handle, and none of its rows.
	mine := syncapi.ShapeSpec{Table: "items", Where: "id = 6"}
	other, err := e.Poll(ctx, PollRequest{Shape: mine, Handle: gone.Handle, Offset: syncapi.OffsetBeginning})
	if err != nil || !other.MustRefetch || other.Handle == gone.Handle || len(other.Messages) != 0 {
		t.Fatalf("a poll with another shape's handle: %+v %v", other, err)
	}
}
