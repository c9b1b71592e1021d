package client

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// TestForeignKeysStayInsideThePull: a sender's definition could make the receiver add
// a foreign key to any local table, the kit's own fiberkit_* included. Only keys
// between tables of the pull are added (here, items referencing itself); one
// referencing fiberkit_settings or another local table is left out, and the table's
// result says so.
func TestForeignKeysStayInsideThePull(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := receiverSite(t, ctx)
	mustExec(t, pool, `CREATE TABLE fiberkit_settings (id int PRIMARY KEY); INSERT INTO fiberkit_settings VALUES (1);
		CREATE TABLE accounts (id int PRIMARY KEY); INSERT INTO accounts VALUES (1)`)

	col := func(name string, pk bool) map[string]any {
		return map[string]any{"name": name, "type": "integer", "nullable": !pk, "primary_key": pk, "default": nil,
			"element_type": nil, "max_length": nil, "precision": nil, "scale": nil}
	}
	fk := func(name, column, refSchema, refTable string) map[string]any {
		return map[string]any{"name": name, "columns": []string{column}, "ref_schema": refSchema, "ref_table": refTable,
			"ref_columns": []string{"id"}, "definition": "FOREIGN KEY (" + column + ") REFERENCES " + refTable + "(id) ON DELETE CASCADE"}
	}
	schema := map[string]any{"table": "items", "schema": "public", "primary_key": []string{"id"},
		"columns": []any{col("id", true), col("parent", false), col("setting", false), col("account", false), col("secret", false)},
		"foreign_keys": []any{
			fk("items_parent_fkey", "parent", "public", "items"),
			fk("items_setting_fkey", "setting", "public", "fiberkit_settings"),
			fk("items_account_fkey", "account", "public", "accounts"),
			fk("items_secret_fkey", "secret", "private", "secrets"),
		}}
	rows := []map[string]any{
		{"id": 1, "parent": nil, "setting": 1, "account": 1, "secret": 1},
		{"id": 2, "parent": 1, "setting": 1, "account": 1, "secret": 2},
	}
	sender := newPhoenixKitSender(t, schema, rows)
	c, err := Connect(ctx, sender.srv.URL+"/sync/websocket", "pkcode22", Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	results, err := c.TransferAll(ctx, pool, TransferAllOptions{Tables: []string{"items"}, Strategy: syncapi.Skip,
		TransferOptions: TransferOptions{CreateMissing: true}})
	if err != nil {
		t.Fatalf("pull: %v (%+v)", err, results)
	}
	r := results["items"]
	if !r.TableCreated || r.Created != 2 {
		t.Errorf("result %+v", r)
	}
	// Only the key inside the pull exists.
	got := rowsOf(t, pool, `SELECT conrelid::regclass::text || ' ' || conname || ' -> ' || confrelid::regclass::text
		FROM pg_constraint WHERE contype = 'f' ORDER BY 1`)
	if want := []string{"items items_parent_fkey -> items"}; !reflect.DeepEqual(got, want) {
		t.Errorf("foreign keys = %q, want %q", got, want)
	}
	for _, ref := range []string{`"public"."fiberkit_settings"`, `"public"."accounts"`, `"private"."secrets"`} {
		found := false
		for _, w := range r.Warnings {
			found = found || strings.Contains(w, ref) && strings.Contains(w, "not added")
		}
		if !found {
			t.Errorf("no warning names the key referencing %s: %q", ref, r.Warnings)
		}
	}
	// The local tables can still lose rows: nothing of the sender's ties them.
	mustExec(t, pool, `DELETE FROM fiberkit_settings; DELETE FROM accounts; DELETE FROM private.secrets`)
	// The key inside the pull works, ON DELETE CASCADE included.
	mustExec(t, pool, `DELETE FROM items WHERE id = 1`)
	if got := rowsOf(t, pool, `SELECT count(*)::text FROM items`); got[0] != "0" {
		t.Errorf("items left after deleting the parent: %v", got)
	}
}
