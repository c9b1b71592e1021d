package session

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
)

// A client that reconnects on its own (the phoenix JS client: 10, 50, 100, 150,
// 200 ms, then every 5 s) retries the code it already used. Those retries are not
// guesses: they never lock the address out, and within the rejoin grace after its
// connection ended the same receiver is let back into its session.
func TestRedeemedCodeRetriesDoNotLockOut(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t), Limits{MaxFailures: 5})
	ctx := context.Background()
	_, code, _ := s.Create(ctx, "send", "o")
	if _, err := s.Redeem(ctx, code, Attempt{Address: "203.0.113.20"}, auto); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 12; i++ { // still connected: refused, but not counted
		if _, err := s.Redeem(ctx, code, Attempt{Address: "203.0.113.20"}, auto); !errors.Is(err, ErrAlreadyUsed) {
			t.Fatalf("retry %d: %v", i+1, err)
		}
	}
	_, fresh, _ := s.Create(ctx, "send", "o")
	if _, err := s.Redeem(ctx, fresh, Attempt{Address: "203.0.113.20"}, auto); err != nil {
		t.Fatalf("a fresh code after the retries: %v (the retries locked the address out)", err)
	}
}

func TestReceiverRejoinsWithinGrace(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t), Limits{RejoinGrace: time.Second})
	ctx := context.Background()
	_, code, _ := s.Create(ctx, "send", "o")
	sess, err := s.Redeem(ctx, code, Attempt{Address: "2001:db8::1"}, auto)
	if err != nil || sess.Rejoined {
		t.Fatalf("first redeem: %+v, %v", sess, err)
	}
	if err := s.Left(ctx, sess.ID); err != nil {
		t.Fatal(err)
	}
	// Another address may not take the session over.
	if _, err := s.Redeem(ctx, code, Attempt{Address: "198.51.100.9"}, auto); !errors.Is(err, ErrAlreadyUsed) {
		t.Fatalf("another address: %v", err)
	}
	// The same receiver (same /64) comes back in time.
	again, err := s.Redeem(ctx, code, Attempt{Address: "2001:db8::2"}, auto)
	if err != nil || !again.Rejoined || again.ID != sess.ID {
		t.Fatalf("rejoin: %+v, %v", again, err)
	}
	// While it is connected again, the code is used.
	if _, err := s.Redeem(ctx, code, Attempt{Address: "2001:db8::1"}, auto); !errors.Is(err, ErrAlreadyUsed) {
		t.Fatalf("while rejoined: %v", err)
	}
	// Past the grace, it is not let back in.
	if err := s.Left(ctx, sess.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1200 * time.Millisecond)
	if _, err := s.Redeem(ctx, code, Attempt{Address: "2001:db8::1"}, auto); !errors.Is(err, ErrAlreadyUsed) {
		t.Fatalf("after the grace: %v", err)
	}
	// Nor once the sender's session is gone.
	_, code2, _ := s.Create(ctx, "send", "o2")
	sess2, _ := s.Redeem(ctx, code2, Attempt{Address: "203.0.113.1"}, auto)
	_ = s.Left(ctx, sess2.ID)
	if err := s.ReleaseOwner(ctx, "o2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Redeem(ctx, code2, Attempt{Address: "203.0.113.1"}, auto); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("after the session ended: %v", err)
	}
	atts, _ := s.Attempts(ctx, 20)
	rejoined := 0
	for _, a := range atts {
		if a.Outcome == "rejoined" {
			rejoined++
		}
	}
	if rejoined != 1 {
		t.Errorf("%d attempts recorded as rejoined, want 1", rejoined)
	}
}
