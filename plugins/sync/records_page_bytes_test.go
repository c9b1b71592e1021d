package main_test

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/connection"
)

// peakRSS is the plugin process's peak resident set (VmHWM), in bytes.
func peakRSS(t *testing.T, s *site) int64 {
	t.Helper()
	st, _ := s.kit.Module("sync")
	b, err := os.ReadFile("/proc/" + strconv.Itoa(st.PID) + "/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestRecordsPagesAreCappedByBytes: issue 11 §4 — limit 400 over 256 KB rows
// (100 MB) comes back as a short page with has_more, in both encodings, without
// the sender's memory following the table; a connection is charged only the rows
// it got.
func TestRecordsPagesAreCappedByBytes(t *testing.T) {
	a := startSite(t, siteOptions{})
	a.exec(t, `CREATE TABLE wide (id bigint PRIMARY KEY, blob text);
		INSERT INTO wide SELECT g, repeat(md5(g::text), 8192) FROM generate_series(1, 400) g`)
	before := peakRSS(t, a)
	code := a.newCode(t).Code
	r := dialPhoenixKit(t, a, code)
	r.join()
	got := 0
	for _, enc := range []string{"", "text"} {
		req := map[string]any{"table": "wide", "offset": 0, "limit": 400}
		if enc != "" {
			req["encoding"] = enc
		}
		event, p, f := r.request("request:records", req)
		var records []json.RawMessage
		if err := json.Unmarshal(p["records"], &records); err != nil || event != "response:records" {
			t.Fatalf("%q: %s %v", enc, event, err)
		}
		size := len(f[4])
		t.Logf("encoding %q: %d of 400 records, %d KiB frame", enc, len(records), size>>10)
		// PhoenixKit's JSON values: 4 MiB pages; our text: pages whose frame fits
		// in a FiberKit client's 1 MiB.
		if len(records) == 0 || len(records) >= 400 || string(p["has_more"]) != "true" || size > 5<<20 || enc == "text" && size > 1<<20 {
			t.Fatalf("encoding %q: %d records, has_more %s, %d bytes", enc, len(records), p["has_more"], size)
		}
		got = len(records)
	}
	after := peakRSS(t, a)
	t.Logf("plugin peak RSS %d MiB before, %d MiB after", before>>20, after>>20)
	// The plugin is built with the race detector, which multiplies what each copy
	// of a page costs; the 400 rows are 100 MiB of text before any copy.
	if after-before > 192<<20 {
		t.Fatalf("the plugin's peak memory grew by %d MiB serving two capped pages", (after-before)>>20)
	}
	// A permanent connection is charged the rows it got, not the limit it asked.
	c := a.newConnection(t, connection.Limits{MaxRecords: 1000}, true)
	r.conn.Close()
	cl, err := dialToken(t, a, c.Token)
	if err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	page, err := cl.FetchRecords(fctx, "wide", 0, 400)
	if err != nil || !page.HasMore || len(page.Records) != got {
		t.Fatalf("page over a connection: %d records, has_more %v, %v", len(page.Records), page.HasMore, err)
	}
	var used int64
	if err := a.pool.QueryRow(context.Background(), `SELECT records FROM fiberkit_sync_connections WHERE id::text = $1`, c.ID).Scan(&used); err != nil {
		t.Fatalf("records used: %v", err)
	}
	if used != int64(got) {
		t.Fatalf("connection charged %d records for a page of %d", used, got)
	}
}
