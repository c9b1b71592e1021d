package main_test

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// A receiving plugin killed with SIGKILL mid-pull keeps its record: the pull was
// recorded as running before rows moved and its last key as batches landed, so the
// restarted plugin finds it without a live owner and marks it interrupted, with the
// key of the last row applied (the local table's greatest, here, as the table was
// created by the pull); the transfer_history operation and the Receive page show
// it, the page offering to resume; resuming from the page (in a browser) with a new
// code pulls the rest after that key, and the interrupted entry then says resumed.
func TestReceiverKilledMidPullKeepsItsRecordAndResumes(t *testing.T) {
	a := bigSender(t)
	b := startSite(t, siteOptions{})
	ctx := context.Background()
	st, _ := b.kit.Module("sync")

	payload, _ := json.Marshal(map[string]any{"url": a.url, "code": a.newCode(t).Code, "tables": []string{"big"}, "strategy": "skip",
		"create_missing": true, "batch_size": 500})
	pulled := make(chan error, 1)
	go func() {
		_, err := b.kit.Call(ctx, "admin", "sync", "pull", payload)
		pulled <- err
	}()
	// Kill the receiving plugin once the history holds a running entry with a key.
	testsupport.Eventually(t, "a checkpoint of the running pull", func() bool {
		var n int
		_ = b.pool.QueryRow(ctx, `SELECT count(*) FROM fiberkit_sync_transfers
			WHERE direction = 'receive' AND table_name = 'big' AND status = 'running' AND rows > 0 AND last_key IS NOT NULL`).Scan(&n)
		return n == 1
	})
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-pulled; err == nil {
		t.Fatal("the pull finished although its plugin was killed")
	}
	testsupport.Eventually(t, "the sync plugin restarted", func() bool {
		now, _ := b.kit.Module("sync")
		return now.State == host.StateRunning && now.PID != st.PID
	})

	// The history says interrupted, with the last key applied (the killed plugin's
	// last batch may commit a moment after it died: the key follows).
	var interrupted []syncapi.Transfer
	var here int64
	var maxKey string
	testsupport.Eventually(t, "the pull marked interrupted with the last key applied", func() bool {
		interrupted = nil
		err := b.call(t, "transfer_history", syncapi.HistoryRequest{HistoryFilter: syncapi.HistoryFilter{Direction: "receive", Status: "interrupted"}}, &interrupted)
		if err != nil || len(interrupted) != 1 {
			return false
		}
		if err := b.pool.QueryRow(ctx, `SELECT count(*), max(id)::text FROM big`).Scan(&here, &maxKey); err != nil {
			t.Fatal(err)
		}
		return slices.Equal(interrupted[0].LastKey, []string{maxKey})
	})
	e := interrupted[0]
	if here == 0 || here >= 60000 {
		t.Fatalf("the kill left %d rows: not mid-pull", here)
	}
	if e.Table != "big" || e.PullID == "" || e.Peer != a.url || e.Strategy != "skip" || !strings.Contains(e.Error, "stopped mid-pull") ||
		len(e.LastKey) != 1 || e.LastKey[0] != maxKey || e.Rows <= 0 || e.Rows > here {
		t.Fatalf("interrupted entry %+v; the table holds %d rows up to key %s", e, here, maxKey)
	}

	// The Receive page shows it and offers to resume.
	_, page := testsupport.Get(t, b.url+"/admin/fiberkit/sync/receive")
	for _, want := range []string{"Interrupted pulls", `data-pull="` + e.PullID + `"`, `<span class="last-key">` + maxKey + `</span>`, "Resume"} {
		if !strings.Contains(page, want) {
			t.Fatalf("the Receive page lacks %q:\n%s", want, page)
		}
	}

	// Resuming from the page with a new code pulls the rest, after the key.
	tab, _ := browserTabs(t)
	form := `form.resume[data-pull="` + e.PullID + `"]`
	if err := chromedp.Run(tab,
		chromedp.Navigate(b.url+"/admin/fiberkit/sync/receive"),
		chromedp.WaitVisible(form+` input[name="code"]`, chromedp.ByQuery),
		chromedp.SendKeys(form+` input[name="code"]`, a.newCode(t).Code, chromedp.ByQuery),
		chromedp.Click(form+` button[type="submit"]`, chromedp.ByQuery),
	); err != nil {
		t.Fatalf("resume form: %v", err)
	}
	waitState(t, tab, "done")
	var created string
	if err := chromedp.Run(tab, chromedp.Text(`#results tr[data-table="big"] .created`, &created, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	if want := strconv.FormatInt(60000-here, 10); strings.ReplaceAll(created, ",", "") != want {
		t.Fatalf("the resumed pull created %s rows, want %s (after key %s)", created, want, maxKey)
	}
	sameTable(t, a, b, "big", "id", "after the resume")
	var after []syncapi.Transfer
	if err := b.call(t, "transfer_history", syncapi.HistoryRequest{HistoryFilter: syncapi.HistoryFilter{Direction: "receive", Table: "big"}}, &after); err != nil {
		t.Fatal(err)
	}
	if len(after) != 2 || after[0].Status != "done" || after[1].Status != "resumed" || after[1].PullID != e.PullID {
		t.Fatalf("history after the resume: %+v", after)
	}
	if _, page := testsupport.Get(t, b.url+"/admin/fiberkit/sync/receive"); strings.Contains(page, "Interrupted pulls") {
		t.Fatal("the Receive page still offers a resumed pull")
	}
}
