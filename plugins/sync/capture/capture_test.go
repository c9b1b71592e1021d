package capture

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/devpg"
	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const site = "site_cap"

// setup makes a database with the given DDL, a publication and slot over tables, and
// tears them down when the test ends (before the database is dropped).
func setup(t *testing.T, ddl string, tables ...string) (string, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	url := pool.Config().ConnString()
	if _, err := pool.Exec(ctx, ddl); err != nil {
		t.Fatal(err)
	}
	var idents []catalog.Ident
	for _, name := range tables {
		idents = append(idents, catalog.Ident{Schema: "public", Name: name})
	}
	if err := Setup(ctx, pool, site, idents); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := Teardown(context.Background(), pool, site); err != nil {
			t.Errorf("teardown: %v", err)
		}
	})
	return url, pool
}

func start(t *testing.T, url string, opts Options) *Stream {
	t.Helper()
	if opts.Slot == "" {
		opts.Slot, opts.Publication = site, site
	}
	s, err := Start(context.Background(), url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func next(t *testing.T, s *Stream) Txn {
	t.Helper()
	select {
	case txn, ok := <-s.Txns():
		if !ok {
			t.Fatalf("stream ended: %v", s.Err())
		}
		return txn
	case <-time.After(20 * time.Second):
		t.Fatal("no transaction within 20s")
	}
	return Txn{}
}

// none asserts nothing arrives for a while.
func none(t *testing.T, s *Stream, d time.Duration) {
	t.Helper()
	select {
	case txn, ok := <-s.Txns():
		if ok {
			t.Fatalf("unexpected transaction %d: %+v", txn.XID, txn.Changes)
		}
		t.Fatalf("stream ended: %v", s.Err())
	case <-time.After(d):
	}
}

// exec runs the statements in one transaction and returns its xid.
func exec(t *testing.T, pool *pgxpool.Pool, stmts ...string) uint32 {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var xid int64
	if err := tx.QueryRow(ctx, "SELECT txid_current()").Scan(&xid); err != nil {
		t.Fatal(err)
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return uint32(xid)
}

func str(s string) *string { return &s }

func checkValues(t *testing.T, what string, got map[string]*string, want map[string]*string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d columns %v, want %d", what, len(got), keys(got), len(want))
	}
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%s: column %s missing", what, k)
		case (g == nil) != (w == nil):
			t.Errorf("%s: column %s = %v, want %v", what, k, deref(g), deref(w))
		case g != nil && *g != *w:
			t.Errorf("%s: column %s = %q, want %q", what, k, *g, *w)
		}
	}
}

func keys(m map[string]*string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func deref(p *string) string {
	if p == nil {
		return "NULL"
	}
	return `"` + *p + `"`
}

func TestChangesArriveInCommitOrderWithTextValues(t *testing.T) {
	url, pool := setup(t, `CREATE TABLE items (id int PRIMARY KEY, n numeric, b bytea, s text, note text)`, "items")
	s := start(t, url, Options{})

	x1 := exec(t, pool,
		`INSERT INTO items VALUES (1, 12345.678900, '\x00ff10'::bytea, E'tab\there\nnew line', 'héllo ✓ 日本 🙂')`,
		`INSERT INTO items VALUES (2, NULL, NULL, NULL, NULL)`)
	// A rolled-back transaction never arrives.
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO items VALUES (99, 1, NULL, 'rolled back', NULL)`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	x2 := exec(t, pool, `UPDATE items SET n = -0.5, s = '' WHERE id = 2`)
	x3 := exec(t, pool, `DELETE FROM items WHERE id = 1`)

	t1 := next(t, s)
	if t1.XID != x1 || len(t1.Changes) != 2 {
		t.Fatalf("first txn: xid %d (want %d), %d changes", t1.XID, x1, len(t1.Changes))
	}
	c := t1.Changes[0]
	if c.Kind != Insert || c.Schema != "public" || c.Table != "items" || c.XID != x1 || c.CommitLSN != t1.CommitLSN {
		t.Errorf("insert change: %+v", c)
	}
	if strings.Join(c.Columns, ",") != "id,n,b,s,note" || strings.Join(c.Key, ",") != "id" {
		t.Errorf("columns %v key %v", c.Columns, c.Key)
	}
	checkValues(t, "insert 1", c.New, map[string]*string{
		"id": str("1"), "n": str("12345.678900"), "b": str(`\x00ff10`),
		"s": str("tab\there\nnew line"), "note": str("héllo ✓ 日本 🙂"),
	})
	if c.Old != nil {
		t.Errorf("insert has old values: %v", c.Old)
	}
	checkValues(t, "insert 2", t1.Changes[1].New, map[string]*string{"id": str("2"), "n": nil, "b": nil, "s": nil, "note": nil})

	t2 := next(t, s)
	if t2.XID != x2 || len(t2.Changes) != 1 || t2.Changes[0].Kind != Update {
		t.Fatalf("second txn: xid %d (want %d), %+v", t2.XID, x2, t2.Changes)
	}
	checkValues(t, "update", t2.Changes[0].New, map[string]*string{"id": str("2"), "n": str("-0.5"), "b": nil, "s": str(""), "note": nil})
	if t2.Changes[0].Old != nil {
		t.Errorf("update not touching the key has old values: %v", t2.Changes[0].Old)
	}

	t3 := next(t, s)
	if t3.XID != x3 || len(t3.Changes) != 1 || t3.Changes[0].Kind != Delete {
		t.Fatalf("third txn: xid %d (want %d), %+v", t3.XID, x3, t3.Changes)
	}
	// Default replica identity: the key only.
	checkValues(t, "delete", t3.Changes[0].Old, map[string]*string{"id": str("1")})

	if !(t1.CommitLSN < t1.EndLSN && t1.EndLSN <= t2.CommitLSN && t2.EndLSN <= t3.CommitLSN) {
		t.Errorf("positions out of order: %v/%v %v/%v %v/%v", t1.CommitLSN, t1.EndLSN, t2.CommitLSN, t2.EndLSN, t3.CommitLSN, t3.EndLSN)
	}
	none(t, s, 500*time.Millisecond)
}

func TestReplicaIdentityFullGivesOldValues(t *testing.T) {
	url, pool := setup(t, `CREATE TABLE acct (id int PRIMARY KEY, owner text, balance numeric, big text);
		ALTER TABLE acct REPLICA IDENTITY FULL;
		ALTER TABLE acct ALTER big SET STORAGE EXTERNAL;
		INSERT INTO acct VALUES (1, 'ann', 10, NULL)`, "acct")
	s := start(t, url, Options{})

	exec(t, pool, `UPDATE acct SET balance = 20 WHERE id = 1`)
	exec(t, pool, `DELETE FROM acct WHERE id = 1`)

	u := next(t, s).Changes[0]
	if u.Kind != Update {
		t.Fatalf("got %s", u.Kind)
	}
	checkValues(t, "update old", u.Old, map[string]*string{"id": str("1"), "owner": str("ann"), "balance": str("10"), "big": nil})
	checkValues(t, "update new", u.New, map[string]*string{"id": str("1"), "owner": str("ann"), "balance": str("20"), "big": nil})
	d := next(t, s).Changes[0]
	if d.Kind != Delete {
		t.Fatalf("got %s", d.Kind)
	}
	checkValues(t, "delete old", d.Old, map[string]*string{"id": str("1"), "owner": str("ann"), "balance": str("20"), "big": nil})
}

func TestUnchangedToastIsFlagged(t *testing.T) {
	url, pool := setup(t, `CREATE TABLE docs (id int PRIMARY KEY, title text, body text);
		ALTER TABLE docs ALTER body SET STORAGE EXTERNAL`, "docs")
	big := strings.Repeat("0123456789abcdef", 1000)
	exec(t, pool, `INSERT INTO docs VALUES (1, 'a', '`+big+`')`)
	s := start(t, url, Options{})
	// The insert made before Start still arrives (the slot predates it); skip it.
	if c := next(t, s).Changes[0]; c.Kind != Insert || c.New["body"] == nil || *c.New["body"] != big {
		t.Fatalf("insert: %s, body of %d chars", c.Kind, len(deref(c.New["body"])))
	}
	exec(t, pool, `UPDATE docs SET title = 'b' WHERE id = 1`)
	c := next(t, s).Changes[0]
	if strings.Join(c.Unchanged, ",") != "body" {
		t.Errorf("unchanged = %v, want [body]", c.Unchanged)
	}
	checkValues(t, "update new", c.New, map[string]*string{"id": str("1"), "title": str("b")})
}

func TestTruncateArrives(t *testing.T) {
	url, pool := setup(t, `CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY)`, "a", "b")
	s := start(t, url, Options{})
	xid := exec(t, pool, `INSERT INTO a VALUES (1)`, `TRUNCATE a, b`)
	txn := next(t, s)
	if txn.XID != xid || len(txn.Changes) != 2 {
		t.Fatalf("xid %d (want %d), changes %+v", txn.XID, xid, txn.Changes)
	}
	c := txn.Changes[1]
	if c.Kind != Truncate || c.XID != xid {
		t.Fatalf("second change %+v", c)
	}
	got := map[Table]bool{}
	for _, tb := range c.Tables {
		got[tb] = true
	}
	if len(c.Tables) != 2 || !got[Table{"public", "a"}] || !got[Table{"public", "b"}] {
		t.Errorf("truncated tables %v", c.Tables)
	}
}

func TestResumeFromAckNeitherLosesNorRepeats(t *testing.T) {
	url, pool := setup(t, `CREATE TABLE ev (id int PRIMARY KEY)`, "ev")
	s := start(t, url, Options{StandbyInterval: 100 * time.Millisecond})
	x1 := exec(t, pool, `INSERT INTO ev VALUES (1)`)
	x2 := exec(t, pool, `INSERT INTO ev VALUES (2)`)
	t1, t2 := next(t, s), next(t, s)
	if t1.XID != x1 || t2.XID != x2 {
		t.Fatalf("xids %d %d, want %d %d", t1.XID, t2.XID, x1, x2)
	}
	// Only the first is handled; the second must come again, the first must not.
	s.Ack(t1.EndLSN)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-s.Txns(); ok {
		t.Fatal("channel open after Close")
	}
	if err := s.Err(); err != nil {
		t.Fatalf("Err after Close: %v", err)
	}
	var flushed LSN
	if err := pool.QueryRow(context.Background(), "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1", site).Scan(&flushed); err != nil {
		t.Fatal(err)
	}
	if flushed != t1.EndLSN {
		t.Errorf("confirmed_flush_lsn %v after Close, want the acknowledged %v", flushed, t1.EndLSN)
	}
	x3 := exec(t, pool, `INSERT INTO ev VALUES (3)`)

	// Resume from the slot's own position (StartLSN 0).
	s2 := start(t, url, Options{})
	if got := next(t, s2); got.XID != x2 {
		t.Fatalf("after reconnect got xid %d, want %d (the unacknowledged one)", got.XID, x2)
	}
	got3 := next(t, s2)
	if got3.XID != x3 {
		t.Fatalf("then xid %d, want %d", got3.XID, x3)
	}
	s2.Ack(got3.EndLSN)
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}

	// Resume from an explicit acknowledged position: nothing is left.
	s3 := start(t, url, Options{StartLSN: got3.EndLSN})
	none(t, s3, time.Second)
	x4 := exec(t, pool, `INSERT INTO ev VALUES (4)`)
	if got := next(t, s3); got.XID != x4 {
		t.Fatalf("got xid %d, want %d", got.XID, x4)
	}
}

func TestStandbyTimerAdvancesIdleSlot(t *testing.T) {
	url, pool := setup(t, `CREATE TABLE watched (id int PRIMARY KEY); CREATE TABLE other (id int)`, "watched")
	ctx := context.Background()
	s := start(t, url, Options{StandbyInterval: 100 * time.Millisecond})
	// A burst on a table outside the publication: nothing to deliver, but the slot
	// must not keep the WAL.
	for i := 0; i < 20; i++ {
		exec(t, pool, `INSERT INTO other SELECT generate_series(1, 100)`)
	}
	var target LSN
	if err := pool.QueryRow(ctx, "SELECT pg_current_wal_lsn()").Scan(&target); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var flushed LSN
		if err := pool.QueryRow(ctx, "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1", site).Scan(&flushed); err != nil {
			t.Fatal(err)
		}
		if flushed >= target {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("confirmed_flush_lsn %v still below %v", flushed, target)
		}
		time.Sleep(100 * time.Millisecond)
	}
	none(t, s, 200*time.Millisecond)
}

func TestUnacknowledgedTransactionHoldsSlot(t *testing.T) {
	url, pool := setup(t, `CREATE TABLE watched (id int PRIMARY KEY); CREATE TABLE other (id int)`, "watched")
	ctx := context.Background()
	s := start(t, url, Options{StandbyInterval: 100 * time.Millisecond})
	exec(t, pool, `INSERT INTO watched VALUES (1)`)
	txn := next(t, s)
	exec(t, pool, `INSERT INTO other VALUES (1)`)
	time.Sleep(time.Second)
	var flushed LSN
	if err := pool.QueryRow(ctx, "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1", site).Scan(&flushed); err != nil {
		t.Fatal(err)
	}
	if flushed >= txn.EndLSN {
		t.Fatalf("confirmed_flush_lsn %v passed the unacknowledged transaction ending at %v", flushed, txn.EndLSN)
	}
	s.Ack(txn.EndLSN)
	deadline := time.Now().Add(20 * time.Second)
	for flushed < txn.EndLSN {
		if time.Now().After(deadline) {
			t.Fatalf("confirmed_flush_lsn %v never reached the acknowledged %v", flushed, txn.EndLSN)
		}
		time.Sleep(100 * time.Millisecond)
		if err := pool.QueryRow(ctx, "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1", site).Scan(&flushed); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSetupIsIdempotentAndTeardownDropsBoth(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	url := pool.Config().ConnString()
	if _, err := pool.Exec(ctx, `CREATE TABLE "Mixed Case" (id int PRIMARY KEY); CREATE TABLE plain (id int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Teardown(context.Background(), pool, site) })
	mixed := catalog.Ident{Schema: "public", Name: "Mixed Case"}
	plain := catalog.Ident{Schema: "public", Name: "plain"}
	if err := Setup(ctx, pool, site, []catalog.Ident{mixed}); err != nil {
		t.Fatal(err)
	}
	if err := Setup(ctx, pool, site, []catalog.Ident{mixed, plain}); err != nil {
		t.Fatalf("second Setup: %v", err)
	}
	var tables string
	if err := pool.QueryRow(ctx, "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_publication_tables WHERE pubname = $1", site).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != "Mixed Case,plain" {
		t.Errorf("publication tables %q", tables)
	}
	count := func(sql string) int {
		var n int
		if err := pool.QueryRow(ctx, sql, site).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	slots := "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND plugin = 'pgoutput'"
	pubs := "SELECT count(*) FROM pg_publication WHERE pubname = $1"
	if count(slots) != 1 || count(pubs) != 1 {
		t.Fatalf("slots %d, publications %d after Setup", count(slots), count(pubs))
	}
	// Teardown ends a stream still using the slot.
	s := start(t, url, Options{})
	if err := Teardown(ctx, pool, site); err != nil {
		t.Fatal(err)
	}
	if count(slots) != 0 || count(pubs) != 0 {
		t.Errorf("slots %d, publications %d after Teardown", count(slots), count(pubs))
	}
	if err := Teardown(ctx, pool, site); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
	select {
	case _, ok := <-s.Txns():
		if ok {
			t.Error("transaction after Teardown")
		}
		if s.Err() == nil {
			t.Error("stream ended by Teardown reports no error")
		}
	case <-time.After(20 * time.Second):
		t.Error("stream still running after Teardown")
	}
	if err := Setup(ctx, pool, "Bad-Name", nil); !errors.Is(err, ErrBadName) {
		t.Errorf("Setup with a bad name: %v", err)
	}
}

func TestCheck(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	if err := Check(ctx, pool); err != nil {
		t.Fatalf("Check on a logical cluster as superuser: %v", err)
	}

	// A role without REPLICATION.
	if _, err := pool.Exec(ctx, `DROP ROLE IF EXISTS capture_norepl; CREATE ROLE capture_norepl LOGIN NOREPLICATION`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), `DROP ROLE IF EXISTS capture_norepl`) })
	cfg, err := pgx.ParseConfig(pool.Config().ConnConfig.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	cfg.User = "capture_norepl"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = Check(ctx, conn)
	_ = conn.Close(ctx)
	var nr *NotReadyError
	if !errors.As(err, &nr) || len(nr.Problems) != 1 || !strings.Contains(nr.Problems[0], `ALTER ROLE "capture_norepl" REPLICATION`) {
		t.Errorf("Check as a role without REPLICATION: %v", err)
	}

	// A cluster with wal_level = replica.
	srv, err := devpg.Start(ctx, devpg.Options{Settings: map[string]string{"wal_level": "replica"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	conn, err = pgx.Connect(ctx, srv.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	err = Check(ctx, conn)
	if !errors.As(err, &nr) || len(nr.Problems) != 1 ||
		!strings.Contains(nr.Problems[0], `wal_level is "replica"`) ||
		!strings.Contains(nr.Error(), "set wal_level = logical in postgresql.conf and restart") {
		t.Errorf("Check on a wal_level=replica cluster: %v", err)
	}
}
