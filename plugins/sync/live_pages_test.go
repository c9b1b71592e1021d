package main_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"

	"github.com/fiberkit/fiberkit/host/browsertest"
	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/capture"
	"github.com/fiberkit/fiberkit/plugins/sync/live"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

const livePage = "/admin/fiberkit/sync/live-shapes"

// pageText navigates tab to a site's admin path and returns the text of sel.
func pageText(t *testing.T, tab context.Context, s *site, path, sel string) string {
	t.Helper()
	var text string
	if err := chromedp.Run(tab, chromedp.Navigate(s.url+path), chromedp.WaitReady(sel, chromedp.ByQuery),
		chromedp.Text(sel, &text, chromedp.ByQuery)); err != nil {
		t.Fatalf("%s %s: %v", path, sel, err)
	}
	return text
}

// waitPageText reloads a site's admin path in tab until sel's text matches re.
func waitPageText(t *testing.T, tab context.Context, s *site, path, sel string, re *regexp.Regexp) string {
	t.Helper()
	var text string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if text = pageText(t, tab, s, path, sel); re.MatchString(text) {
			return text
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s says %q, never %s", path, sel, text, re)
		}
	}
}

// setLive sets the Sync module's live setting as the host's settings page does.
func (s *site) setLive(t *testing.T, on bool) {
	t.Helper()
	if err := s.kit.Settings().Set(context.Background(), "sync", map[string]string{"live": fmt.Sprint(on)}, "test"); err != nil {
		t.Fatal(err)
	}
}

// liveStatus is the site's live_status operation.
func (s *site) liveStatus(t *testing.T) syncapi.LiveStatus {
	t.Helper()
	var st syncapi.LiveStatus
	if err := s.call(t, syncapi.OpLiveStatus, struct{}{}, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// liveOffAtEnd turns live sync off when the test ends and waits for the plugin to
// drop the slot (the database could not be dropped while it exists). Register it
// before anything that must stop first (a replica of the test's own).
func (s *site) liveOffAtEnd(t *testing.T) {
	t.Cleanup(func() {
		ctx := context.Background()
		name, err := live.NameFor(ctx, s.pool)
		if err != nil {
			t.Error(err)
			return
		}
		s.setLive(t, false)
		deadline := time.Now().Add(30 * time.Second)
		for {
			var n int
			if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(&n); err != nil || n == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("slot %s still there 30 s after live sync was turned off", name)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// shapeReader is a stream of a shape served by a replica in the test process.
type shapeReader struct {
	msgs   chan syncapi.StreamMessage
	cancel context.CancelFunc
	done   chan error
}

// openStream streams req from e until the test ends or close is called.
func openStream(t *testing.T, e *live.Engine, req syncapi.StreamRequest) *shapeReader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &shapeReader{msgs: make(chan syncapi.StreamMessage, 1000), cancel: cancel, done: make(chan error, 1)}
	go func() {
		r.done <- e.Stream(ctx, req, func(m syncapi.StreamMessage) error {
			select {
			case r.msgs <- m:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	t.Cleanup(r.close)
	return r
}

func (r *shapeReader) close() {
	r.cancel()
	<-r.done
	r.done <- nil // close may be called again
}

// next returns the stream's next message.
func (r *shapeReader) next(t *testing.T) syncapi.StreamMessage {
	t.Helper()
	select {
	case m := <-r.msgs:
		return m
	case err := <-r.done:
		r.done <- err
		// Every message came before the end, but select picks among ready cases
		// at random: what is left in msgs still comes first.
		select {
		case m := <-r.msgs:
			return m
		default:
		}
		t.Fatalf("the stream ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no message for 30 s")
	}
	panic("not reached")
}

// upToDate reads until the stream's up-to-date and returns that message.
func (r *shapeReader) upToDate(t *testing.T) syncapi.StreamMessage {
	t.Helper()
	for {
		if m := r.next(t); m.Message.Headers.Control == syncapi.ControlUpToDate {
			return m
		}
	}
}

// shapeRow is a row of the Live page's shapes table.
type shapeRow struct {
	Handle, Table, Where, Params, Columns, Replica, Subscribers, Log, Offset, Created string
}

// shapeRows reads the Live page's shapes table in tab (already loaded).
func shapeRows(t *testing.T, tab context.Context) map[string]shapeRow {
	t.Helper()
	var rows []shapeRow
	js := `Array.from(document.querySelectorAll('#shapes tbody tr')).map(tr => {
		const f = c => { const e = tr.querySelector(c); return e ? e.textContent : ''; };
		return {Handle: tr.dataset.handle, Table: f('.shape-table'), Where: f('.shape-where'), Params: f('.shape-params'),
			Columns: f('.shape-columns'), Replica: f('.shape-replica'), Subscribers: f('.subscribers'), Log: f('.log'),
			Offset: f('.offset'), Created: f('.created')};
	})`
	if err := chromedp.Run(tab, chromedp.Evaluate(js, &rows)); err != nil {
		t.Fatal(err)
	}
	out := map[string]shapeRow{}
	for _, r := range rows {
		out[r.Handle] = r
	}
	return out
}

// The overview's live sync line and the Live page, off and then on: a shape a
// stream created is listed with its definition, hostile values escaped; Drop
// removes it, and its reader, resuming, is told to refetch.
func TestLivePagesListAndDropShapes(t *testing.T) {
	s := startSite(t, siteOptions{})
	s.exec(t, `CREATE TABLE items (id int PRIMARY KEY, v text, n int);
		INSERT INTO items SELECT i, 'item ' || i, i FROM generate_series(1, 20) i`)
	tab := browsertest.New(t, nil)

	// Off: the overview says so, the Live page says how to turn it on.
	if got := pageText(t, tab, s, "/admin/fiberkit/sync/", "#live-sync"); !strings.HasPrefix(got, "off") || !strings.Contains(got, "Live shapes") {
		t.Fatalf("overview, live sync off: %q", got)
	}
	if got := pageText(t, tab, s, livePage, "#live-off"); !strings.Contains(got, "live") || !strings.Contains(got, "wal_level = logical") {
		t.Fatalf("Live page, live sync off: %q", got)
	}

	// On: the plugin's replica starts live sync (and removes it when the test ends).
	s.liveOffAtEnd(t)
	s.setLive(t, true)
	line := waitPageText(t, tab, s, "/admin/fiberkit/sync/", "#live-sync", regexp.MustCompile(`^on · `))
	if !regexp.MustCompile(`capturing on this replica|not capturing on this replica`).MatchString(line) ||
		!regexp.MustCompile(`slot lag \d+(\.\d)? (B|KiB|MiB|GiB|TiB) · 0 shapes`).MatchString(line) {
		t.Fatalf("overview, live sync on: %q", line)
	}

	// A second replica of the site in the test process: the shapes it streams are
	// the site's (they are kept in the database), so the plugin's page lists them.
	e, err := live.Start(context.Background(), live.Config{Pool: s.pool, ElectEvery: 200 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close) // before live sync is turned off (cleanups run last first)

	hostile := `<script>document.title='pwned'</script>`
	open := openStream(t, e, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "items",
		Where: `v <> $1 AND v <> '<b>bold</b>'`, Params: []string{hostile}, Columns: []string{"id", "v"}, Replica: syncapi.ReplicaFull}})
	openUpToDate := open.upToDate(t)
	once := openStream(t, e, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "items", Where: "n > 10"}, Once: true})
	onceUpToDate := once.upToDate(t)
	once.close()
	openHandle, onceHandle := openUpToDate.Handle, onceUpToDate.Handle

	// This replica counts the open stream's reader.
	infos, err := e.Shapes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos {
		if in.Handle == openHandle && in.Subscribers < 1 {
			t.Fatalf("the open stream's shape has %d subscribers on its replica", in.Subscribers)
		}
	}

	if got := pageText(t, tab, s, "/admin/fiberkit/sync/", "#live-sync"); !strings.Contains(got, "2 shapes") {
		t.Fatalf("overview with two shapes: %q", got)
	}
	pageText(t, tab, s, livePage, "#shapes")
	rows := shapeRows(t, tab)
	if len(rows) != 2 {
		t.Fatalf("the Live page lists %d shapes, want 2: %+v", len(rows), rows)
	}
	r, ok := rows[openHandle]
	switch {
	case !ok:
		t.Fatalf("shape %s not listed: %+v", openHandle, rows)
	case r.Table != "public.items", !strings.Contains(r.Where, "<b>bold</b>"), !strings.Contains(r.Params, hostile),
		r.Columns != "id, v", r.Replica != "full", r.Offset == "", r.Created == "":
		t.Fatalf("the open stream's shape: %+v", r)
	case !regexp.MustCompile(`^\d+ entr(y|ies), \d+(\.\d)? (B|KiB|MiB)$`).MatchString(r.Log):
		t.Fatalf("its log: %q", r.Log)
	case !regexp.MustCompile(`^\d+$`).MatchString(r.Subscribers):
		t.Fatalf("its subscribers: %q", r.Subscribers)
	}
	if r := rows[onceHandle]; r.Where != "n > 10" || r.Columns != "all" || r.Replica != "default" || r.Params != "" {
		t.Fatalf("the other shape: %+v", r)
	}
	// Escaped: the hostile values are text, nothing of them is markup.
	if evalBool(t, tab, `document.querySelectorAll('#shapes script, #shapes b').length > 0 || document.title === 'pwned'`) {
		t.Fatal("a shape's where or params became markup")
	}
	if _, body := testsupport.Get(t, s.url+livePage); !strings.Contains(body, "&lt;script&gt;") || strings.Contains(body, hostile) {
		t.Fatal("the page does not escape a shape's params")
	}

	// Drop the finished stream's shape from the page: redirect, flash, gone.
	if err := chromedp.Run(tab, chromedp.Click(`tr[data-handle="`+onceHandle+`"] button.drop`, chromedp.ByQuery),
		chromedp.WaitVisible(`#flash`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	var flash, loc string
	if err := chromedp.Run(tab, chromedp.Text(`#flash`, &flash, chromedp.ByQuery), chromedp.Location(&loc)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(flash, onceHandle+" dropped") || !strings.HasSuffix(loc, livePage+"?"+url.Values{"dropped": {onceHandle}}.Encode()) {
		t.Fatalf("after Drop: flash %q at %s", flash, loc)
	}
	rows = shapeRows(t, tab)
	if _, still := rows[onceHandle]; still || len(rows) != 1 {
		t.Fatalf("after Drop the page lists %+v", rows)
	}
	if st := s.liveStatus(t); st.Shapes != 1 {
		t.Fatalf("live_status after Drop: %+v", st)
	}

	// Its reader, resuming where it was, must refetch under a new handle.
	resumed := openStream(t, e, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "items", Where: "n > 10"},
		Handle: onceHandle, Offset: onceUpToDate.Offset, Once: true})
	if m := resumed.next(t); m.Message.Headers.Control != syncapi.ControlMustRefetch || m.Handle == onceHandle {
		t.Fatalf("resuming a dropped shape: %+v", m)
	}

	// Dropping a shape that is no longer live says so.
	code, body := adminForm(t, s, livePage, livePage+"/"+url.PathEscape(onceHandle)+"/drop", url.Values{})
	if code != 303 {
		t.Fatalf("dropping it again: HTTP %d %s", code, body)
	}
	if got := pageText(t, tab, s, livePage+"?gone="+url.QueryEscape(onceHandle), "#flash"); !strings.Contains(got, "no longer live") {
		t.Fatalf("flash for a shape no longer live: %q", got)
	}
}

// A site whose database role cannot replicate: the Live page shows why, verbatim,
// and the overview says live sync cannot run.
func TestLivePageSaysWhyLiveCannotRun(t *testing.T) {
	ctx := context.Background()
	adminURL := pgtest.NewDatabase(t)
	admin := testsupport.Pool(t, adminURL)
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatal(err)
	}
	role := "t_norepl_" + fmt.Sprint(time.Now().UnixNano()%1e9)
	db := strings.TrimPrefix(u.Path, "/")
	testsupport.Exec(t, admin, fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD 'pw' NOREPLICATION NOSUPERUSER; ALTER DATABASE %s OWNER TO %s; ALTER SCHEMA public OWNER TO %s`,
		role, pgx.Identifier{db}.Sanitize(), role, role))
	t.Cleanup(func() { // after the site (cleanups run last first), before the database goes
		testsupport.Exec(t, admin, fmt.Sprintf(`REASSIGN OWNED BY %s TO CURRENT_USER; DROP OWNED BY %s; DROP ROLE %s`, role, role, role))
	})
	u.User = url.UserPassword(role, "pw")
	s := startSite(t, siteOptions{db: u.String()})
	tab := browsertest.New(t, nil)

	var nr *capture.NotReadyError
	if err := capture.Check(ctx, s.pool); !errors.As(err, &nr) {
		t.Fatalf("capture.Check as %s: %v", role, err)
	}
	s.setLive(t, true)
	waitPageText(t, tab, s, "/admin/fiberkit/sync/", "#live-sync", regexp.MustCompile(`^on, but cannot run`))
	if got := pageText(t, tab, s, livePage, "pre.not-ready"); got != nr.Error() {
		t.Fatalf("the Live page says %q, want %q", got, nr.Error())
	}
	if got := s.liveStatus(t); got.NotReady != nr.Error() {
		t.Fatalf("live_status: %+v", got)
	}
}
