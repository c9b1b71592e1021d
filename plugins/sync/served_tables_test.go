package main_test

import (
	"context"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
)

// A receiver reads only what request:tables lists: not the kit's own tables, not
// another schema, and not an excluded table under another spelling of its name.
func TestSenderServesOnlyListedTablesWhateverTheSpelling(t *testing.T) {
	ctx := context.Background()
	a := seeded(t, siteOptions{})
	a.exec(t, `CREATE SCHEMA private; CREATE TABLE private.api_keys (id int PRIMARY KEY, key text); INSERT INTO private.api_keys VALUES (1, 'sk_live_secret')`)

	code := a.newCode(t).Code
	cl, err := client.Connect(ctx, a.url, code, client.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, tbl := range []string{"fiberkit_csrf", "public.fiberkit_csrf", "fiberkit_settings", "fiberkit_sync_sessions", "private.api_keys"} {
		if n, err := cl.GetCount(ctx, tbl); remoteCode(err) != "unknown_table" {
			t.Errorf("count %s: %d, %v (want unknown_table)", tbl, n, err)
		}
		if _, err := cl.FetchRecords(ctx, tbl, 0, 10); remoteCode(err) != "unknown_table" {
			t.Errorf("records %s: %v (want unknown_table)", tbl, err)
		}
	}
	// The same table by its qualified name is served like the bare one.
	if n, err := cl.GetCount(ctx, "public.products"); err != nil || n != 300 {
		t.Fatalf("public.products: %d %v", n, err)
	}

	c := a.newConnection(t, connection.Limits{ExcludedTables: []string{"products"}}, true)
	tc, err := dialToken(t, a, c.Token)
	if err != nil {
		t.Fatal(err)
	}
	for _, tbl := range []string{"products", "public.products"} {
		if n, err := tc.GetCount(ctx, tbl); err == nil {
			t.Errorf("excluded table read as %q: %d rows", tbl, n)
		}
		if _, err := tc.Transfer(ctx, startSite(t, siteOptions{}).pool, tbl, client.TransferOptions{CreateMissing: true}); err == nil {
			t.Errorf("excluded table transferred as %q", tbl)
		}
	}
}
