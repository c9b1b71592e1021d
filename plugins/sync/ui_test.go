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

func TestSendAndReceivePagesInBrowser(t *testing.T) {
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{})
	browser := browsertest.New(t, nil)
	tabA := browser
	tabB, closeB := chromedp.NewContext(browser)
	defer closeB()

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
	deadline := time.Now().Add(15 * time.Second)
	for {
		var v struct {
			Valid bool `json:"valid"`
		}
		if err := a.call(t, "validate_code", map[string]string{"code": code2}, &v); err != nil {
			t.Fatal(err)
		}
		if !v.Valid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the code outlived its page")
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func TestApprovalAndRefusalsInBrowser(t *testing.T) {
	a := seeded(t, siteOptions{mode: "require_approval"})
	b := startSite(t, siteOptions{})
	browser := browsertest.New(t, nil)
	tabA := browser
	tabB, closeB := chromedp.NewContext(browser)
	defer closeB()

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
	tabP, closeP := chromedp.NewContext(browser)
	defer closeP()
	code = readCode(t, tabP, p)
	connectFrom(t, tabB, b, p.url, code, "nope")
	waitState(t, tabB, "failed")
	if code, msg := pageError(t, tabB); code != "wrong_password" || msg != "Wrong password." {
		t.Fatalf("wrong password: %s %q", code, msg)
	}
}

func TestSendPageRecoversFromADroppedSocket(t *testing.T) {
	a := startSite(t, siteOptions{})
	tab := browsertest.New(t, nil)
	code := readCode(t, tab, a)
	// Wait until the page's socket is up (the banner stays hidden), then kill the
	// plugin: the socket drops, the page says so, and reconnects once the host has
	// restarted the plugin; the code survives.
	if err := chromedp.Run(tab, chromedp.WaitNotVisible(`#socket-state`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	st, _ := a.kit.Module("sync")
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, chromedp.WaitVisible(`#socket-state`, chromedp.ByQuery)); err != nil {
		t.Fatalf("the page did not notice the dropped socket: %v", err)
	}
	if err := chromedp.Run(ctx, chromedp.WaitNotVisible(`#socket-state`, chromedp.ByQuery)); err != nil {
		t.Fatalf("the page did not reconnect: %v", err)
	}
	time.Sleep(6 * time.Second) // longer than the grace a closed page gets
	var v struct {
		Valid bool `json:"valid"`
	}
	if err := a.call(t, "validate_code", map[string]string{"code": code}, &v); err != nil {
		t.Fatal(err)
	}
	if !v.Valid {
		t.Fatal("the code died although its page reconnected")
	}
}

func TestConnectionPagesCreateApprovePullHistory(t *testing.T) {
	t.Setenv("FIBERKIT_SECRET_KEY", "another-test-key-for-remote-tokens")
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{})
	browser := browsertest.New(t, nil)
	tabA := browser
	tabB, closeB := chromedp.NewContext(browser)
	defer closeB()

	// A: create a connection limited to customers; the token is shown once.
	var token, status string
	if err := chromedp.Run(tabA,
		chromedp.Navigate(a.url+"/admin/fiberkit/sync/connections"),
		chromedp.Click(`#new-connection summary`, chromedp.ByQuery),
		chromedp.SendKeys(`#c-name`, "dev site", chromedp.ByQuery),
		chromedp.SendKeys(`#c-site`, b.url, chromedp.ByQuery),
		chromedp.SendKeys(`#c-allowed`, "customers", chromedp.ByQuery),
		chromedp.SendKeys(`#c-rpm`, "100", chromedp.ByQuery),
		chromedp.Click(`#create-connection`, chromedp.ByQuery),
		chromedp.WaitVisible(`#token`, chromedp.ByQuery),
		chromedp.Text(`#token`, &token, chromedp.ByQuery),
		chromedp.Text(`#status`, &status, chromedp.ByQuery),
	); err != nil {
		t.Fatalf("create connection: %v", err)
	}
	if !strings.HasPrefix(token, "fkc_") || status != "pending" {
		t.Fatalf("token %q status %q", token, status)
	}
	browsertest.Screenshot(t, tabA, "sync-connection-created.png")
	// Approve it (from its detail page).
	if err := chromedp.Run(tabA,
		chromedp.Navigate(a.url+"/admin/fiberkit/sync/connections"),
		chromedp.Click(`#connections tbody a`, chromedp.ByQuery),
		chromedp.WaitVisible(`#approve`, chromedp.ByQuery),
		chromedp.Click(`#approve`, chromedp.ByQuery),
		chromedp.WaitVisible(`#suspend`, chromedp.ByQuery),
		chromedp.Text(`#status`, &status, chromedp.ByQuery),
	); err != nil {
		t.Fatalf("approve: %v", err)
	}
	if status != "active" {
		t.Fatalf("status after approve %q", status)
	}
	// B: add A as a remote with the token and pull now.
	if err := chromedp.Run(tabB,
		chromedp.Navigate(b.url+"/admin/fiberkit/sync/connections"),
		chromedp.Click(`#new-remote summary`, chromedp.ByQuery),
		chromedp.SendKeys(`#r-name`, "prod", chromedp.ByQuery),
		chromedp.SendKeys(`#r-url`, a.url, chromedp.ByQuery),
		chromedp.SendKeys(`#r-token`, token, chromedp.ByQuery),
		chromedp.SendKeys(`#r-tables`, "customers", chromedp.ByQuery),
		chromedp.Click(`#add-remote`, chromedp.ByQuery),
		chromedp.WaitVisible(`#remotes button.run`, chromedp.ByQuery),
		chromedp.Click(`#remotes button.run`, chromedp.ByQuery),
		chromedp.WaitVisible(`#history`, chromedp.ByQuery),
	); err != nil {
		t.Fatalf("remote: %v", err)
	}
	// The history fills in once the pull is done.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var rows []string
		_ = chromedp.Run(tabB, chromedp.Navigate(b.url+"/admin/fiberkit/sync/history?direction=receive"),
			chromedp.Evaluate(`Array.from(document.querySelectorAll('#history tbody tr')).map(r => r.querySelector('.table').textContent + ' ' + r.querySelector('.rows').textContent + ' ' + r.querySelector('.status').textContent)`, &rows))
		if strings.Join(rows, ",") == "customers 2000 done" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history on B: %v", rows)
		}
		time.Sleep(300 * time.Millisecond)
	}
	browsertest.Screenshot(t, tabB, "sync-history.png")
	if a.checksum(t, "customers", "id") != b.checksum(t, "customers", "id") {
		t.Fatal("customers differ after the pull")
	}
	// A's connection page lists the send.
	var sends int
	if err := chromedp.Run(tabA, chromedp.Reload(), chromedp.WaitVisible(`#status`, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelectorAll('table.transfers tbody tr').length`, &sends)); err != nil {
		t.Fatal(err)
	}
	if sends != 1 {
		t.Fatalf("connection page shows %d transfers", sends)
	}
	browsertest.Screenshot(t, tabA, "sync-connection.png")
	// Regenerating the token from the page tells B, whose next pull still works.
	var flash, newToken string
	if err := chromedp.Run(tabA, chromedp.Click(`#regenerate`, chromedp.ByQuery), chromedp.WaitVisible(`#token`, chromedp.ByQuery),
		chromedp.Text(`#token`, &newToken, chromedp.ByQuery), chromedp.Text(`.flash`, &flash, chromedp.ByQuery)); err != nil {
		t.Fatalf("regenerate: %v", err)
	}
	if newToken == token || !strings.Contains(flash, "was told") {
		t.Fatalf("regenerate: token changed %v, flash %q", newToken != token, flash)
	}
}

func TestReceivePageCancel(t *testing.T) {
	a := startSite(t, siteOptions{})
	a.exec(t, `CREATE TABLE big (id bigint PRIMARY KEY, v text); INSERT INTO big SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 400000) i`)
	b := startSite(t, siteOptions{})
	browser := browsertest.New(t, nil)
	tabB, closeB := chromedp.NewContext(browser)
	defer closeB()
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
