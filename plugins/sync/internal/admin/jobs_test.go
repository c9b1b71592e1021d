package admin

import (
	"testing"
	"time"
)

// A job nobody watches is closed and forgotten after the idle period; one being
// watched is kept.
func TestIdleJobsExpire(t *testing.T) {
	js := newJobs()
	js.idle = 50 * time.Millisecond
	watched := js.attach("")
	left := js.attach("")
	js.detach(left)
	time.Sleep(300 * time.Millisecond)
	js.mu.Lock()
	_, leftKept := js.m[left.ID]
	_, watchedKept := js.m[watched.ID]
	js.mu.Unlock()
	if leftKept || !watchedKept {
		t.Fatalf("unwatched job kept %v, watched job kept %v", leftKept, watchedKept)
	}
	// A page coming back in time keeps its job.
	back := js.attach("")
	js.detach(back)
	if again := js.attach(back.ID); again != back {
		t.Fatal("a returning page got a new job")
	}
	time.Sleep(300 * time.Millisecond)
	js.mu.Lock()
	_, kept := js.m[back.ID]
	js.mu.Unlock()
	if !kept {
		t.Fatal("a watched job expired")
	}
}
