package remote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func openStore(t *testing.T) (*Store, *pgxpool.Pool) {
	t.Helper()
	t.Setenv(KeyEnv, "remote-store-test-key")
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := Open(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	return s, pool
}

func hashHex(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// A due remote whose previous run still holds the lock is skipped without being
// recorded as run.
func TestBusyLockRecordsNoRun(t *testing.T) {
	s, pool := openStore(t)
	ctx := context.Background()
	r, err := s.Add(ctx, Remote{Name: "prod", URL: "https://prod.example", Interval: 60}, "fkc_a", "test")
	if err != nil {
		t.Fatal(err)
	}
	held, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	if _, err := held.Exec(ctx, `SELECT pg_advisory_lock(hashtext('fiberkit_sync_remote:' || $1))`, r.ID); err != nil {
		t.Fatal(err)
	}
	var ran atomic.Bool
	claimed, err := s.runDue(ctx, time.Minute, func(context.Context, Remote, string) error { ran.Store(true); return nil })
	if err != nil || !claimed || ran.Load() {
		t.Fatalf("claimed %v err %v ran %v", claimed, err, ran.Load())
	}
	_, _ = held.Exec(ctx, `SELECT pg_advisory_unlock(hashtext('fiberkit_sync_remote:' || $1))`, r.ID)
	got, _, err := s.Get(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.LastRunAt != nil || got.LastStatus != "" {
		t.Fatalf("a skipped run was recorded: last run %v, status %q", got.LastRunAt, got.LastStatus)
	}
	if got.NextRunAt == nil || time.Until(*got.NextRunAt) < 50*time.Second {
		t.Fatalf("next run %v: the claim should move it an interval ahead", got.NextRunAt)
	}
}

// A scheduled run that hangs is stopped after max(MaxRun, interval), its failure
// recorded, and its lock given back.
func TestScheduledRunTimesOut(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	r, err := s.Add(ctx, Remote{Name: "prod", URL: "https://prod.example", Interval: 1}, "fkc_a", "test")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	claimed, err := s.runDue(ctx, 100*time.Millisecond, func(ctx context.Context, _ Remote, _ string) error {
		<-ctx.Done()
		return ctx.Err()
	})
	took := time.Since(start)
	if err != nil || !claimed {
		t.Fatalf("claimed %v err %v", claimed, err)
	}
	if took < 900*time.Millisecond || took > 5*time.Second {
		t.Fatalf("the hung run was stopped after %s, want about the 1 s interval", took)
	}
	got, _, _ := s.Get(ctx, r.ID)
	if got.LastRunAt == nil || !strings.HasPrefix(got.LastStatus, "failed: stopped after 1s") {
		t.Fatalf("last run %v status %q", got.LastRunAt, got.LastStatus)
	}
	if err := s.RunNow(ctx, r.ID, func(context.Context, Remote, string) error { return nil }); err != nil {
		t.Fatalf("the lock was not given back: %v", err)
	}
}

// Schedule returns when its context ends, and claims nothing while inactive.
func TestScheduleStopsAndRespectsActive(t *testing.T) {
	s, _ := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := s.Add(ctx, Remote{Name: "prod", URL: "https://prod.example", Interval: 1}, "fkc_a", "test"); err != nil {
		t.Fatal(err)
	}
	var runs, active atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Schedule(ctx, ScheduleOptions{Tick: 50 * time.Millisecond, Active: func() bool { return active.Load() == 1 }},
			func(context.Context, Remote, string) error { runs.Add(1); return nil })
	}()
	time.Sleep(300 * time.Millisecond)
	if runs.Load() != 0 {
		t.Fatal("ran while inactive")
	}
	active.Store(1)
	for deadline := time.Now().Add(5 * time.Second); runs.Load() == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("never ran once active")
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Schedule did not return after its context ended")
	}
}

func TestUpdateSchedule(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	r, err := s.Add(ctx, Remote{Name: "prod", URL: "https://prod.example"}, "fkc_a", "test")
	if err != nil {
		t.Fatal(err)
	}
	if r.NextRunAt != nil {
		t.Fatal("an unscheduled remote has a next run")
	}
	up, err := s.Update(ctx, r.ID, Schedule{Tables: []string{"users", "posts"}, Strategy: "merge", Interval: 3600})
	if err != nil {
		t.Fatal(err)
	}
	if up.Interval != 3600 || up.Strategy != "merge" || strings.Join(up.Tables, ",") != "users,posts" || up.NextRunAt == nil || time.Until(*up.NextRunAt) > time.Second {
		t.Fatalf("after update: %+v (next %v)", up, up.NextRunAt)
	}
	up, err = s.Update(ctx, r.ID, Schedule{})
	if err != nil {
		t.Fatal(err)
	}
	if up.Interval != 0 || up.NextRunAt != nil || up.Strategy != "skip" || len(up.Tables) != 0 {
		t.Fatalf("schedule removed: %+v", up)
	}
	if _, err := s.Update(ctx, r.ID, Schedule{Strategy: "clobber"}); err == nil {
		t.Fatal("an unknown strategy was accepted")
	}
	if _, err := s.Update(ctx, "00000000-0000-0000-0000-000000000000", Schedule{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown remote: %v", err)
	}
}

// A token notice finds its remotes by the stored hash; remotes stored before the
// hash existed get it when the store opens.
func TestReplaceTokenByHash(t *testing.T) {
	s, pool := openStore(t)
	ctx := context.Background()
	r, err := s.Add(ctx, Remote{Name: "prod", URL: "https://prod.example"}, "fkc_old", "test")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.ReplaceToken(ctx, hashHex("fkc_other"), "fkc_new"); ok || err != nil {
		t.Fatalf("unknown hash: %v %v", ok, err)
	}
	if ok, err := s.ReplaceToken(ctx, hashHex("fkc_old"), "fkc_new"); !ok || err != nil {
		t.Fatalf("replace: %v %v", ok, err)
	}
	if _, tok, _ := s.Get(ctx, r.ID); tok != "fkc_new" {
		t.Fatalf("token now %q", tok)
	}
	if ok, _ := s.ReplaceToken(ctx, hashHex("fkc_old"), "fkc_newer"); ok {
		t.Fatal("the old token still matches")
	}
	// A remote from before token_hash: found after a reopen.
	if _, err := pool.Exec(ctx, `UPDATE fiberkit_sync_remotes SET token_hash = NULL`); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s2.ReplaceToken(ctx, hashHex("fkc_new"), "fkc_third"); !ok || err != nil {
		t.Fatalf("after backfill: %v %v", ok, err)
	}
}
