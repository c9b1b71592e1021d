package main_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
)

type conn struct {
	ID     string `json:"id"`
	Token  string `json:"token"`
	Status string `json:"status"`
}

func (s *site) newConnection(t *testing.T, l connection.Limits, approve bool) conn {
	t.Helper()
	var c conn
	if err := s.call(t, "create_connection", map[string]any{"name": "dev laptop", "site_url": "http://dev.example", "limits": l}, &c); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.Token, "fkc_") || c.Status != "pending" {
		t.Fatalf("new connection %+v", c)
	}
	if approve {
		s.setStatus(t, c.ID, "active")
	}
	return c
}

func (s *site) setStatus(t *testing.T, id, status string) {
	t.Helper()
	if err := s.call(t, "set_connection_status", map[string]string{"id": id, "status": status}, nil); err != nil {
		t.Fatal(err)
	}
}

func remoteCode(err error) string {
	var re *client.RemoteError
	if errors.As(err, &re) {
		return re.Code
	}
	return ""
}

func dialToken(t *testing.T, s *site, token string) (*client.Client, error) {
	t.Helper()
	c, err := client.Connect(context.Background(), s.url, "", client.Options{Token: token})
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func TestConnectionLifecycleAndTokenAtRest(t *testing.T) {
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{})
	ctx := context.Background()
	c := a.newConnection(t, connection.Limits{}, false)
	// Pending: refused until approved.
	if _, err := dialToken(t, a, c.Token); remoteCode(err) != "connection_inactive" {
		t.Fatalf("pending connection: %v", err)
	}
	a.setStatus(t, c.ID, "active")
	cl, err := dialToken(t, a, c.Token)
	if err != nil {
		t.Fatal(err)
	}
	res, err := cl.TransferAll(ctx, b.pool, client.TransferAllOptions{Strategy: importer.Skip, TransferOptions: client.TransferOptions{CreateMissing: true}})
	if err != nil || res["order_items"].Created != 15000 {
		t.Fatalf("transfer over a connection: %v %+v", err, res["order_items"])
	}
	sameData(t, a, b)
	// The token is nowhere in plain text.
	var hits int
	if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM (
		SELECT t::text AS row FROM fiberkit_sync_connections t UNION ALL SELECT t::text FROM fiberkit_sync_transfers t
		UNION ALL SELECT t::text FROM fiberkit_audit t UNION ALL SELECT t::text FROM fiberkit_sync_attempts t) r WHERE row LIKE '%' || $1 || '%'`,
		strings.TrimPrefix(c.Token, "fkc_")).Scan(&hits); err != nil || hits != 0 {
		t.Fatalf("token found in %d rows (%v)", hits, err)
	}
	if strings.Contains(a.logs.String(), c.Token) || strings.Contains(b.logs.String(), c.Token) {
		t.Fatal("the token appears in a log")
	}
	// Suspend, reactivate, regenerate, revoke.
	a.setStatus(t, c.ID, "suspended")
	if _, err := dialToken(t, a, c.Token); remoteCode(err) != "connection_inactive" {
		t.Fatalf("suspended: %v", err)
	}
	a.setStatus(t, c.ID, "active")
	var regen conn
	if err := a.call(t, "regenerate_token", map[string]string{"id": c.ID}, &regen); err != nil || regen.Token == c.Token {
		t.Fatalf("regenerate: %v", err)
	}
	if _, err := dialToken(t, a, c.Token); remoteCode(err) != "invalid_token" {
		t.Fatalf("old token after regeneration: %v", err)
	}
	if _, err := dialToken(t, a, regen.Token); err != nil {
		t.Fatalf("new token: %v", err)
	}
	a.setStatus(t, c.ID, "revoked")
	if _, err := dialToken(t, a, regen.Token); remoteCode(err) != "connection_inactive" {
		t.Fatalf("revoked: %v", err)
	}
	if err := a.call(t, "set_connection_status", map[string]string{"id": c.ID, "status": "active"}, nil); err == nil {
		t.Fatal("a revoked connection was reactivated")
	}
}

func TestEveryConnectionLimitIsEnforced(t *testing.T) {
	a := seeded(t, siteOptions{})
	ctx := context.Background()
	past := time.Now().Add(-time.Hour)
	otherHour := (time.Now().UTC().Hour() + 12) % 24

	t.Run("allowed and excluded tables", func(t *testing.T) {
		cl, err := dialToken(t, a, a.newConnection(t, connection.Limits{AllowedTables: []string{"customers", "products"}, ExcludedTables: []string{"products"}}, true).Token)
		if err != nil {
			t.Fatal(err)
		}
		tables, err := cl.ListTables(ctx)
		if err != nil || len(tables) != 1 || tables[0].Name != "customers" {
			t.Fatalf("tables %+v %v", tables, err)
		}
		for _, tbl := range []string{"products", "orders"} {
			if _, err := cl.GetCount(ctx, tbl); remoteCode(err) != "table_not_allowed" {
				t.Fatalf("%s: %v", tbl, err)
			}
		}
	})
	t.Run("expiry", func(t *testing.T) {
		c := a.newConnection(t, connection.Limits{ExpiresAt: &past}, true)
		if _, err := dialToken(t, a, c.Token); remoteCode(err) != "connection_expired" {
			t.Fatalf("expired: %v", err)
		}
		var got conn
		_ = a.call(t, "get_connection", map[string]string{"id": c.ID}, &got)
		if got.Status != "expired" {
			t.Fatalf("status after expiry %q", got.Status)
		}
	})
	t.Run("max downloads", func(t *testing.T) {
		c := a.newConnection(t, connection.Limits{MaxDownloads: 1}, true)
		if _, err := dialToken(t, a, c.Token); err != nil {
			t.Fatal(err)
		}
		if _, err := dialToken(t, a, c.Token); remoteCode(err) != "download_limit" {
			t.Fatalf("second download: %v", err)
		}
	})
	t.Run("max records per request", func(t *testing.T) {
		cl, err := dialToken(t, a, a.newConnection(t, connection.Limits{MaxRecordsRequest: 100}, true).Token)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.FetchRecords(ctx, "customers", 0, 500); remoteCode(err) != "request_too_large" {
			t.Fatalf("500 records: %v", err)
		}
		if p, err := cl.FetchRecords(ctx, "customers", 0, 100); err != nil || len(p.Records) != 100 {
			t.Fatalf("100 records: %v", err)
		}
	})
	t.Run("max records in total", func(t *testing.T) {
		b := startSite(t, siteOptions{})
		cl, err := dialToken(t, a, a.newConnection(t, connection.Limits{MaxRecords: 2500}, true).Token)
		if err != nil {
			t.Fatal(err)
		}
		res, err := cl.TransferAll(ctx, b.pool, client.TransferAllOptions{Tables: []string{"customers", "products", "orders"},
			TransferOptions: client.TransferOptions{CreateMissing: true, BatchSize: 1000}})
		if remoteCode(err) != "record_limit" {
			t.Fatalf("over the total: %v", err)
		}
		// Tables go in dependency order (customers, orders, products): the limit cuts
		// orders at 500 rows and leaves nothing for products.
		if res["customers"].Created != 2000 || res["orders"].Created != 500 || res["products"].Created != 0 ||
			!strings.Contains(res["products"].Error, "record_limit") {
			t.Fatalf("rows before the limit: %+v %+v %+v", res["customers"], res["products"], res["orders"])
		}
	})
	t.Run("ip allowlist", func(t *testing.T) {
		if _, err := dialToken(t, a, a.newConnection(t, connection.Limits{IPAllowlist: []string{"10.0.0.0/8"}}, true).Token); remoteCode(err) != "address_not_allowed" {
			t.Fatalf("outside the allowlist: %v", err)
		}
		if _, err := dialToken(t, a, a.newConnection(t, connection.Limits{IPAllowlist: []string{"10.0.0.0/8", "127.0.0.0/8"}}, true).Token); err != nil {
			t.Fatalf("inside the allowlist: %v", err)
		}
	})
	t.Run("allowed hours", func(t *testing.T) {
		if _, err := dialToken(t, a, a.newConnection(t, connection.Limits{AllowedHours: []int{otherHour}}, true).Token); remoteCode(err) != "outside_allowed_hours" {
			t.Fatalf("outside the hours: %v", err)
		}
		if _, err := dialToken(t, a, a.newConnection(t, connection.Limits{AllowedHours: []int{otherHour, time.Now().UTC().Hour()}}, true).Token); err != nil {
			t.Fatalf("inside the hours: %v", err)
		}
	})
	t.Run("requests per minute", func(t *testing.T) {
		cl, err := dialToken(t, a, a.newConnection(t, connection.Limits{RequestsPerMinute: 3}, true).Token) // 1
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ { // 2, 3
			if _, err := cl.GetCount(ctx, "customers"); err != nil {
				t.Fatalf("request %d: %v", i+2, err)
			}
		}
		if _, err := cl.GetCount(ctx, "customers"); remoteCode(err) != "rate_limited" {
			t.Fatalf("fourth request in a minute: %v", err)
		}
	})
}

func TestRevokingCutsAnOpenTransfer(t *testing.T) {
	a := bigSender(t)
	b := startSite(t, siteOptions{})
	c := a.newConnection(t, connection.Limits{}, true)
	cl, err := dialToken(t, a, c.Token)
	if err != nil {
		t.Fatal(err)
	}
	revoked := false
	res, err := cl.Transfer(context.Background(), b.pool, "big", client.TransferOptions{CreateMissing: true, BatchSize: 1000, Progress: func(p client.Progress) {
		if p.Batches == 3 && !revoked {
			revoked = true
			a.setStatus(t, c.ID, "revoked")
		}
	}})
	if err == nil || res.Rows >= 60000 {
		t.Fatalf("transfer went on after revocation: %+v", res)
	}
	if code := remoteCode(err); code != "connection_inactive" && !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revocation error: %v", err)
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

func TestScheduledPullFiresOncePerIntervalAcrossReplicas(t *testing.T) {
	t.Setenv("FIBERKIT_SECRET_KEY", "test-key-for-remote-tokens-0123456789")
	a := seeded(t, siteOptions{})
	c := a.newConnection(t, connection.Limits{AllowedTables: []string{"customers"}}, true)
	b1 := startSite(t, siteOptions{})
	b2 := startSite(t, siteOptions{db: b1.db}) // a second replica of site B
	var r struct {
		ID string `json:"id"`
	}
	if err := b1.call(t, "add_remote", map[string]any{"name": "prod", "url": a.url, "token": c.Token,
		"tables": []string{"customers"}, "strategy": "overwrite", "interval_seconds": 2}, &r); err != nil {
		t.Fatal(err)
	}
	time.Sleep(7 * time.Second)
	var runs []time.Time
	rows, err := b2.pool.Query(context.Background(), `SELECT at FROM fiberkit_sync_transfers WHERE started_by = 'remote:prod' AND table_name = 'customers' ORDER BY at`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var at time.Time
		_ = rows.Scan(&at)
		runs = append(runs, at)
	}
	rows.Close()
	if len(runs) < 3 || len(runs) > 5 {
		t.Fatalf("%d scheduled runs in 7 s with a 2 s interval on two replicas", len(runs))
	}
	for i := 1; i < len(runs); i++ {
		if gap := runs[i].Sub(runs[i-1]); gap < 1500*time.Millisecond {
			t.Fatalf("runs %d and %d only %v apart: the schedule fired twice", i-1, i, gap)
		}
	}
	sameCustomers := a.checksum(t, "customers", "id") == b1.checksum(t, "customers", "id")
	if !sameCustomers {
		t.Fatal("the scheduled pull did not copy customers")
	}
	// The token is stored encrypted: not in plain text anywhere on B.
	var hits int
	if err := b1.pool.QueryRow(context.Background(), `SELECT count(*) FROM (SELECT t::text AS row FROM fiberkit_sync_remotes t
		UNION ALL SELECT t::text FROM fiberkit_sync_transfers t UNION ALL SELECT t::text FROM fiberkit_audit t) x
		WHERE row LIKE '%' || $1 || '%'`, strings.TrimPrefix(c.Token, "fkc_")).Scan(&hits); err != nil || hits != 0 {
		t.Fatalf("token in plain text in %d rows (%v)", hits, err)
	}
	// A run on demand works too (it waits its turn while a scheduled run holds the
	// remote's lock), and the sender's history has the rows.
	var res map[string]client.Result
	for start := time.Now(); ; {
		err := b2.call(t, "run_remote", map[string]string{"id": r.ID}, &res)
		if err != nil && strings.Contains(err.Error(), "already running") && time.Since(start) < 10*time.Second {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if err != nil || res["customers"].Updated != 2000 {
			t.Fatalf("run now: %v %+v", err, res["customers"])
		}
		break
	}
	var sent int
	_ = a.pool.QueryRow(context.Background(), `SELECT count(*) FROM fiberkit_sync_transfers WHERE direction = 'send' AND started_by = 'connection:' || $1`, c.ID).Scan(&sent)
	if sent < len(runs) {
		t.Fatalf("sender history has %d sends for %d pulls", sent, len(runs))
	}
}

func TestRegeneratedTokenIsPassedToTheOtherSide(t *testing.T) {
	t.Setenv("FIBERKIT_SECRET_KEY", "key-for-the-regeneration-test-123")
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{})
	var c conn
	if err := a.call(t, "create_connection", map[string]any{"name": "B", "site_url": b.url, "limits": connection.Limits{AllowedTables: []string{"products"}}}, &c); err != nil {
		t.Fatal(err)
	}
	a.setStatus(t, c.ID, "active")
	var r struct {
		ID string `json:"id"`
	}
	if err := b.call(t, "add_remote", map[string]any{"name": "A", "url": a.url, "token": c.Token, "tables": []string{"products"}}, &r); err != nil {
		t.Fatal(err)
	}
	var regen struct {
		Token     string `json:"token"`
		Told      bool   `json:"told"`
		TellError string `json:"tell_error"`
	}
	if err := a.call(t, "regenerate_token", map[string]string{"id": c.ID}, &regen); err != nil || !regen.Told {
		t.Fatalf("regenerate: %v %+v", err, regen)
	}
	// B pulls with the token it was told; the old one is dead.
	var res map[string]client.Result
	if err := b.call(t, "run_remote", map[string]string{"id": r.ID}, &res); err != nil || res["products"].Created != 300 {
		t.Fatalf("pull with the new token: %v %+v", err, res["products"])
	}
	if _, err := dialToken(t, a, c.Token); remoteCode(err) != "invalid_token" {
		t.Fatalf("old token: %v", err)
	}
}

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
