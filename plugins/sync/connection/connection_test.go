package connection_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Table limits are stored as the tables they name resolve to, so a limit typed as
// public.orders protects orders as requests name it; a name that resolves to no
// table is refused instead of protecting nothing.
func TestTableLimitsAreResolvedWhenSaved(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	if _, err := pool.Exec(ctx, `CREATE TABLE orders (id int PRIMARY KEY); CREATE TABLE users (id int PRIMARY KEY);
		CREATE SCHEMA sales; CREATE TABLE sales.leads (id int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	s, err := connection.Open(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := s.Create(ctx, "staging", "", connection.Limits{ExcludedTables: []string{"public.orders", " orders ", "sales.leads"},
		AllowedTables: []string{"public.users", "orders"}}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Limits.ExcludedTables, []string{"orders", "sales.leads"}) || !slices.Equal(c.Limits.AllowedTables, []string{"users", "orders"}) {
		t.Fatalf("stored limits %+v", c.Limits)
	}
	if connection.TableAllowed(c.Limits, "orders") || !connection.TableAllowed(c.Limits, "users") {
		t.Errorf("orders allowed or users refused with %+v", c.Limits)
	}
	for _, bad := range []connection.Limits{{ExcludedTables: []string{"ordres"}}, {AllowedTables: []string{"public.nope"}}, {ExcludedTables: []string{"fiberkit_settings"}}} {
		if err := s.SetLimits(ctx, c.ID, bad); !errors.Is(err, connection.ErrUnknownTable) {
			t.Errorf("limits %+v: %v, want ErrUnknownTable", bad, err)
		}
	}
	got, err := s.Get(ctx, c.ID)
	if err != nil || !slices.Equal(got.Limits.ExcludedTables, []string{"orders", "sales.leads"}) {
		t.Fatalf("a refused SetLimits changed the limits: %+v, %v", got.Limits, err)
	}
	if err := s.SetLimits(ctx, c.ID, connection.Limits{ExcludedTables: []string{"public.users"}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, c.ID); !slices.Equal(got.Limits.ExcludedTables, []string{"users"}) {
		t.Errorf("after SetLimits: %+v", got.Limits)
	}
}
