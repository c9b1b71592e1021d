package remote

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A remote set to follow is followed by one RunFollows at a time (two stores over
// the database stand for two replicas), is not claimed by the interval schedule,
// is cancelled when it stops following, and a follow that returned by itself is
// not started again at once (RefusedWait).
func TestRunFollows(t *testing.T) {
	s, pool := openStore(t)
	ctx := context.Background()
	if _, err := s.Add(ctx, Remote{Name: "bad", URL: "https://x.example", Strategy: "append", Follow: true}, "fkc_x", "test"); err == nil ||
		!strings.Contains(err.Error(), "append cannot follow") {
		t.Fatalf("append follow added: %v", err)
	}
	r, err := s.Add(ctx, Remote{Name: "prod", URL: "https://prod.example", Interval: 1, Follow: true}, "fkc_a", "test")
	if err != nil {
		t.Fatal(err)
	}
	refused, err := s.Add(ctx, Remote{Name: "refuses", URL: "https://refuses.example", Follow: true}, "fkc_b", "test")
	if err != nil {
		t.Fatal(err)
	}
	// Interval schedule: a following remote is never claimed.
	time.Sleep(1100 * time.Millisecond)
	if claimed, err := s.runDue(ctx, time.Minute, func(context.Context, Remote, string) error { return nil }); err != nil || claimed {
		t.Fatalf("interval schedule claimed a following remote: %v %v", claimed, err)
	}

	var mu sync.Mutex
	running := map[string]int{} // remote id → follows running now
	most := map[string]int{}
	starts := map[string]int{}
	stopped := make(chan string, 10)
	run := func(ctx context.Context, r Remote, token string) error {
		mu.Lock()
		running[r.ID]++
		starts[r.ID]++
		most[r.ID] = max(most[r.ID], running[r.ID])
		mu.Unlock()
		defer func() {
			mu.Lock()
			running[r.ID]--
			mu.Unlock()
		}()
		if r.Name == "refuses" {
			return errors.New("refused by the sender")
		}
		<-ctx.Done()
		stopped <- r.ID
		return nil
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var active atomic.Bool
	active.Store(true)
	var wg sync.WaitGroup
	for range 2 { // two replicas
		other, err := Open(ctx, pool)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			other.RunFollows(rctx, FollowOptions{Tick: 50 * time.Millisecond, Active: active.Load}, run)
		}()
	}
	waitFor(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return running[r.ID] == 1 && starts[refused.ID] == 1
	})
	time.Sleep(300 * time.Millisecond) // several ticks of both replicas
	mu.Lock()
	mostR, startsR, startsRefused := most[r.ID], starts[r.ID], starts[refused.ID]
	mu.Unlock()
	if mostR != 1 || startsR != 1 || startsRefused != 1 {
		t.Fatalf("followed at once %d, started %d; refused started %d", mostR, startsR, startsRefused)
	}
	got, _, err := s.Get(ctx, refused.ID)
	if err != nil || !strings.Contains(got.LastStatus, "refused by the sender") {
		t.Fatalf("refused remote's status %q, %v", got.LastStatus, err)
	}
	if got, _, _ := s.Get(ctx, r.ID); got.LastStatus != "following" {
		t.Fatalf("followed remote's status %q", got.LastStatus)
	}

	// The remote stops following: its follow is cancelled and not started again.
	if _, err := s.Update(ctx, r.ID, Schedule{Strategy: "skip"}); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-stopped:
		if id != r.ID {
			t.Fatalf("stopped %s", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the follow of a remote that stopped following went on")
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	startsR = starts[r.ID]
	mu.Unlock()
	if startsR != 1 {
		t.Fatalf("started again: %d", startsR)
	}

	// Following again, then the module disabled: cancelled.
	if _, err := s.Update(ctx, r.ID, Schedule{Strategy: "skip", Follow: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return running[r.ID] == 1 })
	active.Store(false)
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("a follow went on while the module was disabled")
	}
	cancel()
	wg.Wait()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
