package client

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
)

// TestMain also removes the plugin binaries a test built (testsupport.Binary).
func TestMain(m *testing.M) { testsupport.Main(m) }

// TestCreateUnderRequestedName checks that a missing table is created under the exact
// name the sender listed, in public or the schema the receiving side named, whatever
// name the sender's definition carries and whatever dots the listed name holds.
func TestCreateUnderRequestedName(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	cols := []catalog.Column{{Name: "id", Type: "integer"}}
	for _, tc := range []struct {
		requested   string
		schema      string // TransferOptions.Schema
		sentSchema  string
		sentName    string
		want        string // schema.name created
		wantMissing string // a table that must not exist afterwards
	}{
		{"orders", "", "evil", "victim", "public.orders", "evil.victim"},
		{"orders2", "", "public", "other", "public.orders2", "public.other"},
		{"sales.t", "", "sales", "t", "public.sales.t", "sales.t"},
		{"a.b", "", "public", "a.b", "public.a.b", "a.b"},
		{"c.d", "", "c", "d", "public.c.d", "c.d"},
		{"t", "sales", "public", "t", "sales.t", "public.t"},
		{"e.f", "sales", "e", "f", "sales.e.f", "e.f"},
	} {
		sch := &catalog.Schema{Schema: tc.sentSchema, Name: tc.sentName, Columns: cols}
		target, err := TransferOptions{Schema: tc.schema}.target(tc.requested)
		if err != nil {
			t.Fatalf("%s: %v", tc.requested, err)
		}
		local, _, err := createLocal(ctx, pool, target, sch)
		if err != nil {
			t.Fatalf("%s: %v", tc.requested, err)
		}
		if got := local.Schema + "." + local.Name; got != tc.want {
			t.Errorf("%s: created %s, want %s", tc.requested, got, tc.want)
		}
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname || '.' || c.relname = $1`, tc.wantMissing).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s: %s exists (%v)", tc.requested, tc.wantMissing, err)
		}
		if _, err := catalog.ResolveIn(ctx, pool, target.Schema, target.Name); err != nil {
			t.Errorf("%s: not found after creation (%v)", tc.requested, err)
		}
		if sch.Schema != tc.sentSchema || sch.Name != tc.sentName {
			t.Errorf("%s: the sender's definition was changed", tc.requested)
		}
	}
	// A kit table name is refused even when requested.
	if _, err := (TransferOptions{}).target("fiberkit_settings"); !errors.Is(err, ErrTargetRefused) {
		t.Errorf("fiberkit_settings: %v", err)
	}
	if _, _, err := createLocal(ctx, pool, catalog.Ident{Schema: "public", Name: "fiberkit_settings"}, &catalog.Schema{Schema: "public", Name: "x", Columns: cols}); err == nil {
		t.Error("fiberkit_settings created")
	}
}
