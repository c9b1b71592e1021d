package server

import (
	"strings"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
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

// The reasons a sender closes with (4004, 4005) get sentences of their own.
func TestExplainCloseReasons(t *testing.T) {
	for reason, want := range map[string]string{
		"session ended by the sending site":                          "session_ended",
		"connection revoked":                                         "connection_revoked",
		"the connection is revoked":                                  "connection_revoked",
		"the connection was deleted":                                 "connection_revoked",
		"the connection is suspended":                                "connection_suspended",
		"the connection's token was regenerated":                     "token_regenerated",
		"expired at 2024-01-01T00:00:00Z":                            "connection_expired",
		"all 3 downloads used":                                       "connection_limit",
		"more than 5 requests this minute":                           "connection_limit",
		"requests are accepted only in the UTC hours [1 2] (now 05)": "connection_limit",
	} {
		code, msg := explain(&client.RemoteError{Code: reason}, false)
		if code != want || strings.Contains(msg, "refused: ") {
			t.Errorf("%q: %s %q, want %s", reason, code, msg, want)
		}
	}
	if code, _ := explain(&client.RemoteError{Code: "something_new"}, false); code != "something_new" {
		t.Errorf("unknown reason: %s", code)
	}
}
