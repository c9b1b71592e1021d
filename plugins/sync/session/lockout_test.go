package session

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
)

// Many wrong passwords at once from one address: the lockout is decided before any
// is checked, so at most MaxFailures are ever evaluated; the others are refused as
// rate_limited, and every one of them is recorded with its address.
func TestConcurrentWrongPasswordsAreEvaluatedAtMostLimitTimes(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t), Limits{MaxFailures: 5, MaxConcurrentChecks: 2})
	ctx := context.Background()
	_, code, err := s.Create(ctx, "send", "owner")
	if err != nil {
		t.Fatal(err)
	}
	var evaluated, running, maxRunning atomic.Int32
	policy := Policy{Mode: RequirePassword, PasswordMatches: func(c string) bool {
		evaluated.Add(1)
		n := running.Add(1)
		for {
			m := maxRunning.Load()
			if n <= m || maxRunning.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(50 * time.Millisecond) // as slow as argon2id
		running.Add(-1)
		return c == "s3cret"
	}}
	var wrong, limited atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 60; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Redeem(ctx, code, Attempt{Address: "203.0.113.9", Password: "guess", ReceiverInfo: map[string]any{"tool": "probe"}}, policy)
			switch {
			case errors.Is(err, ErrWrongPassword):
				wrong.Add(1)
			case errors.Is(err, ErrRateLimited):
				limited.Add(1)
			default:
				t.Errorf("redeem: %v", err)
			}
		}()
	}
	wg.Wait()
	if evaluated.Load() > 5 || wrong.Load() > 5 || wrong.Load()+limited.Load() != 60 {
		t.Fatalf("evaluated %d passwords, %d wrong_password, %d rate_limited (limit 5)", evaluated.Load(), wrong.Load(), limited.Load())
	}
	if maxRunning.Load() > 2 {
		t.Fatalf("%d password checks ran at once (max 2)", maxRunning.Load())
	}
	// The right password is locked out too now.
	if _, err := s.Redeem(ctx, code, Attempt{Address: "203.0.113.9", Password: "s3cret"}, policy); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("right password from a locked-out address: %v", err)
	}
	atts, err := s.Attempts(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]int{}
	for _, a := range atts {
		outcomes[a.Outcome] += a.Repeats // the refusals a lockout's row stands for
		if a.Address != "203.0.113.9" {
			t.Fatalf("attempt without its address: %+v", a)
		}
		if a.ReceiverInfo["tool"] != "probe" && a.Outcome != ErrRateLimited.Error() {
			t.Fatalf("attempt without its receiver info: %+v", a)
		}
		outcomes[a.Outcome]++
	}
	// One row per evaluated attempt, one for the whole lockout (counting every refusal).
	if len(atts) != int(wrong.Load())+1 || outcomes[ErrWrongPassword.Error()] != int(wrong.Load()) || outcomes[ErrRateLimited.Error()] != int(limited.Load())+1 {
		t.Fatalf("recorded %d attempts: %v", len(atts), outcomes)
	}
	// Another address is not affected.
	if _, err := s.Redeem(ctx, code, Attempt{Address: "198.51.100.1", Password: "s3cret"}, policy); err != nil {
		t.Fatalf("another address: %v", err)
	}
}

// The lockout follows docs/protocol.md: MaxFailures failures within Window lock the
// address out for Lockout after the last of them. Failures further apart than Window
// do not add up, and refusals during a lockout do not prolong it.
func TestLockoutWindow(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t), Limits{MaxFailures: 3, Window: time.Second, Lockout: 1500 * time.Millisecond})
	ctx := context.Background()
	try := func() error {
		_, err := s.Redeem(ctx, "ZZZZZZZZ", Attempt{Address: "a"}, auto)
		return err
	}
	for i := 0; i < 2; i++ {
		if err := try(); !errors.Is(err, ErrInvalidCode) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	time.Sleep(1200 * time.Millisecond) // past the window: those two no longer add up
	for i := 0; i < 2; i++ {
		if err := try(); !errors.Is(err, ErrInvalidCode) {
			t.Fatalf("failure %d after the window: %v", i+1, err)
		}
	}
	if err := try(); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("third failure within the window: %v", err)
	}
	if err := try(); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("after three failures within the window: %v", err)
	}
	time.Sleep(800 * time.Millisecond)
	if err := try(); !errors.Is(err, ErrRateLimited) { // still within the lockout; does not prolong it
		t.Fatalf("within the lockout: %v", err)
	}
	time.Sleep(900 * time.Millisecond) // 1.7 s after the last failure
	_, code, _ := s.Create(ctx, "send", "o")
	if _, err := s.Redeem(ctx, code, Attempt{Address: "a"}, auto); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
}

// A receiver's info given at the join is recorded on the attempt that let it in.
func TestAcceptedAttemptGetsTheReceiverInfo(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t), Limits{})
	ctx := context.Background()
	_, code, _ := s.Create(ctx, "send", "o")
	sess, err := s.Redeem(ctx, " "+code[:4]+toLower(code[4:])+"\n", Attempt{Address: "x"}, auto)
	if err != nil {
		t.Fatalf("a code typed with spaces and lower case: %v", err)
	}
	if err := s.SetReceiverInfo(ctx, sess.ID, map[string]any{"site": "https://dev.example.com"}); err != nil {
		t.Fatal(err)
	}
	atts, err := s.Attempts(ctx, 10)
	if err != nil || len(atts) != 1 || atts[0].Outcome != "accepted" || atts[0].ReceiverInfo["site"] != "https://dev.example.com" {
		t.Fatalf("attempts %+v (%v)", atts, err)
	}
}

func toLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// A locked-out address flooding attempts with large receiver info does not fill the
// database: the lockout's refusals share one row (counted exactly), the stored
// receiver info is bounded, and other addresses' attempts stay visible.
func TestLockedOutFloodIsCountedNotStored(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t), Limits{MaxFailures: 3})
	ctx := context.Background()
	big := map[string]any{"tool": "flood", "padding": strings.Repeat("x", 2048)}
	for i := 0; i < 3; i++ {
		if _, err := s.Redeem(ctx, "ZZZZZZZZ", Attempt{Address: "203.0.113.50", ReceiverInfo: big}, auto); !errors.Is(err, ErrInvalidCode) {
			t.Fatalf("guess %d: %v", i+1, err)
		}
	}
	var refused atomic.Int32
	var wg sync.WaitGroup
	deadline := time.Now().Add(2 * time.Second)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				_, err := s.Redeem(ctx, "ZZZZZZZZ", Attempt{Address: "203.0.113.50", ReceiverInfo: big}, auto)
				if !errors.Is(err, ErrRateLimited) {
					t.Errorf("flood: %v", err)
					return
				}
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	if refused.Load() < 100 {
		t.Fatalf("only %d refusals in 2 s: the flood did not run", refused.Load())
	}
	var rows, maxInfo int
	if err := s.pool.QueryRow(ctx, `SELECT count(*), max(length(receiver_info::text)) FROM fiberkit_sync_attempts`).Scan(&rows, &maxInfo); err != nil {
		t.Fatal(err)
	}
	if rows != 4 {
		t.Errorf("%d attempt rows after %d refusals, want 4 (3 guesses and one for the lockout)", rows, refused.Load())
	}
	if maxInfo > maxInfoBytes+64 {
		t.Errorf("stored receiver info of %d bytes", maxInfo)
	}
	atts, err := s.Attempts(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if atts[0].Outcome != ErrRateLimited.Error() || 1+atts[0].Repeats != int(refused.Load()) || atts[0].ReceiverInfo["tool"] != "flood" || atts[0].ReceiverInfo["truncated"] != true {
		t.Errorf("lockout row %+v, want %d refusals counted and the info cut", atts[0], refused.Load())
	}
	// Another address is still let in, and its attempt shows on top.
	_, code, _ := s.Create(ctx, "send", "o")
	if _, err := s.Redeem(ctx, code, Attempt{Address: "198.51.100.7"}, auto); err != nil {
		t.Fatal(err)
	}
	if atts, _ := s.Attempts(ctx, 1); len(atts) != 1 || atts[0].Address != "198.51.100.7" {
		t.Errorf("newest attempt %+v", atts)
	}
}
