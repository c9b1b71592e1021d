package server

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/plugins/sync/remote"
	"github.com/fiberkit/fiberkit/sdk"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// When the database changes, the scheduler follows: the old one stops with its pool
// and one bound to the new database runs that database's remotes.
func TestSchedulerFollowsTheDatabase(t *testing.T) {
	t.Setenv(remote.KeyEnv, "scheduler-test-key")
	db1, db2 := pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	s := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() {
		s.mu.Lock()
		stop, st := s.stopSchedule, s.st
		s.mu.Unlock()
		if stop != nil {
			stop()
		}
		if st != nil {
			st.Pool.Close()
		}
	})
	env := func(db string) *sdk.Env {
		// Port 9 on loopback refuses at once: each run fails fast, and is recorded.
		return &sdk.Env{DatabaseURL: db, PublicURL: "http://127.0.0.1:1",
			Settings: sdk.Settings{"enabled": "true", "allow_internal_urls": "true"}}
	}
	ctx := context.Background()
	ranOn := func(db string) {
		t.Helper()
		if err := s.configure(ctx, env(db)); err != nil {
			t.Fatal(err)
		}
		st, err := s.current()
		if err != nil {
			t.Fatal(err)
		}
		r, err := st.Remotes.Add(ctx, remote.Remote{Name: "r", URL: "http://127.0.0.1:9", Interval: 1}, "fkc_x", "test")
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			got, _, err := st.Remotes.Get(ctx, r.ID)
			if err == nil && got.LastRunAt != nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the remote on the new database never ran (%+v, %v)", got, err)
			}
		}
	}
	ranOn(db1)
	ranOn(db2)
}
