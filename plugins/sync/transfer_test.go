package main_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/sample"
)

func seeded(t *testing.T, o siteOptions) *site {
	t.Helper()
	s := startSite(t, o)
	if err := sample.Seed(context.Background(), s.db); err != nil {
		t.Fatal(err)
	}
	return s
}

func sameData(t *testing.T, a, b *site) {
	t.Helper()
	for _, tbl := range sample.Tables() {
		if ca, cb := a.checksum(t, tbl[0], tbl[1]), b.checksum(t, tbl[0], tbl[1]); ca != cb {
			t.Fatalf("%s differs between the sites", tbl[0])
		}
	}
}

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

func TestIncomingModesAndCodes(t *testing.T) {
	ctx := context.Background()
	t.Run("deny_all", func(t *testing.T) {
		a := startSite(t, siteOptions{mode: "deny_all"})
		_, err := client.Connect(ctx, a.url, a.newCode(t).Code, client.Options{})
		if !errors.Is(err, client.ErrDenied) {
			t.Fatalf("deny_all: %v", err)
		}
	})
	t.Run("require_password", func(t *testing.T) {
		a := startSite(t, siteOptions{mode: "require_password", password: "open-sesame"})
		code := a.newCode(t).Code
		if _, err := client.Connect(ctx, a.url, code, client.Options{}); !errors.Is(err, client.ErrPasswordRequired) {
			t.Fatalf("no password: %v", err)
		}
		if _, err := client.Connect(ctx, a.url, code, client.Options{Password: "wrong"}); !errors.Is(err, client.ErrWrongPassword) {
			t.Fatalf("wrong password: %v", err)
		}
		c, err := client.Connect(ctx, a.url, code, client.Options{Password: "open-sesame"})
		if err != nil {
			t.Fatalf("right password: %v", err)
		}
		c.Close()
	})
	t.Run("codes", func(t *testing.T) {
		a := startSite(t, siteOptions{})
		code := a.newCode(t).Code
		validate := func(c string) (v struct {
			Valid bool   `json:"valid"`
			Error string `json:"error"`
		}) {
			if err := a.call(t, "validate_code", map[string]string{"code": c}, &v); err != nil {
				t.Fatal(err)
			}
			return v
		}
		if v := validate(code); !v.Valid {
			t.Fatalf("fresh code not valid: %+v", v)
		}
		if v := validate("NOPE2345"); v.Valid || v.Error != "invalid_code" {
			t.Fatalf("unknown code: %+v", v)
		}
		c, err := client.Connect(ctx, a.url, code, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if v := validate(code); v.Valid || v.Error != "already_used" {
			t.Fatalf("used code: %+v", v)
		}
		if _, err := client.Connect(ctx, a.url, code, client.Options{}); !errors.Is(err, client.ErrAlreadyUsed) {
			t.Fatalf("reused code: %v", err)
		}
		// Owner gone → code invalid.
		code2 := a.newCode(t).Code
		if err := a.call(t, "release_sessions", map[string]any{}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Connect(ctx, a.url, code2, client.Options{}); !errors.Is(err, client.ErrInvalidCode) {
			t.Fatalf("code of a released session: %v", err)
		}
		// Wrong codes: invalid, then locked out (this address only).
		good := a.newCode(t).Code
		for i := 0; i < 3; i++ { // 2 failures above + 3 = 5
			if _, err := client.Connect(ctx, a.url, "WRONG234", client.Options{}); !errors.Is(err, client.ErrInvalidCode) {
				t.Fatalf("wrong code %d: %v", i, err)
			}
		}
		if _, err := client.Connect(ctx, a.url, good, client.Options{}); !errors.Is(err, client.ErrRateLimited) {
			t.Fatalf("after 5 failures even a good code is refused: %v", err)
		}
	})
}

func TestApprovalOnOneReplicaReleasesReceiverOnAnother(t *testing.T) {
	ctx := context.Background()
	a1 := startSite(t, siteOptions{mode: "require_approval"})
	a2 := startSite(t, siteOptions{mode: "require_approval", db: a1.db}) // a replica: same database
	for _, decision := range []string{"approve", "deny"} {
		t.Run(decision, func(t *testing.T) {
			code := a1.newCode(t).Code // made on replica 1
			waiting := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				c, err := client.Connect(ctx, a2.url, code, client.Options{ // connected through replica 2
					Timeout: 30 * time.Second, ReceiverInfo: map[string]any{"who": "dev laptop"},
					OnAwaitingApproval: func() { close(waiting) },
				})
				if err == nil {
					_, err = c.ListTables(ctx)
					c.Close()
				}
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
				ID           string         `json:"id"`
				ReceiverInfo map[string]any `json:"receiver_info"`
				Address      string         `json:"address"`
			}
			deadline := time.Now().Add(5 * time.Second)
			for len(pending) == 0 && time.Now().Before(deadline) {
				if err := a1.call(t, "pending_approvals", struct{}{}, &pending); err != nil {
					t.Fatal(err)
				}
			}
			if len(pending) != 1 || pending[0].ReceiverInfo["who"] != "dev laptop" || pending[0].Address == "" {
				t.Fatalf("pending approvals on replica 1: %+v", pending)
			}
			select {
			case err := <-done:
				t.Fatalf("receiver released before a decision: %v", err)
			case <-time.After(300 * time.Millisecond):
			}
			if err := a1.call(t, decision, map[string]string{"id": pending[0].ID}, nil); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if decision == "approve" && err != nil {
					t.Fatalf("approved receiver: %v", err)
				}
				if decision == "deny" && !errors.Is(err, client.ErrDenied) {
					t.Fatalf("denied receiver: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the decision on replica 1 did not release the receiver on replica 2")
			}
			// The history shows the request and its outcome.
			want := map[string]string{"approve": "approved", "deny": "denied"}[decision]
			var n int
			_ = a1.pool.QueryRow(ctx, `SELECT count(*) FROM fiberkit_sync_transfers WHERE table_name = '(connection request)' AND status = $1`, want).Scan(&n)
			if n != 1 {
				t.Fatalf("history rows with status %s: %d", want, n)
			}
		})
	}
}
