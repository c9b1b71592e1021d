package main_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/host/devpg"
	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/follow"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/mask"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// followSender starts a sending site on a database of its own (url, or a fresh one)
// whose follow slots are dropped when the test ends, after the site closed (a
// database with a replication slot cannot be dropped).
func followSender(t *testing.T, url string) *site {
	t.Helper()
	if url == "" {
		url = pgtest.NewDatabase(t)
	}
	t.Cleanup(func() { dropSlots(url) })
	return startSite(t, siteOptions{db: url})
}

// dropSlots drops the replication slots of the database at url, waiting a little
// for a walsender still ending to let go of them.
func dropSlots(url string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	for ctx.Err() == nil {
		var left int
		_ = conn.QueryRow(ctx, `SELECT count(*) FROM (SELECT CASE WHEN active THEN 1 ELSE (SELECT 0 FROM pg_drop_replication_slot(slot_name)) END
			FROM pg_replication_slots WHERE database = current_database()) s`).Scan(&left)
		var n int
		_ = conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = current_database()`).Scan(&n)
		if n == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// itemsTable is the followed table of these tests: n counts the updates of a row.
const itemsTable = `CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0, v text, at timestamptz NOT NULL DEFAULT now())`

// followWriter makes small transactions of inserts, updates (n = n + 1) and deletes
// on the sending database, counting what committed.
type followWriter struct {
	pool    *pgxpool.Pool
	nextID  atomic.Int64
	txns    atomic.Int64
	changes atomic.Int64
	updates atomic.Int64 // rows updated (each adds 1 to sum(n))
	stop    context.CancelFunc
	done    chan struct{}
	err     error
}

// newFollowWriter returns a writer whose inserts take ids above firstID.
func newFollowWriter(t *testing.T, db string, firstID int64) *followWriter {
	w := &followWriter{pool: testsupport.Pool(t, db)}
	w.nextID.Store(firstID)
	return w
}

// txn runs one transaction of 1 to 3 changes.
func (w *followWriter) txn(ctx context.Context, r *rand.Rand) error {
	tx, err := w.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	var changes, updates int64
	for range 1 + r.IntN(3) {
		var tag interface{ RowsAffected() int64 }
		switch k := r.IntN(10); {
		case k < 4:
			tag, err = tx.Exec(ctx, `INSERT INTO items (id, v) VALUES ($1::bigint, md5($1::bigint::text))`, w.nextID.Add(1))
		case k < 9:
			// The row with the next id at or above a random one: a few hot rows.
			tag, err = tx.Exec(ctx, `UPDATE items SET n = n + 1, v = md5(random()::text), at = clock_timestamp()
				WHERE id = (SELECT id FROM items WHERE id >= $1 ORDER BY id LIMIT 1)`, r.Int64N(w.nextID.Load()+1))
			if err == nil {
				updates += tag.RowsAffected()
			}
		default:
			tag, err = tx.Exec(ctx, `DELETE FROM items WHERE id = (SELECT id FROM items WHERE id >= $1 ORDER BY id LIMIT 1)`, r.Int64N(w.nextID.Load()+1))
		}
		if err != nil {
			return err
		}
		changes += tag.RowsAffected()
	}
	if changes == 0 {
		return nil // nothing written: no transaction for the follow either
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	w.txns.Add(1)
	w.changes.Add(changes)
	w.updates.Add(updates)
	return nil
}

// start writes perSecond transactions a second until stopped (or n transactions, n > 0).
func (w *followWriter) start(perSecond, n int) {
	ctx, cancel := context.WithCancel(context.Background())
	w.stop, w.done = cancel, make(chan struct{})
	go func() {
		defer close(w.done)
		r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for i := 0; n <= 0 || i < n; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for {
				err := w.txn(ctx, r)
				if err == nil || ctx.Err() != nil {
					break
				}
				var pgErr interface{ SQLState() string }
				if errors.As(err, &pgErr) && pgErr.SQLState() == "40P01" {
					continue
				}
				w.err = err
				return
			}
		}
	}()
}

// wait waits for the writer to finish (stopping it first when stop is true).
func (w *followWriter) wait(t *testing.T, stop bool) {
	t.Helper()
	if stop {
		w.stop()
	}
	<-w.done
	w.stop()
	if w.err != nil {
		t.Fatalf("writer: %v", w.err)
	}
}

// followStatus reads a receiving site's follow from its database.
func followStatus(t *testing.T, s *site, id string) (syncapi.FollowStatus, error) {
	t.Helper()
	store, err := follow.Open(context.Background(), s.pool)
	if err != nil {
		t.Fatal(err)
	}
	return store.Get(context.Background(), id)
}

// waitFollow waits up to d for the follow's status to satisfy ok.
func waitFollow(t *testing.T, s *site, id string, d time.Duration, ok func(syncapi.FollowStatus) bool) syncapi.FollowStatus {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st, err := followStatus(t, s, id)
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("follow %s: %+v (%v) not as expected within %s", id, st, err, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitSameTable waits up to d for b's table to equal a's.
func waitSameTable(t *testing.T, a, b *site, table, order string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if tableExists(t, b, table) && a.checksum(t, table, order) == b.checksum(t, table, order) {
			return
		}
		if time.Now().After(deadline) {
			var na, nb int64
			_ = a.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&na)
			_ = b.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&nb)
			t.Fatalf("%s: the receiver (%d rows) does not equal the sender (%d rows) after %s; rows that differ (sender | receiver): %s",
				table, nb, na, d, rowDiff(t, a, b, table, order))
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// rowDiff lists up to 10 rows of table that differ between a and b.
func rowDiff(t *testing.T, a, b *site, table, order string) string {
	t.Helper()
	rows := func(s *site) map[string]string {
		out := map[string]string{}
		r, err := s.pool.Query(context.Background(), "SELECT ("+order+")::text, t::text FROM "+table+" t")
		if err != nil {
			return out
		}
		defer r.Close()
		for r.Next() {
			var k, v string
			if r.Scan(&k, &v) == nil {
				out[k] = v
			}
		}
		return out
	}
	ra, rb := rows(a), rows(b)
	var diff []string
	for k, v := range ra {
		if rb[k] != v && len(diff) < 10 {
			diff = append(diff, v+" | "+rb[k])
		}
	}
	for k, v := range rb {
		if _, ok := ra[k]; !ok && len(diff) < 10 {
			diff = append(diff, " | "+v)
		}
	}
	return strings.Join(diff, "; ")
}

func tableExists(t *testing.T, s *site, table string) bool {
	t.Helper()
	var ok bool
	_ = s.pool.QueryRow(context.Background(), `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&ok)
	return ok
}

// sumN is sum(n) of items: every update made on the sender adds one.
func sumN(t *testing.T, s *site) int64 {
	t.Helper()
	var n int64
	if err := s.pool.QueryRow(context.Background(), `SELECT coalesce(sum(n), 0) FROM items`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// followRemote adds a on b as a remote followed with the token, and returns the
// follow's id on b.
func followRemote(t *testing.T, b *site, url, token string, tables []string, strategy string) string {
	t.Helper()
	var r struct {
		ID string `json:"id"`
	}
	if err := b.call(t, "add_remote", map[string]any{"name": "follow " + strings.Join(tables, ","), "url": url, "token": token, "tables": tables, "strategy": strategy}, &r); err != nil {
		t.Fatal(err)
	}
	if err := b.call(t, "update_remote", map[string]any{"id": r.ID, "tables": tables, "strategy": strategy, "follow": true}, nil); err != nil {
		t.Fatal(err)
	}
	return "remote:" + r.ID
}

// restartedPlugin SIGKILLs a site's Sync plugin and waits for the host to run a new one.
func killPlugin(t *testing.T, s *site) {
	t.Helper()
	st, _ := s.kit.Module("sync")
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		now, _ := s.kit.Module("sync")
		if now.State == host.StateRunning && now.PID != st.PID {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sync plugin not restarted: %+v", now)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exactlyOnce runs the writer for n transactions while disrupt runs, then checks
// the receiver caught up and applied exactly those transactions and changes (the
// follow's counters move in the transaction that applies, so a replay applied twice
// or a transaction lost shows there), with no conflict and the updates all counted.
func exactlyOnce(t *testing.T, a, b *site, id string, w *followWriter, n int, disrupt func()) {
	t.Helper()
	before := waitFollow(t, b, id, time.Minute, func(s syncapi.FollowStatus) bool { return s.State == syncapi.FollowFollowing })
	txns0, changes0 := w.txns.Load(), w.changes.Load()
	w.start(100, n)
	disrupt()
	w.wait(t, false)
	// Minutes: a killed plugin restarts and the follow reconnects with backoff.
	waitSameTable(t, a, b, "items", "id", 3*time.Minute)
	txns, changes := w.txns.Load()-txns0, w.changes.Load()-changes0
	st := waitFollow(t, b, id, 10*time.Second, func(s syncapi.FollowStatus) bool {
		return s.Transactions-before.Transactions >= txns
	})
	time.Sleep(300 * time.Millisecond)
	if st2, _ := followStatus(t, b, id); st2.Transactions != st.Transactions {
		st = st2
	}
	if st.Transactions-before.Transactions != txns || st.Changes-before.Changes != changes || st.Conflicts != 0 {
		t.Fatalf("the writer committed %d transactions of %d changes; the follow applied %d of %d (conflicts %d)",
			txns, changes, st.Transactions-before.Transactions, st.Changes-before.Changes, st.Conflicts)
	}
	if got, want := sumN(t, b), sumN(t, a); got != want {
		t.Fatalf("sum(n): receiver %d, sender %d", got, want)
	}
}

// A receiving site follows a sender through a remote whose schedule is follow (the
// plugin runs it): writes made during the first copy and after arrive exactly once,
// through a SIGKILL of the receiving plugin, one of the sending plugin, and a cut
// socket; both sides record the follow in their transfer history with its lag.
func TestFollowRemoteThroughCrashesAndCuts(t *testing.T) {
	t.Setenv("FIBERKIT_SECRET_KEY", "follow-test-key-0123456789")
	a := followSender(t, "")
	b := startSite(t, siteOptions{})
	a.exec(t, itemsTable)
	a.exec(t, `INSERT INTO items (id, v) SELECT i, md5(i::text) FROM generate_series(1, 30000) i`)
	c := a.newConnection(t, connection.Limits{Follow: true}, true)
	proxy := testsupport.NewProxy(t, a.url, testsupport.ProxyOptions{})
	w := newFollowWriter(t, a.db, 30000)
	// Writes before, during and after the first copy.
	w.start(150, 0)
	time.Sleep(300 * time.Millisecond)
	id := followRemote(t, b, proxy.URL(), c.Token, []string{"items"}, "skip")
	waitFollow(t, b, id, 60*time.Second, func(s syncapi.FollowStatus) bool { return s.State == syncapi.FollowFollowing })
	time.Sleep(2 * time.Second)
	w.wait(t, true)
	waitSameTable(t, a, b, "items", "id", 3*time.Minute)
	if got, want := sumN(t, b), sumN(t, a); got != want {
		t.Fatalf("sum(n): receiver %d, sender %d", got, want)
	}

	t.Run("receiver plugin killed", func(t *testing.T) {
		exactlyOnce(t, a, b, id, w, 300, func() {
			time.Sleep(700 * time.Millisecond)
			killPlugin(t, b)
		})
	})
	t.Run("sender plugin killed", func(t *testing.T) {
		exactlyOnce(t, a, b, id, w, 300, func() {
			time.Sleep(700 * time.Millisecond)
			killPlugin(t, a)
		})
	})
	t.Run("socket cut", func(t *testing.T) {
		exactlyOnce(t, a, b, id, w, 300, func() {
			time.Sleep(700 * time.Millisecond)
			if n := proxy.Cut(); n == 0 {
				t.Error("no connection to cut")
			}
		})
	})
	t.Run("changes larger than a frame", func(t *testing.T) {
		// One transaction: an update and an insert whose values are megabytes (with
		// multi-byte characters and what JSON escapes), beside a small change. They
		// come in pieces and are applied whole, once.
		before := waitFollow(t, b, id, 10*time.Second, func(s syncapi.FollowStatus) bool { return s.State == syncapi.FollowFollowing })
		big := strings.Repeat("ünïcødé <&> \"q\"\n\t", 200_000)
		ctx := context.Background()
		tx, err := a.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			`INSERT INTO items (id, v) VALUES (5, $1 || 'u') ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v`,
			`INSERT INTO items (id, v) VALUES (900001, $1 || 'i')`,
		} {
			if _, err := tx.Exec(ctx, q, big); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO items (id, v) VALUES (900002, 'small')`); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		st := waitFollow(t, b, id, 60*time.Second, func(s syncapi.FollowStatus) bool { return s.Transactions > before.Transactions })
		if st.Transactions != before.Transactions+1 || st.Changes != before.Changes+3 || st.Conflicts != 0 || st.State != syncapi.FollowFollowing {
			t.Fatalf("before %+v, after %+v: want one transaction of 3 changes more, still following", before, st)
		}
		for _, row := range []struct {
			id   int
			want string
		}{{5, big + "u"}, {900001, big + "i"}} {
			var got string
			if err := b.pool.QueryRow(ctx, `SELECT v FROM items WHERE id = $1`, row.id).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != row.want {
				t.Fatalf("item %d: %d bytes on the receiver, want %d", row.id, len(got), len(row.want))
			}
		}
		waitSameTable(t, a, b, "items", "id", 3*time.Minute)
	})
	t.Run("history", func(t *testing.T) {
		// Lag: with the writer going, the receiver's entry shows some, and it is small.
		w.start(100, 0)
		defer w.wait(t, true)
		var got []syncapi.Transfer
		deadline := time.Now().Add(15 * time.Second)
		for {
			if err := b.call(t, "transfer_history", map[string]any{"direction": "follow"}, &got); err != nil {
				t.Fatal(err)
			}
			if len(got) > 0 && got[0].LagBytes > 0 && got[0].Rows > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no lag recorded while changes flow: %+v", got)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got[0].Table != "items" || got[0].Status != "running" || got[0].LagSeconds > 10 {
			t.Fatalf("receiver's follow entry: %+v", got[0])
		}
		// The receiving plugin was killed once: its entry of then is interrupted, and
		// only the follow running now is running.
		onlyOneRunning(t, "receiver", got, 2)
		var sent []syncapi.Transfer
		deadline = time.Now().Add(10 * time.Second)
		for {
			if err := a.call(t, "transfer_history", map[string]any{"direction": "follower"}, &sent); err != nil {
				t.Fatal(err)
			}
			// (Its lag is that of transactions sent and not yet acknowledged, mostly
			// none at the moment it is written: not asserted.)
			if len(sent) > 0 && sent[0].Rows > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("sender's follower history: %+v", sent)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if sent[0].Table != "items" || !strings.HasPrefix(sent[0].StartedBy, "connection:"+c.ID) {
			t.Fatalf("sender's follower entry: %+v", sent[0])
		}
		// A follower entry per connection of the receiver (it reconnected after each
		// disruption); the one the killed sending plugin left is interrupted.
		onlyOneRunning(t, "sender", sent, 4)
	})
}

// onlyOneRunning fails unless the newest of at least n follow entries is the one
// running and one other was interrupted.
func onlyOneRunning(t *testing.T, side string, entries []syncapi.Transfer, n int) {
	t.Helper()
	running, interrupted := 0, 0
	for _, e := range entries {
		switch e.Status {
		case "running":
			running++
		case "interrupted":
			interrupted++
		}
	}
	if len(entries) < n || running != 1 || entries[0].Status != "running" || interrupted != 1 {
		t.Fatalf("%s: %d follow entries, %d running, %d interrupted, want ≥ %d, the newest running and one interrupted: %+v", side, len(entries), running, interrupted, n, entries)
	}
}

// Local edits on the receiver meet the sender's changes; each follow resolves them
// with its strategy: skip keeps the local row, overwrite takes the sender's, merge
// keeps the columns edited here and takes the others (three-way).
func TestFollowConflictsResolvedPerStrategy(t *testing.T) {
	t.Setenv("FIBERKIT_SECRET_KEY", "follow-test-key-0123456789")
	a := followSender(t, "")
	b := startSite(t, siteOptions{})
	strategies := []string{"skip", "overwrite", "merge"}
	ids := map[string]string{}
	for _, st := range strategies {
		tbl := "c_" + st
		a.exec(t, `CREATE TABLE `+tbl+` (id int PRIMARY KEY, x text, y text)`)
		a.exec(t, `INSERT INTO `+tbl+` VALUES (1, 'x1', 'y1'), (2, 'x2', 'y2'), (3, 'x3', 'y3')`)
		c := a.newConnection(t, connection.Limits{Follow: true}, true)
		ids[st] = followRemote(t, b, a.url, c.Token, []string{tbl}, st)
	}
	for _, st := range strategies {
		waitFollow(t, b, ids[st], 60*time.Second, func(s syncapi.FollowStatus) bool { return s.State == syncapi.FollowFollowing })
		waitSameTable(t, a, b, "c_"+st, "id", time.Minute)
	}
	for _, st := range strategies {
		tbl := "c_" + st
		// Local edits: row 1 changed in x, row 2 deleted, row 3 changed, row 4 added.
		b.exec(t, `UPDATE `+tbl+` SET x = 'local1' WHERE id = 1; DELETE FROM `+tbl+` WHERE id = 2;
			UPDATE `+tbl+` SET x = 'local3' WHERE id = 3; INSERT INTO `+tbl+` VALUES (4, 'local4', 'localy4')`)
		// The sender's: y of row 1 and 2 updated, row 3 deleted, row 4 inserted with y NULL;
		// then row 5, to know the rest arrived.
		a.exec(t, `UPDATE `+tbl+` SET y = 'sender1' WHERE id = 1; UPDATE `+tbl+` SET y = 'sender2' WHERE id = 2;
			DELETE FROM `+tbl+` WHERE id = 3; INSERT INTO `+tbl+` VALUES (4, 'sender4', NULL)`)
		a.exec(t, `INSERT INTO `+tbl+` VALUES (5, 'x5', 'y5')`)
	}
	want := map[string]string{
		"skip":      "1 local1 y1|3 local3 y3|4 local4 localy4|5 x5 y5",
		"overwrite": "1 x1 sender1|2 x2 sender2|4 sender4 NULL|5 x5 y5",
		"merge":     "1 local1 sender1|3 local3 y3|4 sender4 localy4|5 x5 y5",
	}
	for _, st := range strategies {
		tbl := "c_" + st
		fs := waitFollow(t, b, ids[st], 20*time.Second, func(s syncapi.FollowStatus) bool { return s.Changes >= 5 })
		var got string
		if err := b.pool.QueryRow(context.Background(), `SELECT string_agg(concat_ws(' ', id, coalesce(x, 'NULL'), coalesce(y, 'NULL')), '|' ORDER BY id) FROM `+tbl).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want[st] {
			t.Errorf("%s: rows %q, want %q", st, got, want[st])
		}
		if fs.Conflicts != 4 {
			t.Errorf("%s: %d conflicts, want 4 (%+v)", st, fs.Conflicts, fs)
		}
	}
}

// followCLI runs fiberkit-pull -follow in the background; kill stops it at the end.
type followCLI struct {
	cmd  *exec.Cmd
	out  *testsupport.LogBuffer
	done chan struct{}
	code int
}

func startFollowCLI(t *testing.T, args ...string) *followCLI {
	t.Helper()
	f := &followCLI{cmd: exec.Command(testsupport.Binary(t, pullPackage), append([]string{"-follow"}, args...)...), out: &testsupport.LogBuffer{}, done: make(chan struct{})}
	f.cmd.Stdout, f.cmd.Stderr = f.out, f.out
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := f.cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			f.code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				f.code = -int(ws.Signal())
			}
		}
		close(f.done)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("fiberkit-pull -follow:\n%s", f.out.String())
		}
		_ = f.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-f.done:
		case <-time.After(10 * time.Second):
			_ = f.cmd.Process.Kill()
			<-f.done
		}
	})
	return f
}

// exit waits up to d for the command to end and returns its exit code.
func (f *followCLI) exit(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-f.done:
		return f.code
	case <-time.After(d):
		t.Fatalf("fiberkit-pull -follow still running after %s:\n%s", d, f.out.String())
		return 0
	}
}

// receiverDB is a database the command-line receiver writes to, as a site the
// helpers can read (pool and db only).
func receiverDB(t *testing.T) *site {
	db := pgtest.NewDatabase(t)
	return &site{db: db, pool: testsupport.Pool(t, db)}
}

// fiberkit-pull -follow: a SIGKILLed command rerun resumes exactly where it stopped,
// the connection's rate slows the follow without losing a change, and suspending or
// revoking the connection ends the command as refused (exit 3). A connection without
// the permission, a code and hostile table names are refused.
func TestFollowCommandLine(t *testing.T) {
	a := followSender(t, "")
	a.exec(t, itemsTable)
	a.exec(t, `INSERT INTO items (id, v) SELECT i, md5(i::text) FROM generate_series(1, 2000) i;
		CREATE TABLE hidden (id int PRIMARY KEY, secret text); INSERT INTO hidden VALUES (1, 'top secret');
		CREATE TABLE parted (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
		CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (0) TO (100);
		CREATE TABLE parted_secret PARTITION OF parted FOR VALUES FROM (100) TO (200);
		CREATE TABLE parent (id int PRIMARY KEY, v text); CREATE TABLE child (extra text) INHERITS (parent)`)
	w := newFollowWriter(t, a.db, 2000)

	t.Run("refused", func(t *testing.T) {
		r := receiverDB(t)
		no := a.newConnection(t, connection.Limits{}, true)
		f := startFollowCLI(t, "-url", a.url, "-token", no.Token, "-db", r.db, "-tables", "items", "-create-missing")
		if code := f.exit(t, 30*time.Second); code != 3 || !strings.Contains(f.out.String(), wire.ErrFollowNotAllowed) || !strings.Contains(f.out.String(), "may not follow") {
			t.Fatalf("a connection without follow: exit %d\n%s", code, f.out.String())
		}
		if code, out, _ := runPull(t, "-follow", "-url", a.url, "-code", a.newCode(t).Code, "-db", r.db); code != 2 || !strings.Contains(out, "-follow needs -token") {
			t.Fatalf("-follow with a code: exit %d\n%s", code, out)
		}
		// On the wire: a code's connection may not follow.
		cl := a.connect(t)
		defer cl.Close()
		if _, err := cl.RequestFollow(context.Background(), []string{"items"}, ""); remoteCode(err) != wire.ErrFollowNotAllowed {
			t.Fatalf("request:follow with a code: %v", err)
		}
		// Hostile names on a connection that may follow: excluded, the kit's own,
		// another schema's, malformed.
		yes := a.newConnection(t, connection.Limits{Follow: true, ExcludedTables: []string{"hidden"}}, true)
		for _, tbl := range []string{"hidden", "fiberkit_sync_connections", "pg_catalog.pg_authid", "items; DROP TABLE items", `items"--`, "nope"} {
			tc, err := dialToken(t, a, yes.Token)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tc.RequestFollow(context.Background(), []string{tbl}, "")
			if code := remoteCode(err); code != wire.ErrUnknownTable && code != "table_not_allowed" && code != wire.ErrBadRequest {
				t.Errorf("follow %q: %v (code %q)", tbl, err, code)
			}
			tc.Close()
		}
		// A partitioned table with a partition the connection may not read (its
		// changes would come under the root's name), an inheritance parent (its
		// children's would not come at all), a table outside the connection's
		// follow tables.
		part := a.newConnection(t, connection.Limits{Follow: true, ExcludedTables: []string{"parted_secret"}}, true)
		only := a.newConnection(t, connection.Limits{Follow: true, FollowTables: []string{"parted"}}, true)
		for _, c := range []struct {
			token, table, code, msg string
		}{
			{part.Token, "parted", wire.ErrUnknownTable, "may not read"},
			{yes.Token, "parent", wire.ErrUnknownTable, "inheritance children"},
			{only.Token, "items", wire.ErrFollowNotAllowed, "may follow parted only"},
		} {
			tc, err := dialToken(t, a, c.token)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tc.RequestFollow(context.Background(), []string{c.table}, "")
			if remoteCode(err) != c.code || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("follow %q: %v, want %s saying %q", c.table, err, c.code, c.msg)
			}
			tc.Close()
		}
		var slots int
		if err := a.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_replication_slots WHERE database = current_database()`).Scan(&slots); err != nil || slots != 0 {
			t.Fatalf("%d slots after the refusals (%v)", slots, err)
		}
		testsupport.Exec(t, a.pool, `SELECT 1 FROM items LIMIT 1`)
	})

	t.Run("killed and rerun", func(t *testing.T) {
		r := receiverDB(t)
		c := a.newConnection(t, connection.Limits{Follow: true}, true)
		args := []string{"-url", a.url, "-token", c.Token, "-db", r.db, "-tables", "items", "-create-missing"}
		w.start(100, 0)
		f := startFollowCLI(t, args...)
		waitFollow(t, r, a.url, 60*time.Second, func(s syncapi.FollowStatus) bool { return s.State == syncapi.FollowFollowing })
		w.wait(t, true)
		waitSameTable(t, a, r, "items", "id", 3*time.Minute)
		exactlyOnce(t, a, r, a.url, w, 200, func() {
			time.Sleep(800 * time.Millisecond)
			_ = f.cmd.Process.Kill()
			if code := f.exit(t, 10*time.Second); code != -int(syscall.SIGKILL) {
				t.Errorf("killed command: exit %d", code)
			}
			time.Sleep(300 * time.Millisecond)
			f = startFollowCLI(t, args...)
		})
		if strings.Contains(f.out.String(), "rows") && strings.Contains(f.out.String(), "created") {
			t.Errorf("the rerun copied the table again:\n%s", f.out.String())
		}
		// Suspending the connection ends the follow: refused, exit 3.
		a.setStatus(t, c.ID, "suspended")
		if code := f.exit(t, 30*time.Second); code != 3 || !strings.Contains(f.out.String(), "connection_inactive") {
			t.Fatalf("suspended connection: exit %d\n%s", code, f.out.String())
		}
		if st, _ := followStatus(t, r, a.url); st.State != syncapi.FollowFailed || !strings.Contains(st.Error, "refused") {
			t.Fatalf("follow after the suspension: %+v", st)
		}
	})

	t.Run("rate limited then revoked", func(t *testing.T) {
		r := receiverDB(t)
		const rate = 100
		c := a.newConnection(t, connection.Limits{Follow: true, FollowChangesPerSecond: rate}, true)
		f := startFollowCLI(t, "-url", a.url, "-token", c.Token, "-db", r.db, "-tables", "items", "-create-missing")
		before := waitFollow(t, r, a.url, 60*time.Second, func(s syncapi.FollowStatus) bool { return s.State == syncapi.FollowFollowing })
		waitSameTable(t, a, r, "items", "id", 3*time.Minute)
		changes0 := w.changes.Load()
		began := time.Now()
		w.start(200, 200) // ~400 changes in ~1 s, four times the rate
		w.wait(t, false)
		changes := w.changes.Load() - changes0
		waitSameTable(t, a, r, "items", "id", 3*time.Minute)
		took := time.Since(began)
		if min := time.Duration(float64(changes)/rate*float64(time.Second)) - 1500*time.Millisecond; took < min {
			t.Fatalf("%d changes at %d a second arrived in %s", changes, rate, took)
		}
		st := waitFollow(t, r, a.url, 10*time.Second, func(s syncapi.FollowStatus) bool { return s.Changes-before.Changes >= changes })
		if st.Changes-before.Changes != changes {
			t.Fatalf("%d changes written, %d applied", changes, st.Changes-before.Changes)
		}
		a.setStatus(t, c.ID, "revoked")
		if code := f.exit(t, 30*time.Second); code != 3 {
			t.Fatalf("revoked connection: exit %d\n%s", code, f.out.String())
		}
	})
}

// The sending site's PostgreSQL restarts mid-follow: the follow recovers and every
// change arrives once.
func TestFollowSenderDatabaseRestart(t *testing.T) {
	t.Setenv("FIBERKIT_SECRET_KEY", "follow-test-key-0123456789")
	ctx := context.Background()
	// Not t.TempDir: the cluster may run as another user, who must reach it.
	dir, err := os.MkdirTemp("", "fiberkit-follow-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	srv, err := devpg.Start(ctx, devpg.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	url, err := srv.CreateDatabase(ctx, "sender")
	if err != nil {
		t.Fatal(err)
	}
	a := startSite(t, siteOptions{db: url})
	b := startSite(t, siteOptions{})
	a.exec(t, itemsTable)
	a.exec(t, `INSERT INTO items (id, v) SELECT i, md5(i::text) FROM generate_series(1, 5000) i`)
	c := a.newConnection(t, connection.Limits{Follow: true}, true)
	id := followRemote(t, b, a.url, c.Token, []string{"items"}, "overwrite")
	waitFollow(t, b, id, 60*time.Second, func(s syncapi.FollowStatus) bool { return s.State == syncapi.FollowFollowing })
	w := newFollowWriter(t, url, 5000)
	w.start(100, 100)
	w.wait(t, false)
	waitSameTable(t, a, b, "items", "id", 3*time.Minute)
	before, _ := followStatus(t, b, id)
	txns0, changes0 := w.txns.Load(), w.changes.Load()
	w.start(100, 100)
	w.wait(t, false)
	port := srv.Port()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	// The same port (the sites' settings name it): something else may have taken
	// it for a moment while the cluster was down.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		if srv, err = devpg.Start(ctx, devpg.Options{Dir: dir, Port: port}); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	w.pool.Reset()
	w.start(100, 100)
	w.wait(t, false)
	// Minutes: a killed plugin restarts and the follow reconnects with backoff.
	waitSameTable(t, a, b, "items", "id", 3*time.Minute)
	txns, changes := w.txns.Load()-txns0, w.changes.Load()-changes0
	st := waitFollow(t, b, id, 20*time.Second, func(s syncapi.FollowStatus) bool { return s.Transactions-before.Transactions >= txns })
	if st.Transactions-before.Transactions != txns || st.Changes-before.Changes != changes || st.State != syncapi.FollowFollowing {
		t.Fatalf("%d transactions of %d changes written; the follow applied %d of %d: %+v", txns, changes,
			st.Transactions-before.Transactions, st.Changes-before.Changes, st)
	}
}

// A follow's changes are masked as its copy is: through a proxy that keeps every
// byte, no original value of a masked column (nor a real hashed key) crosses in
// the first copy or in the follow:txn frames of the updates, deletes and inserts
// after it, and the receiver ends holding exactly the masked rows, orders still
// joining customers on the hashed key.
func TestFollowMasksChanges(t *testing.T) {
	ctx := context.Background()
	a := followSender(t, "")
	maskedShop(t, a)
	rules, err := mask.Parse(`customers.id: hash, customers.email: fake email, customers.name: fake name, customers.phone: fake phone, orders.customer_id: hash`)
	if err != nil {
		t.Fatal(err)
	}
	c := a.newConnection(t, connection.Limits{Follow: true, Masks: rules}, true)
	applied := mask.Merge(mask.Set{{Table: "customers", Column: "password_hash", Kind: "fixed", Value: "redacted"}}, rules)
	capt := testsupport.NewProxy(t, a.url, testsupport.ProxyOptions{Capture: true})
	b := receiverDB(t)
	store, err := follow.Open(ctx, b.pool)
	if err != nil {
		t.Fatal(err)
	}
	fctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- follow.Run(fctx, b.pool, store, follow.RunOptions{
			Follow: follow.Follow{ID: "masked", Peer: a.url, Tables: []string{"customers", "orders"}, Strategy: importer.Overwrite},
			Connect: func(ctx context.Context) (*client.Client, error) {
				return client.Connect(ctx, capt.URL(), "", client.Options{Token: c.Token})
			},
			Copy: func(ctx context.Context, cl *client.Client, tables []string) error {
				_, err := cl.TransferAll(ctx, b.pool, client.TransferAllOptions{Tables: tables, Strategy: importer.Overwrite,
					TransferOptions: client.TransferOptions{CreateMissing: true, Compression: wire.CompressionNone}})
				return err
			},
		})
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("follow: %v", err)
		}
	}()
	waitFollow(t, b, "masked", time.Minute, func(s syncapi.FollowStatus) bool { return s.State == syncapi.FollowFollowing })
	copied := len(capt.Captured())

	// Changes with new originals of their own, keeping 40 customers and 120 orders.
	a.exec(t, `UPDATE customers SET email = 'zq-mail-upd' || id || '@origin.test', name = 'Zqname-upd' || id, phone = '+7 (912) 55-999',
			password_hash = 'zqhash$upd' WHERE id % 3 = 0;
		DELETE FROM orders WHERE id = 8800001;
		INSERT INTO orders VALUES (8800999, 7700005, 3, 'plain-memo-new');
		UPDATE orders SET customer_id = 7700017 WHERE id = 8800002`)
	var changes int64 = 13 + 3 // 13 customers updated, an order deleted, inserted, updated
	waitFollow(t, b, "masked", time.Minute, func(s syncapi.FollowStatus) bool { return s.Changes >= changes })
	all := capt.Captured()
	if len(all) <= copied || !bytes.Contains(all[copied:], []byte(wire.FollowTxn)) {
		t.Fatalf("no follow:txn frames captured after the copy (%d → %d bytes)", copied, len(all))
	}
	noLeak(t, "copy and follow", all)
	for _, o := range [][]byte{[]byte("zq-mail-upd"), []byte("Zqname-upd"), []byte("zqhash$upd"), []byte("+7 (912) 55-999")} {
		if bytes.Contains(all, o) {
			t.Errorf("an updated original %q crossed the wire", o)
		}
	}
	expectMasked(t, a, b, applied)

	// The connection's rules change under the running follow: it ends (what the
	// receiver holds was masked otherwise), the sender drops its slot, and the
	// receiver copies again under the new rules — notes now masked too — and goes
	// on following.
	rules = append(rules, mask.Rule{Table: "customers", Column: "note", Kind: "fixed", Value: "hidden-note"})
	if err := a.call(t, "set_connection_limits", map[string]any{"id": c.ID, "limits": connection.Limits{Follow: true, Masks: rules}}, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var plain int
		if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM customers WHERE note <> 'hidden-note'`).Scan(&plain); err != nil {
			t.Fatal(err)
		}
		if plain == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d customers keep their unmasked note a minute after the rules changed", plain)
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitFollow(t, b, "masked", time.Minute, func(s syncapi.FollowStatus) bool { return s.State == syncapi.FollowFollowing })
	a.exec(t, `UPDATE customers SET note = 'plain-note-after' WHERE id = 7700003`)
	time.Sleep(2 * time.Second)
	if n := testsupport.Count(t, b.pool, `SELECT count(*) FROM customers WHERE note <> 'hidden-note'`); n != 0 {
		t.Fatalf("after the new rules, %d customers got an unmasked note", n)
	}
	if bytes.Contains(capt.Captured(), []byte("plain-note-after")) {
		t.Fatal("a note changed after the new rules crossed the wire unmasked")
	}
}

// A follow takes its changes from the connection's total records: once the cap is
// reached the sender ends it (record_limit) and the receiver stops, refused, with
// no change beyond the cap applied.
func TestFollowStopsAtTheRecordsCap(t *testing.T) {
	ctx := context.Background()
	a := followSender(t, "")
	a.exec(t, itemsTable)
	a.exec(t, `INSERT INTO items (id, v) SELECT i, 'v' || i FROM generate_series(1, 10) i`)
	c := a.newConnection(t, connection.Limits{Follow: true, MaxRecords: 15}, true)
	b := receiverDB(t)
	store, err := follow.Open(ctx, b.pool)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- follow.Run(ctx, b.pool, store, follow.RunOptions{
			Follow: follow.Follow{ID: "capped", Peer: a.url, Tables: []string{"items"}, Strategy: importer.Overwrite},
			Connect: func(ctx context.Context) (*client.Client, error) {
				return client.Connect(ctx, a.url, "", client.Options{Token: c.Token})
			},
			Copy: func(ctx context.Context, cl *client.Client, tables []string) error {
				_, err := cl.TransferAll(ctx, b.pool, client.TransferAllOptions{Tables: tables, TransferOptions: client.TransferOptions{CreateMissing: true}})
				return err
			},
		})
	}()
	waitFollow(t, b, "capped", time.Minute, func(s syncapi.FollowStatus) bool { return s.State == syncapi.FollowFollowing })
	for i := 11; i <= 20; i++ { // one change a transaction: 5 fit under the cap
		a.exec(t, fmt.Sprintf(`INSERT INTO items (id, v) VALUES (%d, 'late')`, i))
	}
	select {
	case err := <-done:
		if !errors.Is(err, follow.ErrRefused) || !strings.Contains(err.Error(), "record_limit") {
			t.Fatalf("the follow ended with %v, want refused with record_limit", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the follow went on past its connection's records cap")
	}
	if n := testsupport.Count(t, b.pool, `SELECT count(*) FROM items`); n != 15 {
		t.Fatalf("%d rows on the receiver, want the 10 copied and the 5 the cap allowed", n)
	}
	if st, _ := followStatus(t, b, "capped"); st.State != syncapi.FollowFailed || !strings.Contains(st.Error, "record_limit") {
		t.Fatalf("follow status %+v", st)
	}
}
