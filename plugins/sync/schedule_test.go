package main_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
)

// lastRun reads a remote's last run from the database.
func lastRun(t *testing.T, pool *pgxpool.Pool, id string) (time.Time, string) {
	t.Helper()
	var at *time.Time
	var status string
	if err := pool.QueryRow(context.Background(), `SELECT last_run_at, last_status FROM fiberkit_sync_remotes WHERE id::text = $1`, id).Scan(&at, &status); err != nil {
		t.Fatal(err)
	}
	if at == nil {
		return time.Time{}, status
	}
	return *at, status
}

// waitRun waits for a run of remote id that ended after since.
func waitRun(t *testing.T, pool *pgxpool.Pool, id string, since time.Time) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		at, status := lastRun(t, pool, id)
		if at.After(since) {
			if status != "done" {
				t.Fatalf("scheduled run: %s", status)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no scheduled run after %v (last %v %q)", since, at, status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A schedule set from the Connections page runs, and keeps running after the site
// (host and plugin) restarts on the same database.
func TestScheduleSurvivesARestart(t *testing.T) {
	t.Setenv("FIBERKIT_SECRET_KEY", "schedule-test-key")
	a := seeded(t, siteOptions{})
	token := a.newConnection(t, connection.Limits{}, true).Token
	b := startSite(t, siteOptions{})
	var r struct {
		ID string `json:"id"`
	}
	if err := b.call(t, "add_remote", map[string]any{"name": "prod", "url": a.url, "token": token}, &r); err != nil {
		t.Fatal(err)
	}
	if at, _ := lastRun(t, b.pool, r.ID); !at.IsZero() {
		t.Fatal("an unscheduled remote ran")
	}
	// A bad schedule is refused on the page, in the page.
	code, body := adminForm(t, b, "/admin/fiberkit/sync/connections", "/admin/fiberkit/sync/remotes/"+r.ID+"/schedule",
		url.Values{"tables": {"products"}, "strategy": {"overwrite"}, "interval_seconds": {"soon"}})
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, `role="alert"`) || !strings.Contains(body, "<html") {
		t.Fatalf("bad schedule: HTTP %d %s", code, body)
	}
	code, body = adminForm(t, b, "/admin/fiberkit/sync/connections", "/admin/fiberkit/sync/remotes/"+r.ID+"/schedule",
		url.Values{"tables": {"products"}, "strategy": {"overwrite"}, "interval_seconds": {"2"}})
	if code != http.StatusSeeOther {
		t.Fatalf("schedule: HTTP %d %s", code, body)
	}
	waitRun(t, b.pool, r.ID, time.Time{})
	if n := b.checksum(t, "products", "sku"); n != a.checksum(t, "products", "sku") {
		t.Fatal("products differ after the scheduled pull")
	}

	// Restart: the host and its plugin go away; a new one starts on the database.
	_ = b.app.ShutdownWithTimeout(time.Second)
	_ = b.kit.Close()
	last, _ := lastRun(t, b.pool, r.ID)
	b.exec(t, `DELETE FROM products`)
	b2 := startSite(t, siteOptions{db: b.db})
	waitRun(t, b2.pool, r.ID, last)
	if b2.checksum(t, "products", "sku") != a.checksum(t, "products", "sku") {
		t.Fatal("products not pulled again after the restart")
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
