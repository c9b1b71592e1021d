package main_test

import (
	"context"
	"testing"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
)

func TestTransferAllCreatesTablesAndCopiesEveryRow(t *testing.T) {
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{})
	ctx := context.Background()
	c, err := client.Connect(ctx, a.url, a.newCode(t).Code, client.Options{ReceiverInfo: map[string]any{"site": "B"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var progress int
	res, err := c.TransferAll(ctx, b.pool, client.TransferAllOptions{Strategy: importer.Skip,
		TransferOptions: client.TransferOptions{CreateMissing: true, BatchSize: 700, Progress: func(client.Progress) { progress++ }}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"customers": 2000, "products": 300, "orders": 5000, "order_items": 15000}
	for tbl, n := range want {
		r := res[tbl]
		if r.Created != n || r.Rows != int64(n) || !r.TableCreated || len(r.Errors) != 0 {
			t.Fatalf("%s: %+v", tbl, r)
		}
	}
	if progress < 30 {
		t.Fatalf("only %d progress reports", progress)
	}
	sameData(t, a, b)
	// Foreign keys were added after the data.
	var fks int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid::regclass::text NOT LIKE 'fiberkit_%'`).Scan(&fks); err != nil || fks != 3 {
		t.Fatalf("foreign keys on B: %d (%v)", fks, err)
	}
}
