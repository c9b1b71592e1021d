package main_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/fasthttp/websocket"

	"github.com/fiberkit/fiberkit/host/browsertest"
	"github.com/fiberkit/fiberkit/plugins/sync/client"
)

// browserTabs opens a browser for the test and returns its first tab and a second
// one, closed when the test ends.
func browserTabs(t *testing.T) (first, second context.Context) {
	t.Helper()
	first = browsertest.New(t, nil)
	return first, newTab(t, first)
}

// newTab opens another tab in tab's browser, closed when the test ends.
func newTab(t *testing.T, tab context.Context) context.Context {
	t.Helper()
	next, cancel := chromedp.NewContext(tab)
	t.Cleanup(cancel)
	return next
}

// readCode opens site's Send page in tab and returns the code it shows.
func readCode(t *testing.T, tab context.Context, s *site) string {
	t.Helper()
	var code string
	if err := chromedp.Run(tab,
		chromedp.Navigate(s.url+"/admin/fiberkit/sync/send"),
		chromedp.WaitVisible(`#code`, chromedp.ByQuery),
		chromedp.Text(`#code`, &code, chromedp.ByQuery),
		// Until its live socket is up, a closed page's code lives for the 30 s a
		// served page has to open it; tests that close the page need the socket.
		chromedp.WaitReady(`.code-box[data-live]`, chromedp.ByQuery),
	); err != nil {
		t.Fatalf("send page: %v", err)
	}
	if len(strings.TrimSpace(code)) != 8 {
		t.Fatalf("code on the page: %q", code)
	}
	return strings.TrimSpace(code)
}

// connectFrom fills B's Receive form and submits it.
func connectFrom(t *testing.T, tab context.Context, b *site, senderURL, code, password string) {
	t.Helper()
	if err := chromedp.Run(tab,
		chromedp.Navigate(b.url+"/admin/fiberkit/sync/receive"),
		chromedp.WaitVisible(`#connect-btn`, chromedp.ByQuery),
		chromedp.SendKeys(`#url`, senderURL, chromedp.ByQuery),
		chromedp.SendKeys(`#code-input`, code, chromedp.ByQuery),
		chromedp.SendKeys(`#password`, password, chromedp.ByQuery),
		chromedp.Click(`#connect-btn`, chromedp.ByQuery),
	); err != nil {
		t.Fatalf("receive form: %v", err)
	}
}

// waitState waits for the Receive page to reach state.
func waitState(t *testing.T, tab context.Context, state string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 30*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, chromedp.WaitVisible(`body[data-state="`+state+`"]`, chromedp.ByQuery)); err != nil {
		var msg string
		_ = chromedp.Run(tab, chromedp.Text(`#message`, &msg, chromedp.ByQuery, chromedp.AtLeast(0)))
		t.Fatalf("receive page never reached %s (message %q): %v", state, msg, err)
	}
}

func pageError(t *testing.T, tab context.Context) (string, string) {
	t.Helper()
	var code, msg string
	var ok bool
	if err := chromedp.Run(tab,
		chromedp.AttributeValue(`#message`, "data-error", &code, &ok, chromedp.ByQuery),
		chromedp.Text(`#message`, &msg, chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	return code, msg
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

// adminForm posts a form from one of a site's admin pages as the browser would: it
// loads the page (for the CSRF cookie and field), then posts form to action.
func adminForm(t *testing.T, s *site, pagePath, action string, form url.Values) (int, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(s.url + pagePath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="_csrf" value="([^"]+)"`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF field on %s", pagePath)
	}
	form.Set("_csrf", string(m[1]))
	resp, err = client.PostForm(s.url+action, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ = io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
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

// The pages' accessibility: labelled fields, request buttons named after the request
// and keeping the keyboard focus through updates, the copy announced, wide tables
// scrolling on their own.
func TestPagesAccessibility(t *testing.T) {
	a := startSite(t, siteOptions{mode: "require_approval"})
	b := startSite(t, siteOptions{})
	tabA, tabB := browserTabs(t)

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
