package main_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/fasthttp/websocket"

	"github.com/fiberkit/fiberkit/host/browsertest"
	"github.com/fiberkit/fiberkit/plugins/sync/client"
)

// sendPage GETs a site's Send page as a program would and returns the page's owner
// and code.
func sendPage(t *testing.T, s *site) (owner, code string) {
	t.Helper()
	resp, err := http.Get(s.url + "/admin/fiberkit/sync/send")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	o := regexp.MustCompile(`data-owner="([^"]+)"`).FindSubmatch(body)
	c := regexp.MustCompile(`<output id="code"[^>]*>([A-Z0-9]{8})</output>`).FindSubmatch(body)
	if resp.StatusCode != 200 || o == nil || c == nil {
		t.Fatalf("send page: HTTP %d %s", resp.StatusCode, body)
	}
	return string(o[1]), string(c[1])
}

// liveConn is a /live socket opened as the admin pages' script opens it.
type liveConn struct {
	c    *websocket.Conn
	mu   sync.Mutex
	msgs []map[string]any
	next int // the first message waitFor has not looked at
}

// liveSocket opens a site's /live socket as the admin pages' script does (same
// Origin) and says hello; it keeps every message it reads.
func liveSocket(t *testing.T, s *site, hello map[string]any) *liveConn {
	t.Helper()
	u := "ws" + strings.TrimPrefix(s.url, "http") + "/admin/fiberkit/sync/live"
	c, resp, err := websocket.DefaultDialer.Dial(u, http.Header{"Origin": {s.url}})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", u, err, status)
	}
	t.Cleanup(func() { _ = c.Close() })
	lc := &liveConn{c: c}
	lc.send(t, hello)
	go func() {
		for {
			_, data, err := c.ReadMessage()
			if err != nil {
				return
			}
			var m map[string]any
			if json.Unmarshal(data, &m) == nil {
				lc.mu.Lock()
				lc.msgs = append(lc.msgs, m)
				lc.mu.Unlock()
			}
		}
	}()
	return lc
}

func (lc *liveConn) send(t *testing.T, m map[string]any) {
	t.Helper()
	if err := lc.c.WriteJSON(m); err != nil {
		t.Fatal(err)
	}
}

// waitFor returns the first message not looked at yet for which ok holds.
func (lc *liveConn) waitFor(t *testing.T, what string, timeout time.Duration, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		lc.mu.Lock()
		for lc.next < len(lc.msgs) {
			m := lc.msgs[lc.next]
			lc.next++
			if ok(m) {
				lc.mu.Unlock()
				return m
			}
		}
		var last map[string]any
		if len(lc.msgs) > 0 {
			last = lc.msgs[len(lc.msgs)-1]
		}
		lc.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s; last message %v", what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// receiveState waits for a Receive job's view to reach state.
func (lc *liveConn) receiveState(t *testing.T, state string) map[string]any {
	t.Helper()
	return lc.waitFor(t, "state "+state, 30*time.Second, func(m map[string]any) bool { return m["state"] == state })
}

func codeValid(t *testing.T, s *site, code string) bool {
	t.Helper()
	var v struct {
		Valid bool `json:"valid"`
	}
	if err := s.call(t, "validate_code", map[string]string{"code": code}, &v); err != nil {
		t.Fatal(err)
	}
	return v.Valid
}

// A Send page served by one replica whose live socket reached another keeps its
// code: the page's presence is the lease in the shared database, not either
// process's memory. Its code still dies soon after the socket closes.
func TestSendPageSocketOnAnotherReplica(t *testing.T) {
	a1 := startSite(t, siteOptions{})
	a2 := startSite(t, siteOptions{db: a1.db})
	owner, code := sendPage(t, a1)
	sock := liveSocket(t, a2, map[string]any{"op": "hello", "page": "send", "owner": owner})
	sock.waitFor(t, "the page's view from replica 2", 10*time.Second, func(m map[string]any) bool {
		return m["type"] == "send" && m["code_alive"] == true
	})
	// Past the window replica 1 gives a page to open its socket, and past a lease.
	time.Sleep(40 * time.Second)
	if !codeValid(t, a1, code) {
		t.Fatal("the code died although its page's socket (on replica 2) is open")
	}
	if !codeValid(t, a2, code) {
		t.Fatal("replica 2 refuses the code")
	}
	// Closing the socket ends the page: the code dies within the grace.
	_ = sock.c.Close()
	deadline := time.Now().Add(15 * time.Second)
	for codeValid(t, a1, code) {
		if time.Now().After(deadline) {
			t.Fatal("the code outlived its page's socket")
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// idleInTransaction counts the sessions of s's database holding a transaction open
// without doing anything (the sender's snapshot for a connected receiver).
func idleInTransaction(t *testing.T, s *site) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND state = 'idle in transaction' AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A Receive job closes its connection when its transfer is done, so the sender's
// snapshot (an open REPEATABLE READ transaction) ends with it.
func TestReceiveJobClosesItsConnectionWhenDone(t *testing.T) {
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{})
	code := a.newCode(t).Code
	page := liveSocket(t, b, map[string]any{"op": "hello", "page": "receive"})
	page.receiveState(t, "idle")
	page.send(t, map[string]any{"op": "connect", "url": a.url, "code": code})
	page.receiveState(t, "ready")
	if n := idleInTransaction(t, a); n == 0 {
		t.Fatal("no snapshot open on the sender while connected (the test would prove nothing)")
	}
	page.send(t, map[string]any{"op": "start", "tables": []string{"customers", "products"}, "strategy": "skip", "create_missing": true})
	page.receiveState(t, "done")
	deadline := time.Now().Add(5 * time.Second)
	for idleInTransaction(t, a) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d transactions still open on the sender after the transfer", idleInTransaction(t, a))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// evalBool runs a JavaScript expression in tab.
func evalBool(t *testing.T, tab context.Context, js string) bool {
	t.Helper()
	var ok bool
	if err := chromedp.Run(tab, chromedp.Evaluate(js, &ok)); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return ok
}

// waitJS waits for a JavaScript expression to hold in tab.
func waitJS(t *testing.T, tab context.Context, what, js string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !evalBool(t, tab, js); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s never held", what, js)
		}
	}
}

// The pages' accessibility: labelled fields, request buttons named after the request
// and keeping the keyboard focus through updates, the copy announced, wide tables
// scrolling on their own.
func TestPagesAccessibility(t *testing.T) {
	a := startSite(t, siteOptions{mode: "require_approval"})
	b := startSite(t, siteOptions{})
	browser := browsertest.New(t, nil)
	tabA := browser
	tabB, closeB := chromedp.NewContext(browser)
	defer closeB()

	// Receive: every label points at its field.
	if err := chromedp.Run(tabB, chromedp.Navigate(b.url+"/admin/fiberkit/sync/receive"), chromedp.WaitVisible(`#connect-btn`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	if !evalBool(t, tabB, `(() => { const l = document.querySelector('label[for=code-input]'); return !!l && l.control === document.getElementById('code-input'); })()`) {
		t.Fatal("the code field has no label")
	}
	if !evalBool(t, tabB, `Array.from(document.querySelectorAll('label[for]')).every(l => l.control !== null)`) {
		t.Fatal("a label points at no field")
	}

	// Send: the copy is announced.
	code := readCode(t, tabA, a)
	if err := chromedp.Run(tabA, chromedp.Click(`#copy`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, tabA, "the copy announced", `document.getElementById('copy-status').textContent.length > 0`, 5*time.Second)

	// A request waiting for approval: its buttons are named after it.
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		c, err := client.Connect(ctx, a.url, code, client.Options{Timeout: time.Minute, ReceiverInfo: map[string]any{"who": "dev laptop"}})
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	if err := chromedp.Run(tabA, chromedp.WaitVisible(`#pending button.approve`, chromedp.ByQuery)); err != nil {
		t.Fatalf("no pending request: %v", err)
	}
	if !evalBool(t, tabA, `/^Approve .*dev laptop/.test(document.querySelector('#pending button.approve').getAttribute('aria-label')) && /^Deny .*dev laptop/.test(document.querySelector('#pending button.deny').getAttribute('aria-label'))`) {
		t.Fatal("the approval buttons do not name the request")
	}
	// The keyboard focus on Approve survives an update of the page.
	if !evalBool(t, tabA, `(() => { document.querySelector('#pending button.approve').focus(); return document.activeElement.classList.contains('approve'); })()`) {
		t.Fatal("cannot focus Approve")
	}
	a.exec(t, `UPDATE fiberkit_sync_sessions SET progress = '{"table":"focus_probe","rows":7}' WHERE used_at IS NOT NULL`)
	waitJS(t, tabA, "the page updated", `document.getElementById('receivers').textContent.includes('focus_probe')`, 10*time.Second)
	if !evalBool(t, tabA, `document.activeElement === document.querySelector('#pending button.approve')`) {
		t.Fatal("the update took the keyboard focus off Approve")
	}
	// Enter approves; the decided request leaves and the focus stays in the list.
	if err := chromedp.Run(tabA, chromedp.KeyEvent("\r")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("approved by keyboard: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Enter on Approve did not approve")
	}
	waitJS(t, tabA, "focus after the decision", `document.querySelectorAll('#pending .card').length === 0 && document.activeElement.id === 'pending'`, 10*time.Second)

	// Overview: the sessions and attempts tables scroll on their own.
	if err := chromedp.Run(tabA, chromedp.Navigate(a.url+"/admin/fiberkit/sync/"), chromedp.WaitVisible(`#attempts`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	if !evalBool(t, tabA, `['sessions', 'attempts', 'transfers'].every(id => { const t = document.getElementById(id); return !t || t.parentElement.classList.contains('scroll'); })`) {
		t.Fatal("an overview table is not wrapped in .scroll")
	}
}

// What the Receive page says when the code is dead, when the sending page closes
// while connected, and when the sending site vanishes.
func TestReceivePageRefusalMessages(t *testing.T) {
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{})
	browser := browsertest.New(t, nil)
	tabA := browser
	newTab := func() context.Context {
		tab, cancel := chromedp.NewContext(browser)
		t.Cleanup(cancel)
		return tab
	}

	// A code whose Send page was closed.
	code := readCode(t, tabA, a)
	if err := chromedp.Run(tabA, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); codeValid(t, a, code); time.Sleep(250 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the code outlived its page")
		}
	}
	tab := newTab()
	connectFrom(t, tab, b, a.url, code, "")
	waitState(t, tab, "failed")
	if code, msg := pageError(t, tab); code != "invalid_code" || !strings.Contains(msg, "expired") {
		t.Fatalf("dead code: %s %q", code, msg)
	}

	// Connected, then the sending page closes: the session ends.
	code = readCode(t, tabA, a)
	tab = newTab()
	connectFrom(t, tab, b, a.url, code, "")
	waitState(t, tab, "ready")
	if err := chromedp.Run(tabA, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	waitState(t, tab, "failed")
	if code, msg := pageError(t, tab); code != "session_ended" || !strings.Contains(msg, "ended the session") {
		t.Fatalf("session ended: %s %q", code, msg)
	}
	browsertest.Screenshot(t, tab, "sync-receive-session-ended.png")

	// Connected, then the sending site's plugin dies.
	code = a.newCode(t).Code
	tab = newTab()
	connectFrom(t, tab, b, a.url, code, "")
	waitState(t, tab, "ready")
	st, _ := a.kit.Module("sync")
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitState(t, tab, "failed")
	if code, msg := pageError(t, tab); code != "sender_vanished" || !strings.Contains(msg, "went away") {
		t.Fatalf("sender vanished: %s %q", code, msg)
	}
}
