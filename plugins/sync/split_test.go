package main_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/client"
)

// splitPool is a pool on s's database with room for a local connection per range.
func splitPool(t *testing.T, s *site) *pgxpool.Pool {
	t.Helper()
	sep := "?"
	if strings.Contains(s.db, "?") {
		sep = "&"
	}
	return testsupport.Pool(t, s.db+sep+"pool_max_conns=8")
}

// A table pulled split over four key ranges of the sender's snapshot, a stream
// each, holds exactly what a pull by one stream gives: the sender's rows.
func TestSplitPullEqualsOneStream(t *testing.T) {
	a := bigSender(t)
	b := startSite(t, siteOptions{})
	ctx := context.Background()
	pool := splitPool(t, b)
	c := a.connect(t)
	defer c.Close()
	res, err := c.Transfer(ctx, pool, "big", client.TransferOptions{CreateMissing: true, BatchSize: 1000, SplitWorkers: 4, SplitBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Ranges) != 4 || res.Rows != 60000 || res.Created != 60000 || res.Requested != 60000 {
		t.Fatalf("split pull: %d ranges, %d rows, %d created of %d", len(res.Ranges), res.Rows, res.Created, res.Requested)
	}
	for i, r := range res.Ranges {
		if !r.Done {
			t.Fatalf("range %d not done: %+v", i, r)
		}
	}
	if len(res.LastKey) != 1 || res.LastKey[0] != "60000" {
		t.Fatalf("last key %v, want the table's last", res.LastKey)
	}
	split := b.checksum(t, "big", "id")
	sameTable(t, a, b, "big", "id", "after the split pull")

	b.exec(t, `TRUNCATE big`)
	c2 := a.connect(t)
	defer c2.Close()
	res, err = c2.Transfer(ctx, pool, "big", client.TransferOptions{BatchSize: 1000, SplitWorkers: 1})
	if err != nil || res.Ranges != nil || res.Rows != 60000 {
		t.Fatalf("one stream: %d rows, ranges %v, %v", res.Rows, res.Ranges, err)
	}
	if b.checksum(t, "big", "id") != split {
		t.Fatal("the split pull and the pull by one stream differ")
	}
}

// A split pull cancelled mid-way leaves each range a run of rows from its start
// to its own last key, nothing past it; resuming with the result's ranges pulls
// each range on from there, and the table is whole — no row lost or twice.
func TestSplitPullResumesEveryRange(t *testing.T) {
	a := bigSender(t)
	b := startSite(t, siteOptions{})
	ctx := context.Background()
	pool := splitPool(t, b)
	c := a.connect(t)
	defer c.Close()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type outcome struct {
		res client.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := c.Transfer(cctx, pool, "big", client.TransferOptions{CreateMissing: true, BatchSize: 200, SplitWorkers: 3, SplitBytes: 1})
		done <- outcome{res, err}
	}()
	testsupport.Eventually(t, "rows landing", func() bool {
		var n int64
		_ = b.pool.QueryRow(ctx, `SELECT count(*) FROM big`).Scan(&n)
		return n > 6000
	})
	cancel()
	o := <-done
	if o.err == nil {
		t.Fatal("the pull finished before it was cancelled")
	}
	if len(o.res.Ranges) != 3 {
		t.Fatalf("ranges: %+v (%v)", o.res.Ranges, o.err)
	}
	var here int64
	_ = b.pool.QueryRow(ctx, `SELECT count(*) FROM big`).Scan(&here)
	if here != o.res.Rows || here == 60000 {
		t.Fatalf("%d rows here, the result says %d", here, o.res.Rows)
	}
	// Each range holds exactly its rows up to its last key.
	bound := func(k []string, def string) string {
		if len(k) == 0 {
			return def
		}
		return k[0]
	}
	for i, r := range o.res.Ranges {
		lo, hi := bound(r.After, "0"), bound(r.Until, "1000000")
		last := bound(r.LastKey, lo)
		var n, maxID int64
		if err := b.pool.QueryRow(ctx, `SELECT count(*), coalesce(max(id), $1::bigint) FROM big WHERE id > $1::bigint AND id <= $2::bigint`, lo, hi).Scan(&n, &maxID); err != nil {
			t.Fatal(err)
		}
		var want int64
		_ = a.pool.QueryRow(ctx, `SELECT count(*) FROM big WHERE id > $1::bigint AND id <= $2::bigint`, lo, last).Scan(&want)
		if n != want || maxID != mustInt(t, last) {
			t.Fatalf("range %d (%s, %s]: %d rows up to %d here, want %d up to %s", i, lo, hi, n, maxID, want, last)
		}
	}
	c2 := a.connect(t)
	defer c2.Close()
	res, err := c2.Transfer(ctx, pool, "big", client.TransferOptions{BatchSize: 1000, Ranges: o.res.Ranges})
	if err != nil || res.Created != int(60000-here) || res.Failed != 0 {
		t.Fatalf("resume: %d created (want %d), %v", res.Created, 60000-here, err)
	}
	for i, r := range res.Ranges {
		if !r.Done {
			t.Fatalf("range %d not done after the resume: %+v", i, r)
		}
	}
	sameTable(t, a, b, "big", "id", "after the resume")
}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not an id: %q", s)
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// request:ranges refuses a malformed request with bad_request, answers a table the
// receiver may not read with unknown_table, and leaves the connection usable.
func TestRangesRequestRefusesBadPayloads(t *testing.T) {
	a := seeded(t, siteOptions{})
	r := dialPhoenixKit(t, a, a.newCode(t).Code)
	r.join()
	for _, c := range []struct {
		payload map[string]any
		code    string
	}{
		{map[string]any{"table": "customers", "parts": 0}, "bad_request"},
		{map[string]any{"table": "customers", "parts": 1000}, "bad_request"},
		{map[string]any{"table": "customers", "parts": -1}, "bad_request"},
		{map[string]any{"table": "customers", "parts": "four"}, "bad_request"},
		{map[string]any{"table": "customers\x00", "parts": 4}, "bad_request"},
		{map[string]any{"table": "", "parts": 4}, "bad_request"},
		{map[string]any{"table": "customers; DROP TABLE customers", "parts": 4}, "unknown_table"},
		{map[string]any{"table": "fiberkit_sync_sessions", "parts": 4}, "unknown_table"},
	} {
		event, p, _ := r.request("request:ranges", c.payload)
		if event != "response:error" || str(p["error"]) != c.code {
			t.Fatalf("%v: %s %v, want %s", c.payload, event, p, c.code)
		}
	}
	event, p, _ := r.request("request:ranges", map[string]any{"table": "customers", "parts": 4})
	if event != "response:ranges" || !strings.HasPrefix(string(p["bounds"]), "[[") {
		t.Fatalf("good request: %s %v", event, p)
	}
}
