package main_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
)

func TestHistoryCountsATransferWithConflicts(t *testing.T) {
	a := seeded(t, siteOptions{})
	b := seeded(t, siteOptions{})
	b.exec(t, `DELETE FROM order_items WHERE order_id > 4500`)
	var res map[string]client.Result
	if err := b.call(t, "pull", map[string]any{"url": a.url, "code": a.newCode(t).Code, "strategy": "skip", "tables": []string{"order_items"}}, &res); err != nil {
		t.Fatal(err)
	}
	var created, updated, skipped, failed int
	var strategy, status, peer string
	err := b.pool.QueryRow(context.Background(), `SELECT created, updated, skipped, failed, strategy, status, peer FROM fiberkit_sync_transfers
		WHERE direction = 'receive' AND table_name = 'order_items'`).Scan(&created, &updated, &skipped, &failed, &strategy, &status, &peer)
	if err != nil {
		t.Fatal(err)
	}
	if created != 1500 || updated != 0 || skipped != 13500 || failed != 0 || strategy != "skip" || status != "done" || peer != a.url {
		t.Fatalf("history row: created %d updated %d skipped %d failed %d %s %s %s", created, updated, skipped, failed, strategy, status, peer)
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
