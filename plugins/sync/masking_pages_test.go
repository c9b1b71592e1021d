package main_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fiberkit/fiberkit/host/browsertest"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// In headless Chromium: a connection page's masking rules — one a column cannot
// take is refused with the reason and shown back as typed, nothing saved; good
// ones are saved and shown — and the transfer history page shows what a send
// masked (the connection's rules and the secret-column default), filtered by
// direction.
func TestMaskingPages(t *testing.T) {
	ctx := context.Background()
	a := startSite(t, siteOptions{})
	maskedShop(t, a)
	c := a.newConnection(t, connection.Limits{}, true)
	tab := browsertest.New(t, nil)
	admin := a.url + "/admin/fiberkit/sync"
	connPage := admin + "/connections/" + c.ID
	saveLimits := chromedp.Click(`form[action$="/limits"] button[type=submit]`, chromedp.ByQuery)

	bad := "customers.email: fake email\norders.qty: fake phone"
	if err := chromedp.Run(tab, chromedp.Navigate(connPage), chromedp.WaitVisible(`#l-masks`, chromedp.ByQuery),
		chromedp.SetValue(`#l-masks`, bad, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	submitPage(t, tab, "save a rule its column cannot take", saveLimits)
	var alert, typed string
	if err := chromedp.Run(tab, chromedp.WaitVisible(`p.error[role=alert]`, chromedp.ByQuery),
		chromedp.Text(`p.error[role=alert]`, &alert, chromedp.ByQuery),
		chromedp.Value(`#l-masks`, &typed, chromedp.ByQuery)); err != nil {
		t.Fatalf("no visible error for a bad rule: %v", err)
	}
	if !strings.Contains(alert, "not saved") || !strings.Contains(alert, "fake works on text") || !strings.Contains(alert, "orders.qty") {
		t.Fatalf("the refusal says %q", alert)
	}
	if typed != bad {
		t.Fatalf("the refused form shows %q, not what was typed", typed)
	}
	if l := a.limits(t, c.ID); len(l.Masks) != 0 {
		t.Fatalf("a refused form saved masks: %+v", l.Masks)
	}

	good := "customers.email: fake email\ncustomers.id: hash\norders.customer_id: hash"
	if err := chromedp.Run(tab, chromedp.SetValue(`#l-masks`, good, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	submitPage(t, tab, "save masking rules", saveLimits)
	var shown string
	var errs int
	if err := chromedp.Run(tab, chromedp.Reload(), chromedp.WaitVisible(`#l-masks`, chromedp.ByQuery),
		chromedp.Value(`#l-masks`, &shown, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelectorAll('p.error').length`, &errs)); err != nil {
		t.Fatal(err)
	}
	for _, rule := range strings.Split(good, "\n") {
		if !strings.Contains(shown, rule) {
			t.Fatalf("after saving, the page shows the rules %q: %q missing", shown, rule)
		}
	}
	if l := a.limits(t, c.ID); len(l.Masks) != 3 || errs != 0 {
		t.Fatalf("saved masks %+v (%d errors on the page)", l.Masks, errs)
	}

	// A pull under those rules, then the sender's history page.
	b := startSite(t, siteOptions{})
	cl, err := client.Connect(ctx, a.url, "", client.Options{Token: c.Token})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Transfer(ctx, b.pool, "customers", client.TransferOptions{CreateMissing: true, Compression: wire.CompressionNone}); err != nil {
		t.Fatal(err)
	}
	if n := testsupport.Count(t, b.pool, `SELECT count(*) FROM customers WHERE email LIKE 'zq-mail-%' OR password_hash <> 'redacted'`); n != 0 {
		t.Fatalf("%d customers arrived unmasked", n)
	}
	// The sender records a send once it ended, which may be just after the pull
	// returned: the filter is used until the entry is there.
	var rows []string
	untilPage(t, tab, admin+"/history", "the history lists the masked send", 15*time.Second, func() (bool, any) {
		if err := chromedp.Run(tab, chromedp.SetValue(`select[name=direction]`, "send", chromedp.ByQuery)); err != nil {
			t.Fatal(err)
		}
		submitPage(t, tab, "filter the history by direction", chromedp.Click(`form[aria-label=Filter] button[type=submit]`, chromedp.ByQuery))
		if err := chromedp.Run(tab, chromedp.Evaluate(`Array.from(document.querySelectorAll('#history tbody tr')).map(r =>
			r.querySelector('.direction').textContent + ' | ' + r.querySelector('.table').textContent + ' | ' + r.querySelector('.notes').textContent)`, &rows)); err != nil {
			t.Fatal(err)
		}
		return len(rows) == 1 && strings.HasPrefix(rows[0], "send | customers | masked: "), rows
	})
	for _, want := range []string{"customers.id: hash", "customers.email: fake email", "customers.password_hash: fixed redacted"} {
		if !strings.Contains(rows[0], want) {
			t.Errorf("the send's notes %q lack %q", rows[0], want)
		}
	}
	browsertest.Screenshot(t, tab, "sync-history-masked-send.png")
}
