package main_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
)

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
		// The limit counts per clock minute: four requests across a minute's end
		// would be two minutes' worth (a flake seen in CI), so start inside one.
		if sec := time.Now().Second(); sec >= 55 {
			time.Sleep(time.Duration(61-sec) * time.Second)
		}
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

// The per-request limit is judged on the size a request really gets: asking for
// "the default" is not a way around it.
func TestRecordsPerRequestLimitCountsDefaults(t *testing.T) {
	ctx := context.Background()
	a := seeded(t, siteOptions{})
	cl, err := dialToken(t, a, a.newConnection(t, connection.Limits{MaxRecordsRequest: 50}, true).Token)
	if err != nil {
		t.Fatal(err)
	}
	// No limit asked: the default page (100) is over the connection's 50.
	if p, err := cl.FetchRecords(ctx, "customers", 0, 0); remoteCode(err) != "request_too_large" {
		t.Fatalf("default page on a 50-record connection: %d rows, %v", len(p.Records), err)
	}
	if p, err := cl.FetchRecords(ctx, "customers", 0, 50); err != nil || len(p.Records) != 50 {
		t.Fatalf("50 records: %d %v", len(p.Records), err)
	}
	// A stream with the default batch size is refused the same way.
	b := startSite(t, siteOptions{})
	if _, err := cl.Transfer(ctx, b.pool, "customers", client.TransferOptions{CreateMissing: true}); remoteCode(err) != "request_too_large" {
		t.Fatalf("default batch on a 50-record connection: %v", err)
	}
}

// The total is taken before rows are read: a page is cut to what is left, the
// next request is refused with the limit's own code, and nothing is over-counted.
func TestRecordTotalCapsPagesAndIsRefusedClearly(t *testing.T) {
	ctx := context.Background()
	a := seeded(t, siteOptions{})
	c := a.newConnection(t, connection.Limits{MaxRecords: 30}, true)
	cl, err := dialToken(t, a, c.Token)
	if err != nil {
		t.Fatal(err)
	}
	p, err := cl.FetchRecords(ctx, "customers", 0, 20)
	if err != nil || len(p.Records) != 20 {
		t.Fatalf("first page: %d %v", len(p.Records), err)
	}
	p, err = cl.FetchRecords(ctx, "customers", 20, 50)
	if err != nil || len(p.Records) != 10 {
		t.Fatalf("second page should be cut to the 10 left: %d %v", len(p.Records), err)
	}
	if _, err := cl.FetchRecords(ctx, "customers", 30, 10); remoteCode(err) != "record_limit" {
		t.Fatalf("past the total: %v", err)
	}
	var got struct {
		Records int64 `json:"records"`
	}
	if err := a.call(t, "get_connection", map[string]string{"id": c.ID}, &got); err != nil || got.Records != 30 {
		t.Fatalf("records counted: %d %v", got.Records, err)
	}
	// A page shorter than asked gives back what it did not use.
	c2 := a.newConnection(t, connection.Limits{MaxRecords: 1000}, true)
	cl2, err := dialToken(t, a, c2.Token)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := cl2.FetchRecords(ctx, "products", 290, 100); err != nil || len(p.Records) != 10 {
		t.Fatalf("tail page: %d %v", len(p.Records), err)
	}
	if err := a.call(t, "get_connection", map[string]string{"id": c2.ID}, &got); err != nil || got.Records != 10 {
		t.Fatalf("records counted for a 10-row page: %d %v", got.Records, err)
	}
}
