package audit_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/audit"
	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/host/settings"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// open returns a pool on a fresh database migrated by the settings store, which owns
// the host's one migration list.
func open(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := settings.Open(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	return pool
}

func TestLogAndRecent(t *testing.T) {
	pool := open(t)
	ctx := context.Background()
	l := audit.New(pool)
	if err := l.Log(ctx, "alice", "sync", "session.create", map[string]any{"tables": []string{"a", "b"}, "n": 2}); err != nil {
		t.Fatal(err)
	}
	if err := l.Log(ctx, "plugin:report", "report", "run", nil); err != nil {
		t.Fatal(err)
	}
	all, err := l.Recent(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Module != "report" || all[1].Module != "sync" {
		t.Fatalf("want newest first, got %+v", all)
	}
	if all[0].Detail == nil || len(all[0].Detail) != 0 || all[0].At.IsZero() {
		t.Fatalf("nil detail should be stored as {}: %+v", all[0])
	}
	syncOnly, err := l.Recent(ctx, "sync", 10)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"tables": []any{"a", "b"}, "n": float64(2)}
	if len(syncOnly) != 1 || syncOnly[0].Actor != "alice" || syncOnly[0].Action != "session.create" || !reflect.DeepEqual(syncOnly[0].Detail, want) {
		t.Fatalf("sync entries %+v", syncOnly)
	}
	if err := l.Log(ctx, "a", "m", "bad", map[string]any{"f": func() {}}); err == nil {
		t.Fatal("unencodable detail accepted")
	}
}

func TestLogInATransactionRollsBackWithIt(t *testing.T) {
	pool := open(t)
	ctx := context.Background()
	boom := errors.New("boom")
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := audit.New(tx).Log(ctx, "alice", "sync", "settings.set", nil); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if got, err := audit.New(pool).Recent(ctx, "", 10); err != nil || len(got) != 0 {
		t.Fatalf("rolled-back entry kept: %v %v", got, err)
	}
}
