package main_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
)

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

// Every way a connection stops standing ends a transfer already running on it.
func TestOpenTransferEndsWhenTheConnectionStopsStanding(t *testing.T) {
	a := bigSender(t)
	past := time.Now().Add(-time.Minute)
	otherHour := (time.Now().UTC().Hour() + 12) % 24
	cases := map[string]func(t *testing.T, c conn){
		"suspended": func(t *testing.T, c conn) { a.setStatus(t, c.ID, "suspended") },
		"expired": func(t *testing.T, c conn) {
			if err := a.call(t, "set_connection_limits", map[string]any{"id": c.ID, "limits": connection.Limits{ExpiresAt: &past}}, nil); err != nil {
				t.Fatal(err)
			}
		},
		"outside its hours": func(t *testing.T, c conn) {
			if err := a.call(t, "set_connection_limits", map[string]any{"id": c.ID, "limits": connection.Limits{AllowedHours: []int{otherHour}}}, nil); err != nil {
				t.Fatal(err)
			}
		},
		"token regenerated": func(t *testing.T, c conn) {
			if err := a.call(t, "regenerate_token", map[string]string{"id": c.ID}, nil); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, stop := range cases {
		t.Run(name, func(t *testing.T) {
			b := startSite(t, siteOptions{})
			c := a.newConnection(t, connection.Limits{}, true)
			cl, err := dialToken(t, a, c.Token)
			if err != nil {
				t.Fatal(err)
			}
			stopped := false
			res, err := cl.Transfer(context.Background(), b.pool, "big", client.TransferOptions{CreateMissing: true, BatchSize: 1000, Progress: func(p client.Progress) {
				if p.Batches == 3 && !stopped {
					stopped = true
					stop(t, c)
				}
			}})
			if err == nil || res.Rows >= 60000 {
				t.Fatalf("transfer went on: %+v %v", res, err)
			}
			if code := remoteCode(err); code != "connection_inactive" && code != "connection_expired" && code != "outside_allowed_hours" {
				t.Fatalf("unclear error: %v", err)
			}
		})
	}
}

// An expired connection is reactivated only once its expiry is moved on.
func TestExpiredConnectionReactivatesOnlyWithANewExpiry(t *testing.T) {
	a := seeded(t, siteOptions{})
	past, future := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	c := a.newConnection(t, connection.Limits{ExpiresAt: &past}, true)
	if _, err := dialToken(t, a, c.Token); remoteCode(err) != "connection_expired" {
		t.Fatalf("expired: %v", err)
	}
	if err := a.call(t, "set_connection_status", map[string]string{"id": c.ID, "status": "active"}, nil); err == nil || !strings.Contains(err.Error(), "still_expired") {
		t.Fatalf("reactivated while still expired: %v", err)
	}
	if err := a.call(t, "set_connection_limits", map[string]any{"id": c.ID, "limits": connection.Limits{ExpiresAt: &future}}, nil); err != nil {
		t.Fatal(err)
	}
	a.setStatus(t, c.ID, "active")
	if _, err := dialToken(t, a, c.Token); err != nil {
		t.Fatalf("after a new expiry: %v", err)
	}
}
