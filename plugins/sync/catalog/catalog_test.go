package catalog_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func newDB(t *testing.T) *pgxpool.Pool { return pgtest.NewPool(t) }

// TestSecretTables checks that no kit table — the host's (settings, revisions,
// audit, migrations, CSRF tokens) nor the Sync plugin's (connections with token
// hashes, session codes, attempts…), nor one a later version adds — is listed or
// resolved, so none can be exported, counted or imported into.
func TestSecretTables(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	testsupport.Exec(t, db, `CREATE SCHEMA app;
		CREATE TABLE fiberkit_csrf (key text PRIMARY KEY, value bytea, expires_at timestamptz);
		CREATE TABLE fiberkit_settings (key text PRIMARY KEY, value text);
		CREATE TABLE fiberkit_sync_connections (id text PRIMARY KEY, token_hash text);
		CREATE TABLE fiberkit_sync_sessions (id text PRIMARY KEY, code text);
		CREATE TABLE fiberkit_sync_attempts (addr text PRIMARY KEY, n int);
		CREATE TABLE fiberkit_future_tokens (id int PRIMARY KEY);
		CREATE TABLE app.fiberkit_csrf (key text PRIMARY KEY);
		CREATE TABLE orders (id int PRIMARY KEY);
		INSERT INTO fiberkit_csrf VALUES ('k', 'secret', now())`)
	for _, o := range []catalog.ListOptions{{}, {IncludeKit: true}, {IncludeKit: true, Schemas: []string{"public", "app"}, Exact: true}} {
		list, err := catalog.ListTables(ctx, db, o)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].Name != "orders" {
			t.Errorf("ListTables(%+v) = %+v", o, list)
		}
	}
	for _, name := range []string{"fiberkit_csrf", "public.fiberkit_csrf", "app.fiberkit_csrf", "fiberkit_settings",
		"fiberkit_sync_connections", "fiberkit_sync_sessions", "fiberkit_sync_attempts", "fiberkit_future_tokens"} {
		rel := name
		if _, n, ok := strings.Cut(name, "."); ok {
			rel = n
		}
		if !catalog.IsSecretTable(rel) {
			t.Errorf("IsSecretTable(%q) = false", name)
		}
		if _, err := catalog.Resolve(ctx, db, name); !errors.Is(err, catalog.ErrUnknownTable) {
			t.Errorf("Resolve(%q) = %v, want ErrUnknownTable", name, err)
		}
		if _, err := catalog.GetSchema(ctx, db, name); !errors.Is(err, catalog.ErrUnknownTable) {
			t.Errorf("GetSchema(%q) = %v, want ErrUnknownTable", name, err)
		}
		if _, err := catalog.Count(ctx, db, name); !errors.Is(err, catalog.ErrUnknownTable) {
			t.Errorf("Count(%q) = %v, want ErrUnknownTable", name, err)
		}
		if ok, err := catalog.Exists(ctx, db, name); ok || err != nil {
			t.Errorf("Exists(%q) = %v, %v", name, ok, err)
		}
	}
	if _, err := catalog.Resolve(ctx, db, "orders"); err != nil {
		t.Errorf("Resolve(orders): %v", err)
	}
}

// TestDomainDependencies checks that a table's definition carries every type its
// domains are built on — a domain over an enum, over another domain, over an array
// of an enum — each listed after what it depends on.
func TestDomainDependencies(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	testsupport.Exec(t, db, `CREATE SCHEMA s;
		CREATE TYPE s.mood AS ENUM ('x', 'y');
		CREATE TYPE color AS ENUM ('red');
		CREATE DOMAIN s.dmood AS s.mood NOT NULL;
		CREATE DOMAIN ddmood AS s.dmood;
		CREATE DOMAIN colors AS color[];
		CREATE DOMAIN plain AS int;
		CREATE TABLE t (id int PRIMARY KEY, a ddmood, b colors, c plain[], d s.dmood)`)
	sch, err := catalog.GetSchema(ctx, db, "t")
	if err != nil {
		t.Fatal(err)
	}
	var enums, domains []string
	for _, e := range sch.Enums {
		enums = append(enums, e.Schema+"."+e.Name)
	}
	for _, d := range sch.Domains {
		domains = append(domains, d.Schema+"."+d.Name+"<"+d.BaseType)
	}
	wantEnums := []string{"s.mood", "public.color"}
	wantDomains := []string{"s.dmood<s.mood", "public.ddmood<s.dmood", "public.colors<color[]", "public.plain<integer"}
	if len(enums) != len(wantEnums) || len(domains) != len(wantDomains) {
		t.Fatalf("enums %v, domains %v; want %v, %v", enums, domains, wantEnums, wantDomains)
	}
	for i := range wantEnums {
		if enums[i] != wantEnums[i] {
			t.Errorf("enums %v, want %v", enums, wantEnums)
		}
	}
	for i := range wantDomains {
		if domains[i] != wantDomains[i] {
			t.Errorf("domains %v, want %v", domains, wantDomains)
		}
	}
}
