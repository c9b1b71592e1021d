package main_test

import (
	"context"
	"strings"
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

func TestEachStrategyIntoAnEmptySiteGivesEqualChecksums(t *testing.T) {
	a := seeded(t, siteOptions{})
	for _, strategy := range []importer.Strategy{importer.Skip, importer.Overwrite, importer.Merge} {
		t.Run(string(strategy), func(t *testing.T) {
			b := startSite(t, siteOptions{})
			var res map[string]client.Result
			if err := b.call(t, "pull", map[string]any{"url": a.url, "code": a.newCode(t).Code, "strategy": strategy, "create_missing": true}, &res); err != nil {
				t.Fatal(err)
			}
			if res["order_items"].Created != 15000 {
				t.Fatalf("%+v", res["order_items"])
			}
			sameData(t, a, b)
		})
	}
}

func TestPullOperationWithEachStrategy(t *testing.T) {
	a := seeded(t, siteOptions{})
	for _, strategy := range []string{"skip", "overwrite", "merge"} {
		t.Run(strategy, func(t *testing.T) {
			b := seeded(t, siteOptions{})
			// B's copy differs: some rows changed, some missing, one extra.
			b.exec(t, `UPDATE customers SET name = 'local', notes = NULL WHERE id <= 10;
				DELETE FROM order_items WHERE order_id > 4000; DELETE FROM orders WHERE id > 4000;
				INSERT INTO products (sku, title, price) VALUES ('LOCAL-1', 'only here', 1)`)
			var res map[string]client.Result
			err := b.call(t, "pull", map[string]any{"url": a.url, "code": a.newCode(t).Code, "strategy": strategy}, &res)
			if err != nil {
				t.Fatal(err)
			}
			if r := res["orders"]; r.Created != 1000 {
				t.Fatalf("orders: %+v", r)
			}
			if r := res["order_items"]; r.Created != 3000 {
				t.Fatalf("order_items: %+v", r)
			}
			c := res["customers"]
			var localNames int
			_ = b.pool.QueryRow(context.Background(), `SELECT count(*) FROM customers WHERE name = 'local'`).Scan(&localNames)
			switch strategy {
			case "skip":
				if c.Skipped != 2000 || localNames != 10 {
					t.Fatalf("skip: %+v, %d local names", c, localNames)
				}
			case "overwrite", "merge":
				if c.Updated != 2000 || localNames != 0 {
					t.Fatalf("%s: %+v, %d local names", strategy, c, localNames)
				}
			}
			// The row only B had is kept by every strategy.
			var local int
			_ = b.pool.QueryRow(context.Background(), `SELECT count(*) FROM products WHERE sku = 'LOCAL-1'`).Scan(&local)
			if local != 1 {
				t.Fatal("a local-only row was removed")
			}
			if strategy == "overwrite" {
				b.exec(t, `DELETE FROM products WHERE sku = 'LOCAL-1'`)
				sameData(t, a, b)
			}
		})
	}
}

func TestPullRefusesInternalAddressesAndItself(t *testing.T) {
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{ssrfGuard: true})
	err := b.call(t, "pull", map[string]any{"url": a.url, "code": a.newCode(t).Code}, nil)
	if err == nil || !strings.Contains(err.Error(), "refused_url") || !strings.Contains(err.Error(), "internal address 127.0.0.1") {
		t.Fatalf("pull from a loopback address: %v", err)
	}
	// A name resolving to an internal address is refused at dial time too.
	err = b.call(t, "pull", map[string]any{"url": strings.Replace(a.url, "127.0.0.1", "localhost", 1), "code": "ABCD2345"}, nil)
	if err == nil || !strings.Contains(err.Error(), "internal address") {
		t.Fatalf("pull from localhost: %v", err)
	}
	err = b.call(t, "pull", map[string]any{"url": b.url, "code": "ABCD2345"}, nil)
	if err == nil || !strings.Contains(err.Error(), "this site") {
		t.Fatalf("pull from itself: %v", err)
	}
}
