package main

import (
	"context"
	"errors"
	"testing"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/sample"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The demo fails when the databases differ after the transfer.
func TestCompareFindsDifferences(t *testing.T) {
	ctx := context.Background()
	a, b := pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	for _, db := range []string{a, b} {
		if err := sample.Seed(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	if same, err := compare(ctx, a, b); err != nil || !same {
		t.Fatalf("identical databases: same %v, %v", same, err)
	}
	if verdict(nil, map[string]client.Result{"customers": {}}, true) != nil {
		t.Fatal("a clean run is a failure")
	}
	pb := testsupport.Pool(t, b)
	testsupport.Exec(t, pb, `UPDATE customers SET name = name || '!' WHERE id = 1`)
	same, err := compare(ctx, a, b)
	if err != nil || same {
		t.Fatalf("a changed row: same %v, %v", same, err)
	}
	if err := verdict(nil, nil, same); err == nil {
		t.Fatal("differing databases pass")
	}
	testsupport.Exec(t, pb, `DROP TABLE order_items`)
	if same, err := compare(ctx, a, b); err != nil || same {
		t.Fatalf("a missing table: same %v, %v", same, err)
	}
}

// A pull that failed in part or in whole fails the demo, with the tables named.
func TestVerdictOnFailedPull(t *testing.T) {
	results := map[string]client.Result{"customers": {Rows: 10}, "orders": {Error: "transfer orders: boom"}}
	err := verdict(nil, results, true)
	if err == nil || err.Error() != "1 of 2 tables failed (orders)" {
		t.Fatalf("a table failed: %v", err)
	}
	if err := verdict(errors.New("connect_failed"), nil, false); err == nil {
		t.Fatal("a failed pull passes")
	}
}
