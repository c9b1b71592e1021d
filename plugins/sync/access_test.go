package main_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
)

// A receiver reads only what request:tables lists: not the kit's own tables, not
// another schema, and not an excluded table under another spelling of its name.
func TestSenderServesOnlyListedTablesWhateverTheSpelling(t *testing.T) {
	ctx := context.Background()
	a := seeded(t, siteOptions{})
	a.exec(t, `CREATE SCHEMA private; CREATE TABLE private.api_keys (id int PRIMARY KEY, key text); INSERT INTO private.api_keys VALUES (1, 'sk_live_secret')`)

	code := a.newCode(t).Code
	cl, err := client.Connect(ctx, a.url, code, client.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, tbl := range []string{"fiberkit_csrf", "public.fiberkit_csrf", "fiberkit_settings", "fiberkit_sync_sessions", "private.api_keys"} {
		if n, err := cl.GetCount(ctx, tbl); remoteCode(err) != "unknown_table" {
			t.Errorf("count %s: %d, %v (want unknown_table)", tbl, n, err)
		}
		if _, err := cl.FetchRecords(ctx, tbl, 0, 10); remoteCode(err) != "unknown_table" {
			t.Errorf("records %s: %v (want unknown_table)", tbl, err)
		}
	}
	// The same table by its qualified name is served like the bare one.
	if n, err := cl.GetCount(ctx, "public.products"); err != nil || n != 300 {
		t.Fatalf("public.products: %d %v", n, err)
	}

	c := a.newConnection(t, connection.Limits{ExcludedTables: []string{"products"}}, true)
	tc, err := dialToken(t, a, c.Token)
	if err != nil {
		t.Fatal(err)
	}
	for _, tbl := range []string{"products", "public.products"} {
		if n, err := tc.GetCount(ctx, tbl); err == nil {
			t.Errorf("excluded table read as %q: %d rows", tbl, n)
		}
		if _, err := tc.Transfer(ctx, startSite(t, siteOptions{}).pool, tbl, client.TransferOptions{CreateMissing: true}); err == nil {
			t.Errorf("excluded table transferred as %q", tbl)
		}
	}
}

// Codes are accepted as a person types them: lower case, with spaces around.
func TestCodeAcceptedInLowerCaseWithSpaces(t *testing.T) {
	a := seeded(t, siteOptions{})
	code := a.newCode(t).Code
	cl, err := client.Connect(context.Background(), a.url, "  "+strings.ToLower(code)+" ", client.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("lower-case code refused: %v", err)
	}
	defer cl.Close()
	if _, err := cl.ListTables(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A receiver that leaves while waiting for approval disappears from the pending
// list, and the history says it was abandoned.
func TestAbandonedApprovalRequestIsWithdrawn(t *testing.T) {
	a := startSite(t, siteOptions{mode: "require_approval"})
	code := a.newCode(t).Code
	ctx, cancel := context.WithCancel(context.Background())
	waiting := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := client.Connect(ctx, a.url, code, client.Options{
			Timeout: 30 * time.Second, OnAwaitingApproval: func() { close(waiting) },
		})
		done <- err
	}()
	select {
	case <-waiting:
	case err := <-done:
		t.Fatalf("connect finished before approval: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("receiver never told to wait")
	}
	var pending []struct {
		ID string `json:"id"`
	}
	if err := a.call(t, "pending_approvals", struct{}{}, &pending); err != nil || len(pending) != 1 {
		t.Fatalf("pending before leaving: %+v %v", pending, err)
	}
	cancel()
	<-done
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := a.call(t, "pending_approvals", struct{}{}, &pending); err != nil {
			t.Fatal(err)
		}
		var status string
		_ = a.pool.QueryRow(context.Background(), `SELECT status FROM fiberkit_sync_transfers WHERE table_name = '(connection request)'`).Scan(&status)
		if len(pending) == 0 && status == "abandoned" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the receiver left: pending %+v, history status %q", pending, status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Rows refused on the receiver count as failed in the history — all of them, not
// only the ones listed — and never as skipped.
func TestHistoryCountsFailedRowsApartFromSkipped(t *testing.T) {
	a := seeded(t, siteOptions{})
	b := seeded(t, siteOptions{})
	// B refuses every new customer whose id is a multiple of 10.
	b.exec(t, `DELETE FROM order_items; DELETE FROM orders; DELETE FROM customers WHERE id > 1000;
		CREATE FUNCTION refuse_tens() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.id > 1000 AND NEW.id % 10 = 0 THEN RAISE EXCEPTION 'no customer %', NEW.id; END IF; RETURN NEW; END $$;
		CREATE TRIGGER refuse_tens BEFORE INSERT OR UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION refuse_tens()`)
	var res map[string]client.Result
	if err := b.call(t, "pull", map[string]any{"url": a.url, "code": a.newCode(t).Code, "strategy": "skip", "tables": []string{"customers"}}, &res); err != nil {
		t.Fatal(err)
	}
	// 1000 kept, 1000 new of which 100 refused.
	if r := res["customers"]; r.Created != 900 || r.Skipped != 1000 || r.Failed != 100 || len(r.Errors) == 0 {
		t.Fatalf("result: created %d skipped %d failed %d errors listed %d", r.Created, r.Skipped, r.Failed, len(r.Errors))
	}
	var created, skipped, failed int
	var requested, rows, bytes int64
	if err := b.pool.QueryRow(context.Background(), `SELECT created, skipped, failed, requested, rows, bytes FROM fiberkit_sync_transfers
		WHERE direction = 'receive' AND table_name = 'customers'`).Scan(&created, &skipped, &failed, &requested, &rows, &bytes); err != nil {
		t.Fatal(err)
	}
	if created != 900 || skipped != 1000 || failed != 100 || requested != 2000 || rows != 2000 || bytes <= 0 {
		t.Fatalf("history row: created %d skipped %d failed %d requested %d rows %d bytes %d", created, skipped, failed, requested, rows, bytes)
	}
}

// A refused attempt still says who tried: the receiver info the client sends at
// the upgrade is recorded with the attempt.
func TestRefusedAttemptRecordsReceiverInfo(t *testing.T) {
	a := startSite(t, siteOptions{})
	_, err := client.Connect(context.Background(), a.url, "ABCDEFGH", client.Options{
		Timeout: 10 * time.Second, ReceiverInfo: map[string]any{"who": "nightly job"},
	})
	if !errors.Is(err, client.ErrInvalidCode) {
		t.Fatalf("wrong code: %v", err)
	}
	var who, outcome string
	if err := a.pool.QueryRow(context.Background(), `SELECT coalesce(receiver_info->>'who', ''), outcome FROM fiberkit_sync_attempts ORDER BY id DESC LIMIT 1`).Scan(&who, &outcome); err != nil {
		t.Fatal(err)
	}
	if who != "nightly job" || outcome == "" {
		t.Fatalf("attempt recorded as who=%q outcome=%q", who, outcome)
	}
}

// A receiver that vanishes without closing (a frozen network) does not keep the
// sender's snapshot open: the sender ends the connection after its idle time.
func TestSenderEndsASilentReceiver(t *testing.T) {
	a := seeded(t, siteOptions{pluginEnv: []string{"FIBERKIT_SYNC_RECEIVER_IDLE=2s"}})
	proxy := newFreezingProxy(t, strings.TrimPrefix(a.url, "http://"), 0)
	ctx := context.Background()
	c, err := client.Connect(ctx, "http://"+proxy.ln.Addr().String(), a.newCode(t).Code, client.Options{IdleTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.GetCount(ctx, "customers"); err != nil { // opens the snapshot
		t.Fatal(err)
	}
	open := func() int {
		var n int
		_ = a.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'`).Scan(&n)
		return n
	}
	if open() == 0 {
		t.Fatal("no snapshot transaction while the receiver is connected")
	}
	proxy.frozen.Store(true)
	deadline := time.Now().Add(15 * time.Second)
	for open() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sender still holds the silent receiver's snapshot 15 s later")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Receivers waiting for approval do not hold the sender's database pool: with more
// of them than the pool has connections, the Send page's list and the decisions
// still work and release every one.
func TestManyWaitingApprovalsDoNotStarveThePool(t *testing.T) {
	a := startSite(t, siteOptions{mode: "require_approval"})
	const n = 6 // the plugin's pool holds max(4, CPUs) connections
	ctx := context.Background()
	done := make(chan error, n)
	waiting := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		code := a.newCode(t).Code
		go func() {
			c, err := client.Connect(ctx, a.url, code, client.Options{
				Timeout: 60 * time.Second, OnAwaitingApproval: func() { waiting <- struct{}{} },
			})
			if err == nil {
				c.Close()
			}
			done <- err
		}()
	}
	for i := 0; i < n; i++ {
		select {
		case <-waiting:
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d receivers were told to wait", i)
		}
	}
	var pending []struct {
		ID string `json:"id"`
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for len(pending) < n && cctx.Err() == nil {
		if err := a.call(t, "pending_approvals", struct{}{}, &pending); err != nil {
			t.Fatal(err)
		}
	}
	if len(pending) != n {
		t.Fatalf("pending approvals: %d of %d", len(pending), n)
	}
	for _, p := range pending {
		if err := a.call(t, "approve", map[string]string{"id": p.ID}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("approved receiver: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of %d approved receivers still waiting", n-i, n)
		}
	}
}

// Pages read through request:records reach the sender's history (one row per
// table when the receiver leaves); a pull refused before any table leaves a row
// saying why; the history operation filters in the database.
func TestHistoryRecordsPagedReadsRefusedPullsAndFilters(t *testing.T) {
	ctx := context.Background()
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{})
	cl, err := client.Connect(ctx, a.url, a.newCode(t).Code, client.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < 250; off += 100 {
		if _, err := cl.FetchRecords(ctx, "customers", off, 100); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	type entry struct {
		Table     string `json:"table"`
		Direction string `json:"direction"`
		Rows      int64  `json:"rows"`
		Status    string `json:"status"`
		Error     string `json:"error"`
	}
	var sent []entry
	deadline := time.Now().Add(10 * time.Second)
	for len(sent) == 0 && time.Now().Before(deadline) {
		if err := a.call(t, "transfer_history", map[string]any{"direction": "send", "table": "customers"}, &sent); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(sent) != 1 || sent[0].Rows != 300 || sent[0].Status != "done" {
		t.Fatalf("sender history for paged reads: %+v", sent)
	}
	// A pull with a wrong code: refused before any table.
	if err := b.call(t, "pull", map[string]any{"url": a.url, "code": "ABCDEFGH"}, nil); err == nil {
		t.Fatal("pull with a wrong code succeeded")
	}
	var got []entry
	if err := b.call(t, "transfer_history", map[string]any{"direction": "receive", "status": "failed"}, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !strings.Contains(got[0].Error, "invalid_code") {
		t.Fatalf("receiver history after a refused pull: %+v", got)
	}
	if err := b.call(t, "transfer_history", map[string]any{"direction": "send"}, &got); err != nil || len(got) != 0 {
		t.Fatalf("filter by direction on the receiver: %+v %v", got, err)
	}
}

// A remote's schedule is edited through the update_remote operation.
func TestUpdateRemoteOperation(t *testing.T) {
	t.Setenv("FIBERKIT_SECRET_KEY", "update-remote-test-key")
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{})
	c := a.newConnection(t, connection.Limits{}, true)
	var r struct {
		ID       string   `json:"id"`
		Tables   []string `json:"tables"`
		Strategy string   `json:"strategy"`
		Interval int      `json:"interval_seconds"`
	}
	if err := b.call(t, "add_remote", map[string]any{"name": "prod", "url": a.url, "token": c.Token}, &r); err != nil {
		t.Fatal(err)
	}
	if err := b.call(t, "update_remote", map[string]any{"id": r.ID, "tables": []string{"products"}, "strategy": "overwrite", "interval_seconds": 3600}, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Tables) != 1 || r.Tables[0] != "products" || r.Strategy != "overwrite" || r.Interval != 3600 {
		t.Fatalf("after update: %+v", r)
	}
	if err := b.call(t, "update_remote", map[string]any{"id": r.ID, "strategy": "shred"}, nil); err == nil || !strings.Contains(err.Error(), "invalid_input") {
		t.Fatalf("bad strategy: %v", err)
	}
	if err := b.call(t, "update_remote", map[string]any{"id": "00000000-0000-0000-0000-000000000000"}, nil); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Fatalf("unknown remote: %v", err)
	}
}
