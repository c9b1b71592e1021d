package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/sdk"
)

// liveSite starts a site with live sync on (turned off again, slot dropped, at the
// end) and waits until its replica captures.
func liveSite(t *testing.T, o siteOptions) *site {
	t.Helper()
	s := startSite(t, o)
	s.liveOffAtEnd(t)
	s.setLive(t, true)
	s.waitLive(t, true)
	return s
}

// waitLive waits until the site's replica is (or is not) the capturing one.
func (s *site) waitLive(t *testing.T, capturing bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var st syncapi.LiveStatus
		err := s.call(t, syncapi.OpLiveStatus, struct{}{}, &st)
		if err == nil && st.Enabled && st.Capturing == capturing {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("live status %+v %v, want capturing %v", st, err, capturing)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kitStream is a shape stream the host app opened with Kit.CallStream.
type kitStream struct {
	msgs chan syncapi.StreamMessage
	errs chan error
	s    *host.CallStream
}

func (s *site) stream(t *testing.T, req syncapi.StreamRequest) *kitStream {
	t.Helper()
	payload, _ := json.Marshal(req)
	cs, err := s.kit.CallStream(context.Background(), "admin", "sync", syncapi.OpStream, payload)
	if err != nil {
		t.Fatal(err)
	}
	k := &kitStream{msgs: make(chan syncapi.StreamMessage, 10000), errs: make(chan error, 1), s: cs}
	go func() {
		for {
			b, err := cs.Recv()
			if err != nil {
				k.errs <- err
				return
			}
			var m syncapi.StreamMessage
			if err := json.Unmarshal(b, &m); err != nil {
				k.errs <- err
				return
			}
			k.msgs <- m
		}
	}()
	t.Cleanup(cs.Close)
	return k
}

// until collects messages up to the first that satisfies stop.
func (k *kitStream) until(t *testing.T, stop func(syncapi.StreamMessage) bool) ([]syncapi.StreamMessage, error) {
	t.Helper()
	var got []syncapi.StreamMessage
	deadline := time.After(30 * time.Second)
	for {
		select {
		case m := <-k.msgs:
			got = append(got, m)
			if stop(m) {
				return got, nil
			}
		case err := <-k.errs:
			// Messages that came before the end may still wait (select picks
			// among ready cases at random).
			for len(k.msgs) > 0 {
				m := <-k.msgs
				got = append(got, m)
				if stop(m) {
					return got, nil
				}
			}
			return got, err
		case <-deadline:
			t.Fatalf("not there within 30 s; got %d messages", len(got))
		}
	}
}

func isUpToDate(m syncapi.StreamMessage) bool {
	return m.Message.Headers.Control == syncapi.ControlUpToDate
}

func keyIs(id string) func(syncapi.StreamMessage) bool {
	return func(m syncapi.StreamMessage) bool { return strings.HasSuffix(m.Message.Key, `/"`+id+`"`) }
}

// keys lists the row messages' operation and key.
func keys(ms []syncapi.StreamMessage) []string {
	var out []string
	for _, m := range ms {
		if op := m.Message.Headers.Operation; op != "" {
			out = append(out, op+" "+m.Message.Key)
		}
	}
	return out
}

// The host app streams a shape; a bad shape and live sync being off are refused
// with their codes.
func TestHostAppStreamsAShape(t *testing.T) {
	s := startSite(t, siteOptions{})
	s.exec(t, `CREATE TABLE notes (id int PRIMARY KEY, owner text NOT NULL, body text)`)
	payload, _ := json.Marshal(syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "notes"}})
	cs, err := s.kit.CallStream(context.Background(), "admin", "sync", syncapi.OpStream, payload)
	if err == nil {
		_, err = cs.Recv()
		cs.Close()
	}
	if !errors.Is(err, &sdk.Error{Code: syncapi.CodeLiveDisabled}) {
		t.Fatalf("stream with live sync off: %v", err)
	}

	s.liveOffAtEnd(t)
	s.setLive(t, true)
	s.waitLive(t, true)
	s.exec(t, `INSERT INTO notes VALUES (1, 'ann', 'a'), (2, 'bob', 'b'), (3, 'ann', NULL)`)
	k := s.stream(t, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "notes", Where: "owner = $1", Params: []string{"ann"}}})
	first, err := k.until(t, isUpToDate)
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(first); len(got) != 2 || got[0] != `insert "public"."notes"/"1"` || got[1] != `insert "public"."notes"/"3"` {
		t.Fatalf("snapshot: %v", got)
	}
	s.exec(t, `UPDATE notes SET owner = 'ann' WHERE id = 2`)
	s.exec(t, `DELETE FROM notes WHERE id = 1`)
	changes, err := k.until(t, keyIs("1"))
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(changes); len(got) != 2 || got[0] != `insert "public"."notes"/"2"` || got[1] != `delete "public"."notes"/"1"` {
		t.Fatalf("changes: %v", got)
	}

	s.exec(t, `CREATE TABLE api_keys (id int PRIMARY KEY, secret text)`)
	secret, _ := json.Marshal(syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "api_keys"}})
	cs, err = s.kit.CallStream(context.Background(), "admin", "sync", syncapi.OpStream, secret)
	if err == nil {
		_, err = cs.Recv()
		cs.Close()
	}
	if !errors.Is(err, sdk.ErrForbidden) || !strings.Contains(err.Error(), "excluded") {
		t.Fatalf("a shape of an excluded table: %v", err)
	}

	bad, _ := json.Marshal(syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "notes", Where: "pg_sleep(1) IS NULL"}})
	cs, err = s.kit.CallStream(context.Background(), "admin", "sync", syncapi.OpStream, bad)
	if err == nil {
		_, err = cs.Recv()
		cs.Close()
	}
	if !errors.Is(err, sdk.ErrInvalidInput) || !strings.Contains(err.Error(), "function") {
		t.Fatalf("a where clause calling a function: %v", err)
	}
}

// reportGet and reportPost call the sync-report example module's endpoints.
func reportCall(t *testing.T, s *site, method, path string, q url.Values, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, s.url+"/fiberkit/sync-report"+path+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 && out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("%s %s: %v (%s)", method, path, err, body)
		}
	} else if resp.StatusCode != 200 {
		t.Logf("%s %s: %d %s", method, path, resp.StatusCode, body)
	}
	return resp.StatusCode
}

// Another module watches records through the SDK in EctoFoundationDB.Sync's terms:
// one record, all by an indexed column; initial values, then (old, new) per change;
// Cancel and Watching. And reads a shape once (Client.stream).
func TestAnotherPluginWatchesRecordsThroughTheSDK(t *testing.T) {
	s := liveSite(t, siteOptions{report: true})
	s.exec(t, `CREATE TABLE tasks (id int PRIMARY KEY, list text NOT NULL, title text, done bool NOT NULL DEFAULT false);
		CREATE INDEX ON tasks (list);
		INSERT INTO tasks VALUES (1, 'home', 'dishes', false), (2, 'home', 'laundry', true), (3, 'work', 'report', false)`)

	var initial []syncapi.WatchEvent
	if code := reportCall(t, s, "POST", "/watch", url.Values{"label": {"home"}, "table": {"tasks"}, "by": {"list"}, "value": {"home"}}, &initial); code != 200 {
		t.Fatalf("watch all by list: %d", code)
	}
	if len(initial) != 1 || initial[0].Kind != syncapi.WatchInitial || len(initial[0].Records) != 2 {
		t.Fatalf("initial: %+v", initial)
	}
	var initialOne []syncapi.WatchEvent
	if code := reportCall(t, s, "POST", "/watch", url.Values{"label": {"one"}, "table": {"tasks"}, "id": {"3"}}, &initialOne); code != 200 || len(initialOne[0].Records) != 1 {
		t.Fatalf("watch one: %d %+v", code, initialOne)
	}

	s.exec(t, `UPDATE tasks SET done = true WHERE id = 1`)
	s.exec(t, `INSERT INTO tasks VALUES (4, 'home', 'plants', false)`)
	s.exec(t, `UPDATE tasks SET list = 'work' WHERE id = 2`)
	s.exec(t, `UPDATE tasks SET title = 'final report' WHERE id = 3`)

	events := func(label string, n int) []syncapi.WatchEvent {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			var evs []syncapi.WatchEvent
			reportCall(t, s, "GET", "/watch/events", url.Values{"label": {label}}, &evs)
			if len(evs) >= n {
				return evs
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d events, want %d: %+v", label, len(evs), n, evs)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	home := events("home", 4)
	want := []string{"initial", "update 1 done f→t", "insert 4", "delete 2"}
	for i, ev := range home[:4] {
		got := ev.Kind
		switch ev.Kind {
		case syncapi.WatchUpdate:
			got = fmt.Sprintf("update %s done %s→%s", strings.Trim(ev.Key[strings.LastIndex(ev.Key, "/")+1:], `"`), *ev.Old["done"], *ev.New["done"])
		case syncapi.WatchInsert, syncapi.WatchDelete:
			got = ev.Kind + " " + strings.Trim(ev.Key[strings.LastIndex(ev.Key, "/")+1:], `"`)
		}
		if got != want[i] {
			t.Fatalf("home event %d: %q, want %q (%+v)", i, got, want[i], home)
		}
	}
	if one := events("one", 2); one[1].Kind != syncapi.WatchUpdate || *one[1].New["title"] != "final report" || *one[1].Old["title"] != "report" {
		t.Fatalf("one: %+v", one)
	}

	var w map[string]bool
	reportCall(t, s, "GET", "/watch/watching", url.Values{"label": {"home"}}, &w)
	if !w["watching"] {
		t.Fatal("watching home: false")
	}
	reportCall(t, s, "POST", "/watch/cancel", url.Values{"label": {"home"}}, &w)
	if !w["cancelled"] {
		t.Fatal("cancel home: false")
	}
	reportCall(t, s, "GET", "/watch/watching", url.Values{"label": {"home"}}, &w)
	if w["watching"] {
		t.Fatal("still watching home after Cancel")
	}
	s.exec(t, `INSERT INTO tasks VALUES (5, 'home', 'after cancel', false)`)
	events("one", 2)
	time.Sleep(500 * time.Millisecond)
	if n := len(events("home", 4)); n != 4 {
		t.Fatalf("a cancelled watch got %d events", n)
	}

	var once []syncapi.StreamMessage
	if code := reportCall(t, s, "GET", "/shape", url.Values{"table": {"tasks"}, "where": {"done"}}, &once); code != 200 {
		t.Fatalf("shape once: %d", code)
	}
	if got := keys(once); len(got) != 2 || got[0] != `insert "public"."tasks"/"1"` || got[1] != `insert "public"."tasks"/"2"` || !isUpToDate(once[len(once)-1]) {
		t.Fatalf("shape once: %v", got)
	}
}

// A reader cut off by a SIGKILL of the Sync plugin resumes with its handle and
// offset once the plugin is back: it gets exactly the changes it missed.
func TestStreamResumesByOffsetAfterThePluginIsKilled(t *testing.T) {
	s := liveSite(t, siteOptions{})
	s.exec(t, `CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, 'v' FROM generate_series(1, 5) g`)
	req := syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "items"}}
	k := s.stream(t, req)
	if _, err := k.until(t, isUpToDate); err != nil {
		t.Fatal(err)
	}
	s.exec(t, `UPDATE items SET v = 'seen' WHERE id = 1`)
	seen, err := k.until(t, keyIs("1"))
	if err != nil {
		t.Fatal(err)
	}
	last := seen[len(seen)-1]

	st, _ := s.kit.Module("sync")
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := k.until(t, func(syncapi.StreamMessage) bool { return false }); !errors.Is(err, sdk.ErrModuleDown) {
		t.Fatalf("the stream of a killed plugin ended with %v", err)
	}
	s.exec(t, `UPDATE items SET v = 'missed' WHERE id = 2; DELETE FROM items WHERE id = 3`)
	testsupport.Eventually(t, "the Sync plugin restarted", func() bool {
		now, _ := s.kit.Module("sync")
		return now.State == host.StateRunning && now.PID != st.PID
	})
	s.waitLive(t, true)
	s.exec(t, `INSERT INTO items VALUES (6, 'after')`)
	req.Handle, req.Offset = last.Handle, last.Offset
	k2 := s.stream(t, req)
	got, err := k2.until(t, keyIs("6"))
	if err != nil {
		t.Fatal(err)
	}
	if ks := keys(got); strings.Join(ks, "; ") != `update "public"."items"/"2"; delete "public"."items"/"3"; insert "public"."items"/"6"` {
		t.Fatalf("after the restart: %v", ks)
	}
	if got[0].Handle != last.Handle {
		t.Fatalf("handle changed across the restart: %s → %s", last.Handle, got[0].Handle)
	}
}

// Two host replicas on one database run one capture; a stream opened on the one
// that does not capture sees every change once, also while the capturing replica's
// plugin is killed mid-stream (its host restarts it; either replica may capture
// next). When that replica goes for good, the other takes over. No slot is leaked.
func TestReplicasShareCaptureAndSurviveTheCapturerKilled(t *testing.T) {
	a := startSite(t, siteOptions{})
	b := startSite(t, siteOptions{db: a.db})
	// The setting is the site's: both replicas turn live sync on, one captures.
	a.setLive(t, true)
	// A replica that has not seen the setting yet runs no live sync: its status
	// says not enabled (and a stream through it would be refused).
	status := func(s *site) (running, capturing bool) {
		var st syncapi.LiveStatus
		err := s.call(t, syncapi.OpLiveStatus, struct{}{}, &st)
		return err == nil && st.Enabled, err == nil && st.Capturing
	}
	capturing := func(s *site) bool { _, c := status(s); return c }
	testsupport.Eventually(t, "both replicas running live sync, one capturing", func() bool {
		ra, ca := status(a)
		rb, cb := status(b)
		return ra && rb && ca != cb
	})
	if capturing(b) {
		a, b = b, a // a captures, b does not
	}
	b.liveOffAtEnd(t) // a is closed before the end
	a.exec(t, `CREATE TABLE items (id int PRIMARY KEY, v text)`)
	k := b.stream(t, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "items"}})
	if _, err := k.until(t, isUpToDate); err != nil {
		t.Fatal(err)
	}
	// Writes before, during and after the kill.
	ctx, stop := context.WithCancel(context.Background())
	written := make(chan int, 1)
	go func() {
		i := 0
		for ; ctx.Err() == nil; i++ {
			if _, err := a.pool.Exec(context.Background(), `INSERT INTO items VALUES ($1, 'x')`, i); err != nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		written <- i
	}()
	time.Sleep(300 * time.Millisecond)
	st, _ := a.kit.Module("sync")
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	stop()
	n := <-written
	got, err := k.until(t, keyIs(fmt.Sprint(n-1)))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, key := range keys(got) {
		if seen[key] {
			t.Fatalf("%s seen twice", key)
		}
		seen[key] = true
	}
	if len(seen) != n {
		t.Fatalf("%d inserts seen, %d written", len(seen), n)
	}

	// Replica a goes; b captures within seconds and the stream goes on.
	if err := a.kit.Close(); err != nil {
		t.Fatal(err)
	}
	b.waitLive(t, true)
	b.exec(t, `INSERT INTO items VALUES (-1, 'after a left')`)
	if _, err := k.until(t, keyIs("-1")); err != nil {
		t.Fatal(err)
	}
	var slots int
	if err := b.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_replication_slots WHERE database = current_database()`).Scan(&slots); err != nil || slots != 1 {
		t.Fatalf("%d slots for the database: %v", slots, err)
	}
}
