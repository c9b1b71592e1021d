package sdk

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// A plugin notices that its parent changed (the host died and init adopted it) and
// says so once; while the parent stays the same — even 1, a host that is a
// container's init — nothing happens.
func TestWatchHostNoticesParentChange(t *testing.T) {
	var ppid atomic.Int64
	ppid.Store(1)
	gone := make(chan [2]int, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchHost(ctx, time.Millisecond, func() int { return int(ppid.Load()) }, func(was, now int) { gone <- [2]int{was, now} })
	}()
	select {
	case g := <-gone:
		t.Fatalf("gone called while the parent stayed: %v", g)
	case <-time.After(50 * time.Millisecond):
	}
	ppid.Store(4242)
	select {
	case g := <-gone:
		if g != [2]int{1, 4242} {
			t.Fatalf("gone(%d, %d), want (1, 4242)", g[0], g[1])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("parent change not noticed")
	}
	<-done
}

// watchHost stops with its context.
func TestWatchHostStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchHost(ctx, time.Millisecond, func() int { return 7 }, func(int, int) { t.Error("gone called") })
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("watchHost did not return after its context ended")
	}
}
