package main_test

import (
	"syscall"
	"testing"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/sample"
)

// scrape reads s's kit's metrics as Prometheus would.
func (s *site) scrape(t *testing.T) testsupport.Metrics {
	t.Helper()
	return testsupport.Scrape(t, s.kit.MetricsHTTPHandler())
}

// TestMetricsOfARealPull scrapes both sites' kits around a real pull of the sample
// tables: the receiving side counts a transfer started and done per table (by its
// strategy), the tables' rows and some bytes, and a receiving session while the
// pull's connection is up; the sending side counts a transfer per table and the
// same rows sent. Everything carries module="sync". Wrong codes lock an address out
// on the sending side: one lockout counted. Then the receiving plugin is killed
// with SIGKILL: its kit's restart counter for sync moves by one.
func TestMetricsOfARealPull(t *testing.T) {
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{})
	tables := sample.Tables()
	var names []string
	var rows int64
	for _, tb := range tables {
		names = append(names, tb[0])
		var n int64
		if err := a.pool.QueryRow(t.Context(), "SELECT count(*) FROM "+tb[0]).Scan(&n); err != nil {
			t.Fatal(err)
		}
		rows += n
	}
	n := float64(len(names))
	recvBefore, sendBefore := b.scrape(t), a.scrape(t)

	var res map[string]any
	if err := b.call(t, "pull", map[string]any{"url": a.url, "code": a.newCode(t).Code, "tables": names, "strategy": "overwrite", "create_missing": true}, &res); err != nil {
		t.Fatal(err)
	}
	if len(res) != len(names) {
		t.Fatalf("pulled %d tables, want %d", len(res), len(names))
	}
	sameData(t, a, b)

	recv := b.scrape(t)
	for _, c := range []struct {
		name string
		want float64
		l    []string
	}{
		{"fiberkit_sync_transfers_started_total", n, []string{"module=sync", "direction=receive", "strategy=overwrite"}},
		{"fiberkit_sync_transfers_ended_total", n, []string{"module=sync", "direction=receive", "strategy=overwrite", "status=done"}},
		{"fiberkit_sync_transfers_ended_total", 0, []string{"module=sync", "direction=receive", "status=failed"}},
		{"fiberkit_sync_transfer_duration_seconds", n, []string{"module=sync", "direction=receive", "status=done"}},
		{"fiberkit_sync_rows_total", float64(rows), []string{"module=sync", "direction=receive"}},
		{"fiberkit_sync_transfers_started_total", 0, []string{"module=sync", "direction=send"}},
	} {
		if got := recv.Moved(recvBefore, c.name, c.l...); got != c.want {
			t.Errorf("receiving side: %s%v moved by %v, want %v", c.name, c.l, got, c.want)
		}
	}
	if got := recv.Moved(recvBefore, "fiberkit_sync_bytes_total", "module=sync", "direction=receive"); got <= 0 {
		t.Errorf("receiving side: bytes moved by %v", got)
	}
	// The pull's connection is closed: no receiving session is left open.
	testsupport.Eventually(t, "the receiving session closed", func() bool {
		return b.scrape(t).Value("fiberkit_sync_sessions_active", "module=sync", "direction=receive") == 0
	})

	send := a.scrape(t)
	if got := send.Moved(sendBefore, "fiberkit_sync_transfers_started_total", "module=sync", "direction=send"); got != n {
		t.Errorf("sending side: transfers started moved by %v, want %v", got, n)
	}
	testsupport.Eventually(t, "the sending side's transfers ended", func() bool {
		return a.scrape(t).Moved(sendBefore, "fiberkit_sync_transfers_ended_total", "module=sync", "direction=send", "status=done") == n
	})
	if got := send.Moved(sendBefore, "fiberkit_sync_rows_total", "module=sync", "direction=send"); got != float64(rows) {
		t.Errorf("sending side: rows moved by %v, want %v", got, rows)
	}
	if got := send.Moved(sendBefore, "fiberkit_sync_bytes_total", "module=sync", "direction=send"); got <= 0 {
		t.Errorf("sending side: bytes moved by %v", got)
	}

	// Wrong codes from one address lock it out: one lockout, however many refusals.
	lockBefore := a.scrape(t)
	for range 8 {
		if c, err := client.Connect(t.Context(), a.url, "ZZZZZZZZ", client.Options{}); err == nil {
			c.Close()
			t.Fatal("a wrong code connected")
		}
	}
	locked := a.scrape(t)
	if got := locked.Moved(lockBefore, "fiberkit_sync_lockouts_total", "module=sync"); got != 1 {
		t.Errorf("lockouts moved by %v, want 1", got)
	}
	if got := locked.Moved(lockBefore, "fiberkit_sync_attempts_refused_total", "module=sync", "reason=rate_limited"); got < 1 {
		t.Errorf("refusals by the lockout moved by %v", got)
	}

	// A crashed plugin shows in its kit's restart counter.
	st, _ := b.kit.Module("sync")
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, "the sync plugin restarted", func() bool {
		now, _ := b.kit.Module("sync")
		return now.State == host.StateRunning && now.PID != st.PID
	})
	if got := b.scrape(t).Moved(recv, "fiberkit_module_restarts_total", "module=sync"); got != 1 {
		t.Errorf("fiberkit_module_restarts_total{module=sync} moved by %v, want 1", got)
	}
}
