package ddl_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/ddl"
)

// TestForeignKeysWithinPull checks that a peer's foreign keys are added only between
// the tables of one pull, each referencing the local table its referenced table was
// written to, and that a key to any other table (a kit table included) is left out
// with a warning.
func TestForeignKeysWithinPull(t *testing.T) {
	db := newDB(t)
	ctx := context.Background()
	exec(t, db, `CREATE TABLE fiberkit_settings (id int PRIMARY KEY); CREATE TABLE accounts (id int PRIMARY KEY);
		CREATE SCHEMA mirror; CREATE TABLE mirror.customers (id int PRIMARY KEY); CREATE TABLE mirror.orders (id int PRIMARY KEY, customer int, account int, setting int)`)
	fk := func(name, col, refTable string) catalog.ForeignKey {
		return catalog.ForeignKey{Name: name, Columns: []string{col}, RefSchema: "public", RefTable: refTable, RefColumns: []string{"id"},
			Definition: "FOREIGN KEY (" + col + ") REFERENCES " + refTable + "(id) ON DELETE CASCADE"}
	}
	// The sender's public.orders and public.customers were written to mirror.
	orders := &catalog.Schema{Schema: "mirror", Name: "orders", ForeignKeys: []catalog.ForeignKey{
		fk("orders_customer_fkey", "customer", "customers"),
		fk("orders_account_fkey", "account", "accounts"),
		fk("orders_setting_fkey", "setting", "fiberkit_settings"),
	}}
	pulled := ddl.Pulled{
		{Schema: "public", Name: "orders"}:    {Schema: "mirror", Name: "orders"},
		{Schema: "public", Name: "customers"}: {Schema: "mirror", Name: "customers"},
	}
	res, err := ddl.AddForeignKeysWithin(ctx, db, orders, pulled)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 2 || !strings.Contains(res.Warnings[0], "orders_account_fkey") || !strings.Contains(res.Warnings[1], `"public"."fiberkit_settings"`) {
		t.Errorf("warnings = %q", res.Warnings)
	}
	want := []string{"mirror.orders orders_customer_fkey -> mirror.customers FOREIGN KEY (customer) REFERENCES mirror.customers(id) ON DELETE CASCADE"}
	got := strs(t, db, `SELECT conrelid::regclass::text || ' ' || conname || ' -> ' || confrelid::regclass::text || ' ' || pg_get_constraintdef(oid)
		FROM pg_constraint WHERE contype = 'f' ORDER BY 1`)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("foreign keys = %q, want %q", got, want)
	}
	// Without a pull, a key to a kit table is still never added.
	exec(t, db, `CREATE TABLE plain (id int PRIMARY KEY, setting int)`)
	plain := &catalog.Schema{Schema: "public", Name: "plain", ForeignKeys: []catalog.ForeignKey{fk("plain_setting_fkey", "setting", "fiberkit_settings")}}
	if err := ddl.AddForeignKeys(ctx, db, plain); err != nil {
		t.Fatal(err)
	}
	if got := strs(t, db, `SELECT conname::text FROM pg_constraint WHERE conrelid = 'plain'::regclass AND contype = 'f'`); len(got) > 0 {
		t.Errorf("plain got %v", got)
	}
}
