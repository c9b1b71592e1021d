package main_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fiberkit/fiberkit/host/browsertest"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
)

func TestConnectionPagesCreateApprovePullHistory(t *testing.T) {
	t.Setenv("FIBERKIT_SECRET_KEY", "another-test-key-for-remote-tokens")
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{})
	tabA, tabB := browserTabs(t)

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

// A connection past its expiry reads "expired" on the pages before any request
// found out, and its page offers to reactivate it; refused changes are shown in the
// page, not as bare text.
func TestExpiredConnectionOnThePages(t *testing.T) {
	a := startSite(t, siteOptions{})
	soon := time.Now().Add(2 * time.Second).UTC()
	c := a.newConnection(t, connection.Limits{ExpiresAt: &soon}, true)
	time.Sleep(time.Until(soon) + 500*time.Millisecond)
	get := func(path string) string {
		t.Helper()
		_, body := testsupport.Get(t, a.url+path)
		return body
	}
	if list := get("/admin/fiberkit/sync/connections"); !strings.Contains(list, `<td class="status">expired</td>`) {
		t.Fatalf("the list does not say expired:\n%s", list)
	}
	page := get("/admin/fiberkit/sync/connections/" + c.ID)
	if !strings.Contains(page, `<dd id="status">expired</dd>`) || !regexp.MustCompile(`id="approve"[^>]*>Reactivate<`).MatchString(page) {
		t.Fatalf("the connection page offers no reactivation:\n%s", page)
	}
	code, body := adminForm(t, a, "/admin/fiberkit/sync/connections/"+c.ID, "/admin/fiberkit/sync/connections/"+c.ID+"/status", url.Values{"status": {"bogus"}})
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "<html") || !strings.Contains(body, `role="alert"`) {
		t.Fatalf("refused status: HTTP %d %s", code, body)
	}
	code, body = adminForm(t, a, "/admin/fiberkit/sync/connections/"+c.ID, "/admin/fiberkit/sync/connections/"+c.ID+"/limits", url.Values{"max_downloads": {"many"}})
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "<html") || !strings.Contains(body, "many") {
		t.Fatalf("refused limits: HTTP %d %s", code, body)
	}
}
