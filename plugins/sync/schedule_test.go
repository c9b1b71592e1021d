package main_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/connection"
)

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

// lastRun reads a remote's last run from the database.
func lastRun(t *testing.T, pool *pgxpool.Pool, id string) (time.Time, string) {
	t.Helper()
	var at *time.Time
	var status string
	if err := pool.QueryRow(context.Background(), `SELECT last_run_at, last_status FROM fiberkit_sync_remotes WHERE id::text = $1`, id).Scan(&at, &status); err != nil {
		t.Fatal(err)
	}
	if at == nil {
		return time.Time{}, status
	}
	return *at, status
}

// waitRun waits for a run of remote id that ended after since.
func waitRun(t *testing.T, pool *pgxpool.Pool, id string, since time.Time) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		at, status := lastRun(t, pool, id)
		if at.After(since) {
			if status != "done" {
				t.Fatalf("scheduled run: %s", status)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no scheduled run after %v (last %v %q)", since, at, status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A schedule set from the Connections page runs, and keeps running after the site
// (host and plugin) restarts on the same database.
func TestScheduleSurvivesARestart(t *testing.T) {
	t.Setenv("FIBERKIT_SECRET_KEY", "schedule-test-key")
	a := seeded(t, siteOptions{})
	token := a.newConnection(t, connection.Limits{}, true).Token
	b := startSite(t, siteOptions{})
	var r struct {
		ID string `json:"id"`
	}
	if err := b.call(t, "add_remote", map[string]any{"name": "prod", "url": a.url, "token": token}, &r); err != nil {
		t.Fatal(err)
	}
	if at, _ := lastRun(t, b.pool, r.ID); !at.IsZero() {
		t.Fatal("an unscheduled remote ran")
	}
	// A bad schedule is refused on the page, in the page.
	code, body := adminForm(t, b, "/admin/fiberkit/sync/connections", "/admin/fiberkit/sync/remotes/"+r.ID+"/schedule",
		url.Values{"tables": {"products"}, "strategy": {"overwrite"}, "interval_seconds": {"soon"}})
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, `role="alert"`) || !strings.Contains(body, "<html") {
		t.Fatalf("bad schedule: HTTP %d %s", code, body)
	}
	code, body = adminForm(t, b, "/admin/fiberkit/sync/connections", "/admin/fiberkit/sync/remotes/"+r.ID+"/schedule",
		url.Values{"tables": {"products"}, "strategy": {"overwrite"}, "interval_seconds": {"2"}})
	if code != http.StatusSeeOther {
		t.Fatalf("schedule: HTTP %d %s", code, body)
	}
	waitRun(t, b.pool, r.ID, time.Time{})
	if n := b.checksum(t, "products", "sku"); n != a.checksum(t, "products", "sku") {
		t.Fatal("products differ after the scheduled pull")
	}

	// Restart: the host and its plugin go away; a new one starts on the database.
	_ = b.app.ShutdownWithTimeout(time.Second)
	_ = b.kit.Close()
	last, _ := lastRun(t, b.pool, r.ID)
	b.exec(t, `DELETE FROM products`)
	b2 := startSite(t, siteOptions{db: b.db})
	waitRun(t, b2.pool, r.ID, last)
	if b2.checksum(t, "products", "sku") != a.checksum(t, "products", "sku") {
		t.Fatal("products not pulled again after the restart")
	}
}

// The public token-change endpoint is rate-limited per client address.
func TestRemoteTokenEndpointIsRateLimited(t *testing.T) {
	b := startSite(t, siteOptions{})
	codes := map[int]int{}
	for range 30 {
		resp, err := http.Post(b.url+"/fiberkit/sync/api/remote-token", "application/json",
			strings.NewReader(`{"old_hash":"`+strings.Repeat("ab", 32)+`","new_token":"fkc_x"}`))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes[resp.StatusCode]++
	}
	if codes[http.StatusTooManyRequests] == 0 || codes[http.StatusNotFound] == 0 {
		t.Fatalf("30 rapid requests: %v (want some 404 unknown token, then 429)", codes)
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
		resp, err := http.Get(a.url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
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
