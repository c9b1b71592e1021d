package main_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fiberkit/fiberkit/host/browsertest"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// lsnPattern is a WAL position as the pages print it ("0/16B3748").
var lsnPattern = regexp.MustCompile(`^[0-9A-F]+/[0-9A-F]+$`)

// submitPage runs act (a click that submits a form) in tab and waits for the page it
// leads to to be loaded: the old document is marked first, so that what the next
// actions read is the new page, not the one the form was on.
func submitPage(t *testing.T, tab context.Context, what string, act chromedp.Action) {
	t.Helper()
	var ok bool
	if err := chromedp.Run(tab, chromedp.Evaluate(`window.__before = true`, &ok), act); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	waitJS(t, tab, what, `!window.__before && document.readyState === "complete"`, 15*time.Second)
}

// rowCells returns the text of each cell of the first row sel matches in tab (nil
// when there is none).
func rowCells(t *testing.T, tab context.Context, sel string) []string {
	t.Helper()
	var cells []string
	js := `(() => { const r = document.querySelector(` + jsString(sel) + `); return r ? Array.from(r.cells).map(c => c.textContent.trim()) : null })()`
	if err := chromedp.Run(tab, chromedp.Evaluate(js, &cells)); err != nil {
		t.Fatalf("read %s: %v", sel, err)
	}
	return cells
}

// factsOf returns the facts (dt → dd text) of the dl sel in tab.
func factsOf(t *testing.T, tab context.Context, sel string) map[string]string {
	t.Helper()
	var facts map[string]string
	js := `(() => { const dl = document.querySelector(` + jsString(sel) + `); if (!dl) return null; const out = {};
		dl.querySelectorAll('dt').forEach(dt => { out[dt.textContent.trim()] = dt.nextElementSibling.textContent.trim() }); return out })()`
	if err := chromedp.Run(tab, chromedp.Evaluate(js, &facts)); err != nil {
		t.Fatalf("read %s: %v", sel, err)
	}
	return facts
}

// untilPage loads url in tab again and again until ok holds on it, failing after d
// with what it last saw.
func untilPage(t *testing.T, tab context.Context, url, what string, d time.Duration, ok func() (bool, any)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if err := chromedp.Run(tab, chromedp.Navigate(url), chromedp.WaitReady(`body`, chromedp.ByQuery)); err != nil {
			t.Fatalf("%s: load %s: %v", what, url, err)
		}
		good, seen := ok()
		if good {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; the page shows %q", what, d, seen)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// An admin lets a connection follow from its page, another site's admin adds the
// sending site as a remote to follow from the connections page, and both
// overviews and the connection page show the follow as it runs and as it ends.
func TestFollowPages(t *testing.T) {
	t.Setenv("FIBERKIT_SECRET_KEY", "follow-pages-test-key-0123456789")
	a := followSender(t, "")
	b := startSite(t, siteOptions{})
	a.exec(t, itemsTable)
	a.exec(t, `INSERT INTO items (id, v) SELECT i, md5(i::text) FROM generate_series(1, 200) i;
		CREATE TABLE notes (id int PRIMARY KEY, body text)`)
	c := a.newConnection(t, connection.Limits{}, true)
	tabA, tabB := browserTabs(t)
	adminA, adminB := a.url+"/admin/fiberkit/sync", b.url+"/admin/fiberkit/sync"
	connPage := adminA + "/connections/" + c.ID
	saveLimits := chromedp.Click(`form[action$="/limits"] button[type=submit]`, chromedp.ByQuery)

	// 1. The sending site: May follow, the tables and a rate. A table that does not
	// exist is refused, with the reason on the page, and nothing is saved.
	var checked bool
	if err := chromedp.Run(tabA, chromedp.Navigate(connPage), chromedp.WaitVisible(`#l-follow`, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelector('#l-follow').checked`, &checked)); err != nil {
		t.Fatal(err)
	}
	if checked {
		t.Fatal("a connection created without follow shows May follow ticked")
	}
	if err := chromedp.Run(tabA, chromedp.Click(`#l-follow`, chromedp.ByQuery),
		chromedp.SetValue(`#l-follow-tables`, "items, no_such_table", chromedp.ByQuery),
		chromedp.SetValue(`#l-follow-rate`, "500", chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	submitPage(t, tabA, "save limits with an unknown table", saveLimits)
	var alert string
	if err := chromedp.Run(tabA, chromedp.WaitVisible(`p.error[role=alert]`, chromedp.ByQuery),
		chromedp.Text(`p.error[role=alert]`, &alert, chromedp.ByQuery)); err != nil {
		t.Fatalf("no visible error for an unknown follow table: %v", err)
	}
	if !strings.Contains(alert, "not saved") || !strings.Contains(alert, "no_such_table") {
		t.Fatalf("the refusal says %q", alert)
	}
	l := a.limits(t, c.ID)
	if l.Follow || len(l.FollowTables) > 0 || l.FollowChangesPerSecond != 0 {
		t.Fatalf("a refused form saved limits: %+v", l)
	}
	// The refused form is shown back as typed: fix the table alone and save.
	var tables, rate string
	if err := chromedp.Run(tabA, chromedp.Evaluate(`document.querySelector('#l-follow').checked`, &checked),
		chromedp.Value(`#l-follow-tables`, &tables, chromedp.ByQuery),
		chromedp.Value(`#l-follow-rate`, &rate, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	if !checked || tables != "items, no_such_table" || rate != "500" {
		t.Fatalf("the refused form shows May follow %v, tables %q, rate %q: not what was typed", checked, tables, rate)
	}
	if err := chromedp.Run(tabA, chromedp.SetValue(`#l-follow-tables`, "items", chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	submitPage(t, tabA, "save limits", saveLimits)
	var errs int
	if err := chromedp.Run(tabA, chromedp.Reload(), chromedp.WaitVisible(`#l-follow`, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelector('#l-follow').checked`, &checked),
		chromedp.Value(`#l-follow-tables`, &tables, chromedp.ByQuery),
		chromedp.Value(`#l-follow-rate`, &rate, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelectorAll('p.error').length`, &errs)); err != nil {
		t.Fatal(err)
	}
	if !checked || tables != "items" || rate != "500" || errs != 0 {
		t.Fatalf("after saving, the page shows May follow %v, tables %q, rate %q (%d errors)", checked, tables, rate, errs)
	}
	if l := a.limits(t, c.ID); !l.Follow || strings.Join(l.FollowTables, ",") != "items" || l.FollowChangesPerSecond != 500 {
		t.Fatalf("saved limits: %+v", l)
	}

	// 2. The receiving site adds the sender as a remote to follow — first with its
	// own URL, refused (a site never pulls from itself): the remote form comes back
	// open with what was typed, but the token.
	if err := chromedp.Run(tabB, chromedp.Navigate(adminB+"/connections"),
		chromedp.Click(`#new-remote summary`, chromedp.ByQuery),
		chromedp.SendKeys(`#r-name`, "prod", chromedp.ByQuery),
		chromedp.SendKeys(`#r-url`, b.url, chromedp.ByQuery),
		chromedp.SendKeys(`#r-token`, c.Token, chromedp.ByQuery),
		chromedp.SendKeys(`#r-tables`, "items", chromedp.ByQuery),
		chromedp.SetValue(`#r-strategy`, "overwrite", chromedp.ByQuery),
		chromedp.Click(`#r-follow`, chromedp.ByQuery)); err != nil {
		t.Fatalf("remote form: %v", err)
	}
	submitPage(t, tabB, "add the remote with the site's own URL", chromedp.Click(`#add-remote`, chromedp.ByQuery))
	var open, connOpen bool
	var name, strategy, token string
	if err := chromedp.Run(tabB, chromedp.WaitVisible(`p.error[role=alert]`, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelector('#new-remote').open`, &open),
		chromedp.Evaluate(`document.querySelector('#new-connection').open`, &connOpen),
		chromedp.Value(`#r-name`, &name, chromedp.ByQuery), chromedp.Value(`#r-tables`, &tables, chromedp.ByQuery),
		chromedp.Value(`#r-strategy`, &strategy, chromedp.ByQuery), chromedp.Value(`#r-token`, &token, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelector('#r-follow').checked`, &checked)); err != nil {
		t.Fatalf("the refused remote form: %v", err)
	}
	if !open || connOpen || name != "prod" || tables != "items" || strategy != "overwrite" || !checked || token != "" {
		t.Fatalf("the refused remote form: open %v (new connection open %v), name %q, tables %q, strategy %q, follow %v, token %q",
			open, connOpen, name, tables, strategy, checked, token)
	}
	if err := chromedp.Run(tabB, chromedp.SetValue(`#r-url`, a.url, chromedp.ByQuery),
		chromedp.SendKeys(`#r-token`, c.Token, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	submitPage(t, tabB, "add the remote", chromedp.Click(`#add-remote`, chromedp.ByQuery))
	remoteRow := rowCells(t, tabB, `#remotes tbody tr`)
	if len(remoteRow) < 4 || remoteRow[0] != "prod" || remoteRow[1] != a.url || remoteRow[2] != "items (overwrite)" || remoteRow[3] != "follows" {
		t.Fatalf("the remotes table shows %q", remoteRow)
	}
	var remoteID string
	if err := chromedp.Run(tabB, chromedp.Evaluate(`document.querySelector('#remotes tbody tr').dataset.id`, &remoteID)); err != nil {
		t.Fatal(err)
	}
	// The plugin follows it: the overview's Following section shows the sender.
	var follows []string
	untilPage(t, tabB, adminB+"/", "the receiver's overview shows the follow", 30*time.Second, func() (bool, any) {
		follows = rowCells(t, tabB, `#follows tbody tr[data-id="remote:`+remoteID+`"]`)
		return len(follows) == 6 && follows[2] == "following", follows
	})
	if follows[0] != a.url || follows[1] != "items (overwrite)" || !lsnPattern.MatchString(follows[3]) {
		t.Fatalf("the follow's row: %q", follows)
	}
	waitSameTable(t, a, b, "items", "id", time.Minute)
	// A write on the sender arrives, and the lag comes down to none.
	var before string
	if err := a.pool.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	a.exec(t, `INSERT INTO items (id, v) VALUES (1001, 'written after the copy'); UPDATE items SET n = n + 1 WHERE id = 7`)
	deadline := time.Now().Add(15 * time.Second)
	for {
		var v string
		var n int
		err := b.pool.QueryRow(context.Background(), `SELECT v, (SELECT n FROM items WHERE id = 7) FROM items WHERE id = 1001`).Scan(&v, &n)
		if err == nil && v == "written after the copy" && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sender's write did not arrive: %v %q %d", err, v, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	untilPage(t, tabB, adminB+"/", "the receiver's follow is caught up", 15*time.Second, func() (bool, any) {
		follows = rowCells(t, tabB, `#follows tbody tr[data-id="remote:`+remoteID+`"]`)
		return len(follows) == 6 && follows[2] == "following" && follows[4] == "caught up", follows
	})
	if follows[5] != "2 / 0" {
		t.Fatalf("changes / conflicts: %q (want the insert and the update, no conflict)", follows[5])
	}
	if applied := parseLSN(t, follows[3]); applied <= parseLSN(t, before) {
		t.Fatalf("applied up to %s, not past the WAL before the write (%s)", follows[3], before)
	}
	browsertest.Screenshot(t, tabB, "sync-follow-receiver.png")
	// The history page lists the follow, with its lag, under its own direction.
	var followRows []string
	untilPage(t, tabB, adminB+"/history?direction=follow", "the history lists the follow", 15*time.Second, func() (bool, any) {
		_ = chromedp.Run(tabB, chromedp.Evaluate(`Array.from(document.querySelectorAll('#history tbody tr')).map(r =>
			r.querySelector('.direction').textContent + ' | ' + r.querySelector('.table').textContent + ' | ' +
			r.querySelector('.status').textContent + ' | ' + (r.querySelector('.lag') || {textContent: ''}).textContent)`, &followRows))
		return len(followRows) > 0 && strings.HasPrefix(followRows[0], "follow | items | running | lag "), followRows
	})

	// 3. The sending site lists the follower, connected, its acknowledged position
	// past the write, and caught up (the WAL the sender writes meanwhile for other
	// tables, its own records included, is no lag of the follower's).
	var followers []string
	untilPage(t, tabA, adminA+"/", "the sender's overview shows the follower caught up", 15*time.Second, func() (bool, any) {
		followers = rowCells(t, tabA, `#followers tbody tr[data-id="`+c.ID+`"]`)
		return len(followers) == 5 && followers[2] == "yes" && lsnPattern.MatchString(followers[3]) &&
			parseLSN(t, followers[3]) > parseLSN(t, before) && followers[4] == "caught up", followers
	})
	if followers[0] != "dev laptop" || followers[1] != "items" {
		t.Fatalf("the follower's row: %q", followers)
	}
	var facts map[string]string
	untilPage(t, tabA, connPage, "the connection page shows the follower", 10*time.Second, func() (bool, any) {
		facts = factsOf(t, tabA, `#follower`)
		return facts["Connected"] == "yes", facts
	})
	ack, at, _ := strings.Cut(facts["Acknowledged"], " at ")
	if facts["Tables"] != "items" || !lsnPattern.MatchString(ack) || parseLSN(t, ack) <= parseLSN(t, before) ||
		!regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`).MatchString(at) || facts["Lag"] != "caught up" {
		t.Fatalf("the connection page's follower: %q", facts)
	}
	browsertest.Screenshot(t, tabA, "sync-follow-sender-connection.png")

	// 4. Unticking Follow continuously ends the follow: stopped on the receiver, not
	// connected on the sender.
	if err := chromedp.Run(tabB, chromedp.Navigate(adminB+"/connections"),
		chromedp.Click(`#remotes tr[data-id="`+remoteID+`"] details.edit-schedule summary`, chromedp.ByQuery),
		chromedp.WaitVisible(`#s-follow-`+remoteID, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelector('#s-follow-`+remoteID+`').checked`, &checked)); err != nil {
		t.Fatalf("edit the schedule: %v", err)
	}
	if !checked {
		t.Fatal("the schedule form of a followed remote shows Follow continuously unticked")
	}
	submitPage(t, tabB, "save the schedule", chromedp.ActionFunc(func(ctx context.Context) error {
		return chromedp.Run(ctx, chromedp.Click(`#s-follow-`+remoteID, chromedp.ByQuery),
			chromedp.Click(`#remotes tr[data-id="`+remoteID+`"] button.save-schedule`, chromedp.ByQuery))
	}))
	if remoteRow = rowCells(t, tabB, `#remotes tbody tr`); len(remoteRow) < 4 || remoteRow[3] != "—" {
		t.Fatalf("after unticking follow the remotes table shows %q", remoteRow)
	}
	untilPage(t, tabB, adminB+"/", "the receiver's follow stops", 15*time.Second, func() (bool, any) {
		follows = rowCells(t, tabB, `#follows tbody tr[data-id="remote:`+remoteID+`"]`)
		return len(follows) == 6 && follows[2] == "stopped", follows
	})
	untilPage(t, tabA, adminA+"/", "the sender's follower disconnects", 15*time.Second, func() (bool, any) {
		followers = rowCells(t, tabA, `#followers tbody tr[data-id="`+c.ID+`"]`)
		return len(followers) == 5 && followers[2] == "no", followers
	})
	untilPage(t, tabA, connPage, "the connection page's follower disconnects", 5*time.Second, func() (bool, any) {
		facts = factsOf(t, tabA, `#follower`)
		return facts["Connected"] == "no", facts
	})
	// Nothing follows any more: a later write stays on the sender.
	a.exec(t, `INSERT INTO items (id, v) VALUES (1002, 'written after the follow ended')`)
	time.Sleep(2 * time.Second)
	var n int
	if err := b.pool.QueryRow(context.Background(), `SELECT count(*) FROM items WHERE id = 1002`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("a write after the follow ended reached the receiver (%d rows, %v)", n, err)
	}
}

// limits reads a connection's saved limits through the get_connection operation.
func (s *site) limits(t *testing.T, id string) connection.Limits {
	t.Helper()
	var c struct {
		Limits connection.Limits `json:"limits"`
	}
	if err := s.call(t, "get_connection", map[string]string{"id": id}, &c); err != nil {
		t.Fatal(err)
	}
	return c.Limits
}

// parseLSN reads a WAL position a page shows.
func parseLSN(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := wire.ParseLSN(s)
	if err != nil {
		t.Fatalf("position %q: %v", s, err)
	}
	return n
}
