package main_test

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fiberkit/fiberkit/host/browsertest"
)

func TestSendAndReceivePagesInBrowser(t *testing.T) {
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{})
	tabA, tabB := browserTabs(t)

	code := readCode(t, tabA, a)
	browsertest.Screenshot(t, tabA, "sync-send.png")
	connectFrom(t, tabB, b, a.url, code, "")
	waitState(t, tabB, "ready")
	var states []string
	if err := chromedp.Run(tabB, chromedp.Evaluate(`Array.from(document.querySelectorAll('#tables td.here')).map(e => e.textContent)`, &states)); err != nil {
		t.Fatal(err)
	}
	if len(states) != 4 || strings.Join(states, ",") != "New,New,New,New" {
		t.Fatalf("local states %v", states)
	}
	// A's Send page shows who connected.
	if err := chromedp.Run(tabA, chromedp.WaitVisible(`#receivers .card.receiver`, chromedp.ByQuery)); err != nil {
		t.Fatalf("receiver not shown on the send page: %v", err)
	}
	browsertest.Screenshot(t, tabB, "sync-receive-tables.png")
	// One strategy per table; start; every bar reaches 100%.
	if err := chromedp.Run(tabB,
		chromedp.SetValue(`tr[data-table="orders"] select.strategy`, "overwrite", chromedp.ByQuery),
		chromedp.Click(`#start`, chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	waitState(t, tabB, "done")
	var done int
	var created []string
	if err := chromedp.Run(tabB,
		chromedp.Evaluate(`document.querySelectorAll('#tables tr[data-done="true"]').length`, &done),
		chromedp.Evaluate(`Array.from(document.querySelectorAll('#results td.created')).map(e => e.textContent)`, &created),
	); err != nil {
		t.Fatal(err)
	}
	if done != 4 || strings.Join(created, ",") != "2,000,15,000,5,000,300" {
		t.Fatalf("%d tables at 100%%, created %v", done, created)
	}
	browsertest.Screenshot(t, tabB, "sync-receive-done.png")
	// At phone width the page still fits (no horizontal scrolling).
	var overflow bool
	if err := chromedp.Run(tabB, chromedp.EmulateViewport(390, 844),
		chromedp.Evaluate(`document.documentElement.scrollWidth > window.innerWidth + 1`, &overflow)); err != nil {
		t.Fatal(err)
	}
	browsertest.Screenshot(t, tabB, "sync-receive-phone.png")
	if overflow {
		t.Fatal("the receive page scrolls sideways at phone width")
	}
	if err := chromedp.Run(tabB, chromedp.EmulateViewport(1100, 900)); err != nil {
		t.Fatal(err)
	}
	sameData(t, a, b)
	// After the transfer the tables read Match.
	if err := chromedp.Run(tabB, chromedp.WaitVisible(`tr[data-table="customers"] td.here-match`, chromedp.ByQuery)); err != nil {
		t.Fatalf("states not refreshed to Match: %v", err)
	}

	// Both overviews list the transfer, one row per table.
	for _, side := range []struct {
		tab       context.Context
		s         *site
		direction string
	}{{tabB, b, "receive"}, {tabA, a, "send"}} {
		var rows []string
		if err := chromedp.Run(side.tab, chromedp.Navigate(side.s.url+"/admin/fiberkit/sync/"),
			chromedp.WaitVisible(`#transfers`, chromedp.ByQuery),
			chromedp.Evaluate(`Array.from(document.querySelectorAll('#transfers tbody tr')).map(r => r.cells[1].textContent + ' ' + r.cells[3].textContent + ' ' + r.cells[4].textContent)`, &rows)); err != nil {
			t.Fatalf("%s overview: %v", side.direction, err)
		}
		got := strings.Join(rows, ",")
		for _, want := range []string{"customers 2000", "order_items 15000", "orders 5000", "products 300"} {
			if !strings.Contains(got, side.direction+" "+want) {
				t.Fatalf("%s overview lacks %q: %s", side.direction, want, got)
			}
		}
	}
	browsertest.Screenshot(t, tabB, "sync-overview.png")

	// Closing the Send page kills its code.
	code2 := readCode(t, tabA, a)
	if err := chromedp.Run(tabA, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); codeValid(t, a, code2); time.Sleep(250 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the code outlived its page")
		}
	}
}

func TestApprovalAndRefusalsInBrowser(t *testing.T) {
	a := seeded(t, siteOptions{mode: "require_approval"})
	b := startSite(t, siteOptions{})
	tabA, tabB := browserTabs(t)

	// Approve on A's Send page; B proceeds.
	code := readCode(t, tabA, a)
	connectFrom(t, tabB, b, a.url, code, "")
	waitState(t, tabB, "waiting_approval")
	if err := chromedp.Run(tabA, chromedp.WaitVisible(`#pending .card.pending button.approve`, chromedp.ByQuery)); err != nil {
		t.Fatalf("pending request not shown: %v", err)
	}
	browsertest.Screenshot(t, tabA, "sync-send-approval.png")
	if err := chromedp.Run(tabA, chromedp.Click(`#pending button.approve`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitState(t, tabB, "ready")

	// Deny: B shows the refusal.
	code = readCode(t, tabA, a)
	connectFrom(t, tabB, b, a.url, code, "")
	waitState(t, tabB, "waiting_approval")
	if err := chromedp.Run(tabA,
		chromedp.WaitVisible(`#pending button.deny`, chromedp.ByQuery),
		chromedp.Click(`#pending button.deny`, chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	waitState(t, tabB, "failed")
	if code, msg := pageError(t, tabB); code != "approval_denied" || !strings.Contains(msg, "denied") {
		t.Fatalf("denied: %s %q", code, msg)
	}
	browsertest.Screenshot(t, tabB, "sync-receive-denied.png")

	// A wrong code.
	connectFrom(t, tabB, b, a.url, "WRONG234", "")
	waitState(t, tabB, "failed")
	if code, msg := pageError(t, tabB); code != "invalid_code" || !strings.Contains(msg, "not valid") {
		t.Fatalf("wrong code: %s %q", code, msg)
	}

	// A wrong password.
	p := startSite(t, siteOptions{mode: "require_password", password: "s3cret"})
	tabP := newTab(t, tabA)
	code = readCode(t, tabP, p)
	connectFrom(t, tabB, b, p.url, code, "nope")
	waitState(t, tabB, "failed")
	if code, msg := pageError(t, tabB); code != "wrong_password" || msg != "Wrong password." {
		t.Fatalf("wrong password: %s %q", code, msg)
	}
}

func TestReceivePageCancel(t *testing.T) {
	a := startSite(t, siteOptions{})
	a.exec(t, `CREATE TABLE big (id bigint PRIMARY KEY, v text); INSERT INTO big SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 400000) i`)
	b := startSite(t, siteOptions{})
	_, tabB := browserTabs(t)
	code := a.newCode(t).Code
	connectFrom(t, tabB, b, a.url, code, "")
	waitState(t, tabB, "ready")
	if err := chromedp.Run(tabB, chromedp.Click(`#start`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	// Cancel once rows are flowing.
	for start := time.Now(); ; {
		var moving bool
		if err := chromedp.Run(tabB, chromedp.Evaluate(`document.querySelector('#overall-bar').value > 0`, &moving)); err != nil {
			t.Fatal(err)
		}
		if moving {
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Fatal("the transfer never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := chromedp.Run(tabB, chromedp.Click(`#cancel`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitState(t, tabB, "cancelled")
	var n int64
	_ = b.pool.QueryRow(context.Background(), `SELECT count(*) FROM big`).Scan(&n)
	if n == 0 || n >= 400000 {
		t.Fatalf("cancel mid-transfer left %d rows", n)
	}
	if n%5000 != 0 {
		t.Fatalf("%d rows: a batch was half applied", n)
	}
	// The sender stopped its stream too (stream:cancel) and says so in its history.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var stopped int
		_ = a.pool.QueryRow(context.Background(), `SELECT count(*) FROM fiberkit_sync_transfers WHERE table_name = 'big' AND direction = 'send' AND error = 'cancelled by the receiver'`).Scan(&stopped)
		if stopped == 1 {
			break
		}
		if time.Now().After(deadline) {
			var rows []string
			r, _ := a.pool.Query(context.Background(), `SELECT direction || ' ' || table_name || ' ' || status || ' ' || error || ' ' || rows FROM fiberkit_sync_transfers`)
			for r.Next() {
				var x string
				_ = r.Scan(&x)
				rows = append(rows, x)
			}
			r.Close()
			t.Fatalf("the sender's stream did not stop after the cancel: %v", rows)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// What the Receive page says when the code is dead, when the sending page closes
// while connected, and when the sending site vanishes.
func TestReceivePageRefusalMessages(t *testing.T) {
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{})
	tabA := browsertest.New(t, nil)

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
	tab := newTab(t, tabA)
	connectFrom(t, tab, b, a.url, code, "")
	waitState(t, tab, "failed")
	if code, msg := pageError(t, tab); code != "invalid_code" || !strings.Contains(msg, "expired") {
		t.Fatalf("dead code: %s %q", code, msg)
	}

	// Connected, then the sending page closes: the session ends.
	code = readCode(t, tabA, a)
	tab = newTab(t, tabA)
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
	tab = newTab(t, tabA)
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
