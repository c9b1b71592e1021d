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
			st.pool.Close()
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
		st, err := s.state()
		if err != nil {
			t.Fatal(err)
		}
		r, err := st.remotes.Add(ctx, remote.Remote{Name: "r", URL: "http://127.0.0.1:9", Interval: 1}, "fkc_x", "test")
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			got, _, err := st.remotes.Get(ctx, r.ID)
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

// The public token endpoint's limiter: a burst per address, refilled over time,
// addresses counted apart (IPv6 per /64).
func TestLimiter(t *testing.T) {
	l := newLimiter(3, time.Minute)
	now := time.Now()
	for i := range 3 {
		if !l.allow("203.0.113.1", now) {
			t.Fatalf("request %d refused within the burst", i)
		}
	}
	if l.allow("203.0.113.1", now) {
		t.Fatal("a 4th request at once was allowed")
	}
	if !l.allow("203.0.113.2", now) {
		t.Fatal("another address was refused")
	}
	if !l.allow("203.0.113.1", now.Add(21*time.Second)) {
		t.Fatal("no token back after a third of the refill time")
	}
	for range 3 {
		_ = l.allow("2001:db8::1", now)
	}
	if l.allow("[2001:db8::ffff]:443", now) {
		t.Fatal("another address in the same /64 got a fresh bucket")
	}
}
