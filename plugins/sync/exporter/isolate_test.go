package exporter_test

import (
	"context"
	"testing"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/exporter"
)

// A request that fails in SQL — a key that does not cast to the key's type, as a
// hostile receiver sends — is refused, and the snapshot serves the next requests:
// one bad statement must not abort the transaction for the rest of the connection.
func TestFailedRequestLeavesTheSnapshotUsable(t *testing.T) {
	ctx := context.Background()
	pool, _ := newDB(t)
	if _, err := pool.Exec(ctx, `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' FROM generate_series(1, 10) g`); err != nil {
		t.Fatal(err)
	}
	snap, err := exporter.Begin(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	sch, err := catalog.GetSchema(ctx, snap.Querier(), "t")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{{"1') OR true --"}, {"99999999999999"}} {
		if _, err := readAll(t, snap, pool, sch, bad, exporter.StreamOptions{BatchRows: 100}, false); err == nil {
			t.Fatalf("after key %q accepted", bad)
		}
		if _, err := snap.Checksum(ctx, sch); err != nil {
			t.Fatalf("checksum after a failed request: %v", err)
		}
		b, err := readAll(t, snap, pool, sch, nil, exporter.StreamOptions{BatchRows: 100}, false)
		if err != nil || countRows(b) != 10 {
			t.Fatalf("batch after a failed request: %d rows, %v", countRows(b), err)
		}
		p, err := snap.Records(ctx, sch, 0, 5)
		if err != nil || len(p.Records) != 5 {
			t.Fatalf("records after a failed request: %d, %v", len(p.Records), err)
		}
	}
}
