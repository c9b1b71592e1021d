package client

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// receiverSite is a receiving site's database holding a private schema of its own:
// private.secrets with two rows no sender may touch.
func receiverSite(t *testing.T, ctx context.Context) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	mustExec(t, pool, `CREATE SCHEMA private;
		CREATE TABLE private.secrets (id int PRIMARY KEY, secret text NOT NULL);
		INSERT INTO private.secrets VALUES (1, 'receiver key one'), (2, 'receiver key two')`)
	return pool
}

func mustExec(t *testing.T, pool *pgxpool.Pool, sql string) {
	t.Helper()
	testsupport.Exec(t, pool, sql)
}

// rowsOf returns the text of a one-column query's rows.
func rowsOf(t *testing.T, pool *pgxpool.Pool, sql string) []string {
	t.Helper()
	var out []string
	if err := pool.QueryRow(context.Background(), "SELECT array("+sql+")").Scan(&out); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// assertSecretsUntouched checks the receiver's private.secrets still holds exactly
// its own two rows.
func assertSecretsUntouched(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	want := []string{"1:receiver key one", "2:receiver key two"}
	if got := rowsOf(t, pool, `SELECT id || ':' || secret FROM private.secrets ORDER BY id`); !reflect.DeepEqual(got, want) {
		t.Errorf("private.secrets = %q, want %q", got, want)
	}
}

// secretsSender is a sender listing a public table literally named "private.secrets".
func secretsSender(t *testing.T) *phoenixKitSender {
	col := func(name, typ string, pk bool) map[string]any {
		return map[string]any{"name": name, "type": typ, "nullable": !pk, "primary_key": pk, "default": nil,
			"element_type": nil, "max_length": nil, "precision": nil, "scale": nil}
	}
	schema := map[string]any{"table": "private.secrets", "schema": "public", "primary_key": []string{"id"},
		"columns": []any{col("id", "integer", true), col("secret", "text", false)}}
	rows := []map[string]any{{"id": 1, "secret": "sender row one"}, {"id": 3, "secret": "sender row three"}}
	return newPhoenixKitSender(t, schema, rows)
}

// TestSenderTableNameNeverPicksTheSchema: a sender listing a public table literally
// named "private.secrets" once made the receiver (overwrite, create missing) write
// into its own private.secrets, and compare against it. The rows must land in the
// receiver's public."private.secrets" (or the schema the receiving side named), and
// private.secrets must keep its count and contents.
func TestSenderTableNameNeverPicksTheSchema(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := receiverSite(t, ctx)
	sender := secretsSender(t)
	c, err := Connect(ctx, sender.srv.URL+"/sync/websocket", "pkcode22", Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// The Receive page's comparison: the receiver has no such table yet.
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second) // this sender answers no checksum
	states, err := c.Compare(cctx, pool, []catalog.Table{{Schema: "public", Name: "private.secrets", Rows: 2}})
	ccancel()
	if err != nil || len(states) != 1 || states[0].State != "new" || states[0].LocalRows != 0 {
		t.Errorf("compare = %+v, %v; want new (private.secrets is not the sender's table)", states, err)
	}

	results, err := c.TransferAll(ctx, pool, TransferAllOptions{Tables: []string{"private.secrets"}, Strategy: syncapi.Overwrite,
		TransferOptions: TransferOptions{CreateMissing: true}})
	if err != nil {
		t.Fatalf("pull: %v (%+v)", err, results)
	}
	if r := results["private.secrets"]; !r.TableCreated || r.Created != 2 || r.Updated != 0 {
		t.Errorf("result %+v: want the table created and 2 rows created", r)
	}
	assertSecretsUntouched(t, pool)
	want := []string{"1:sender row one", "3:sender row three"}
	if got := rowsOf(t, pool, `SELECT id || ':' || secret FROM public."private.secrets" ORDER BY id`); !reflect.DeepEqual(got, want) {
		t.Errorf(`public."private.secrets" = %q, want %q`, got, want)
	}

	// Again, one table at a time, into the table that now exists.
	if _, err := pool.Exec(ctx, `UPDATE public."private.secrets" SET secret = 'changed here'`); err != nil {
		t.Fatal(err)
	}
	res, err := c.Transfer(ctx, pool, "private.secrets", TransferOptions{Strategy: syncapi.Overwrite})
	if err != nil || res.TableCreated || res.Updated != 2 {
		t.Errorf("transfer: %+v, %v; want 2 rows updated in the existing table", res, err)
	}
	assertSecretsUntouched(t, pool)
	if got := rowsOf(t, pool, `SELECT id || ':' || secret FROM public."private.secrets" ORDER BY id`); !reflect.DeepEqual(got, want) {
		t.Errorf(`public."private.secrets" after the second pull = %q, want %q`, got, want)
	}

	// A schema the receiving side names is used, with the sender's name whole.
	res, err = c.Transfer(ctx, pool, "private.secrets", TransferOptions{Strategy: syncapi.Overwrite, CreateMissing: true, Schema: "mirror"})
	if err != nil || !res.TableCreated || res.Created != 2 {
		t.Errorf("transfer into mirror: %+v, %v; want the table created with 2 rows", res, err)
	}
	if got := rowsOf(t, pool, `SELECT id || ':' || secret FROM mirror."private.secrets" ORDER BY id`); len(got) != 2 {
		t.Errorf(`mirror."private.secrets" = %q, want 2 rows`, got)
	}
	assertSecretsUntouched(t, pool)
	if got := rowsOf(t, pool, `SELECT count(*)::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'private'`); !reflect.DeepEqual(got, []string{"2"}) { // the table and its key's index
		t.Errorf("relations in schema private: %v, want only secrets and its key", got)
	}
}

// TestTargetRefusals checks the local names a receiver never writes, whatever a
// sender lists, and that an import is opened on exactly the target even when another
// table answers to the same text.
func TestTargetRefusals(t *testing.T) {
	for _, tc := range []struct{ schema, table string }{
		{"", "fiberkit_settings"},
		{"", ""},
		{"", strings.Repeat("x", 64)}, // PostgreSQL would cut it to another name
		{"", "a\x00b"},
		{"pg_catalog", "t"},
		{"information_schema", "t"},
		{strings.Repeat("s", 64), "t"},
	} {
		if _, err := (TransferOptions{Schema: tc.schema}).target(tc.table); !errors.Is(err, ErrTargetRefused) {
			t.Errorf("schema %q table %q: %v, want ErrTargetRefused", tc.schema, tc.table, err)
		}
	}

	ctx := context.Background()
	pool := receiverSite(t, ctx)
	mustExec(t, pool, `CREATE TABLE public."private.secrets" (id int PRIMARY KEY, secret text NOT NULL)`)
	// "private.secrets" as Resolve reads it is public's table, not private.secrets.
	if _, err := openImporter(ctx, pool, catalog.Ident{Schema: "private", Name: "secrets"}, importer.Options{}); !errors.Is(err, ErrTargetRefused) {
		t.Errorf("import into private.secrets opened (%v), though its name resolves to another table", err)
	}
	im, err := openImporter(ctx, pool, catalog.Ident{Schema: "public", Name: "private.secrets"}, importer.Options{Strategy: syncapi.Overwrite})
	if err != nil {
		t.Fatal(err)
	}
	if got := catalog.IdentOf(im.Schema()); got.Schema != "public" || got.Name != "private.secrets" {
		t.Errorf("importer opened on %s", got.Quoted())
	}
	if _, err := im.ImportRecords(ctx, []map[string]*string{{"id": ptr("1"), "secret": ptr("x")}}); err != nil {
		t.Fatal(err)
	}
	assertSecretsUntouched(t, pool)
	// A missing target is not looked for elsewhere.
	mustExec(t, pool, `DROP TABLE public."private.secrets"`)
	if _, err := openImporter(ctx, pool, catalog.Ident{Schema: "public", Name: "private.secrets"}, importer.Options{}); !errors.Is(err, catalog.ErrUnknownTable) {
		t.Errorf("import into a missing public.\"private.secrets\": %v, want ErrUnknownTable", err)
	}
}

func ptr(s string) *string { return &s }
