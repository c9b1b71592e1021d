package main_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
)

// receiverLackingColumns is B's older schema: customers without profile and active,
// products without photo and dimensions, and a column of its own in each.
const receiverLackingColumns = `
CREATE TABLE customers (id bigint PRIMARY KEY, uuid uuid NOT NULL, name varchar(120) NOT NULL, email text NOT NULL,
	tags text[] NOT NULL DEFAULT '{}', balance numeric(12,2) NOT NULL DEFAULT 0, created_at timestamptz NOT NULL DEFAULT now(),
	notes text, local_only text DEFAULT 'mine');
CREATE TABLE products (sku text PRIMARY KEY, title text NOT NULL, price numeric(10,2) NOT NULL, weight_kg double precision,
	released_on date, local_only text DEFAULT 'mine')`

var wantDropped = map[string][]string{"customers": {"profile", "active"}, "products": {"photo", "dimensions"}}

// sameCommonColumns fails unless both sites hold the same values in the columns B has.
func sameCommonColumns(t *testing.T, a, b *site) {
	t.Helper()
	for _, q := range [][2]string{
		{"(SELECT id, uuid, name, email::text, tags, balance, created_at, notes FROM customers) c", "id"},
		{"(SELECT sku, title, price, weight_kg, released_on FROM products) p", "sku"},
	} {
		if ca, cb := a.checksum(t, q[0], q[1]), b.checksum(t, q[0], q[1]); ca != cb {
			t.Fatalf("%s differs between the sites", q[0])
		}
	}
	var mine int
	if err := b.pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM customers WHERE local_only = 'mine') +
		(SELECT count(*) FROM products WHERE local_only = 'mine')`).Scan(&mine); err != nil || mine != 2300 {
		t.Fatalf("rows with the local column's default: %d (%v)", mine, err)
	}
}

// A column the sender has and the receiver lacks fails the table, naming every such
// column and the option; with IgnoreMissingColumns the rows land without them.
func TestMissingColumnsFailOrAreDropped(t *testing.T) {
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{})
	b.exec(t, receiverLackingColumns)
	ctx := context.Background()
	tables := []string{"customers", "products"}
	transfer := func(ignore bool) (map[string]client.Result, error) {
		c, err := client.Connect(ctx, a.url, a.newCode(t).Code, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.TransferAll(ctx, b.pool, client.TransferAllOptions{Tables: tables, Strategy: importer.Overwrite,
			TransferOptions: client.TransferOptions{BatchSize: 300, IgnoreMissingColumns: ignore}})
	}
	res, err := transfer(false)
	if err == nil {
		t.Fatal("no error")
	}
	for tbl, cols := range wantDropped {
		r := res[tbl]
		for _, want := range []string{`"` + cols[0] + `", "` + cols[1] + `"`, "IgnoreMissingColumns", "-ignore-missing-columns"} {
			if !strings.Contains(r.Error, want) {
				t.Fatalf("%s: error %q does not mention %s", tbl, r.Error, want)
			}
		}
		if r.Rows != 0 || r.Created != 0 {
			t.Fatalf("%s: %+v", tbl, r)
		}
	}

	res, err = transfer(true)
	if err != nil {
		t.Fatal(err)
	}
	for tbl, n := range map[string]int{"customers": 2000, "products": 300} {
		if r := res[tbl]; r.Created != n || r.Failed != 0 || !reflect.DeepEqual(r.DroppedColumns, wantDropped[tbl]) {
			t.Fatalf("%s: %+v", tbl, r)
		}
	}
	sameCommonColumns(t, a, b)

	// Through the temp table (rows exist: overwrite updates them), in small batches.
	b.exec(t, `UPDATE customers SET notes = 'local', tags = '{}'; UPDATE products SET title = 'local'`)
	c, err := client.Connect(ctx, a.url, a.newCode(t).Code, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Transfer(ctx, b.pool, "customers", client.TransferOptions{Strategy: importer.Overwrite, BatchSize: 150, IgnoreMissingColumns: true})
	if err != nil || r.Updated != 2000 || !reflect.DeepEqual(r.DroppedColumns, wantDropped["customers"]) {
		t.Fatalf("%+v, %v", r, err)
	}
	r, err = c.Transfer(ctx, b.pool, "products", client.TransferOptions{Strategy: importer.Merge, BatchSize: 70, IgnoreMissingColumns: true})
	if err != nil || r.Updated != 300 {
		t.Fatalf("%+v, %v", r, err)
	}
	sameCommonColumns(t, a, b)
}

// The pull operation and the command line take the option too.
func TestMissingColumnsThroughPullAndCommandLine(t *testing.T) {
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{})
	b.exec(t, receiverLackingColumns)
	var res map[string]client.Result
	in := map[string]any{"url": a.url, "code": a.newCode(t).Code, "tables": []string{"customers", "products"}}
	if err := b.call(t, "pull", in, &res); err != nil {
		t.Fatal(err)
	}
	if e := res["products"].Error; !strings.Contains(e, `"photo", "dimensions"`) || !strings.Contains(e, "ignore_missing_columns") {
		t.Fatalf("products: %+v", res["products"])
	}
	in["code"], in["ignore_missing_columns"] = a.newCode(t).Code, true
	if err := b.call(t, "pull", in, &res); err != nil {
		t.Fatal(err)
	}
	for tbl, cols := range wantDropped {
		if r := res[tbl]; r.Error != "" || r.Rows == 0 || !reflect.DeepEqual(r.DroppedColumns, cols) {
			t.Fatalf("%s: %+v", tbl, r)
		}
	}
	sameCommonColumns(t, a, b)

	b.exec(t, `TRUNCATE customers, products`)
	code, out, _ := runPull(t, "-url", a.url, "-code", a.newCode(t).Code, "-db", b.db, "-tables", "customers,products")
	if code != 4 || !strings.Contains(out, `unknown column "profile", "active"`) || !strings.Contains(out, "-ignore-missing-columns") {
		t.Fatalf("without the flag: exit %d\n%s", code, out)
	}
	code, out, _ = runPull(t, "-url", a.url, "-code", a.newCode(t).Code, "-db", b.db, "-tables", "customers,products", "-ignore-missing-columns")
	if code != 0 || !strings.Contains(out, "columns not here, left out: profile, active") || !strings.Contains(out, "left out: photo, dimensions") {
		t.Fatalf("with the flag: exit %d\n%s", code, out)
	}
	sameCommonColumns(t, a, b)
}
