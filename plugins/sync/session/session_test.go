package session

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func open(t *testing.T, url string, l Limits) *Store {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := Open(context.Background(), pool, l)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var auto = Policy{Mode: AutoAccept}

func TestCodesAreUniformOverTheAlphabet(t *testing.T) {
	seen := map[rune]int{}
	codes := map[string]bool{}
	for i := 0; i < 3000; i++ {
		c, err := NewCode()
		if err != nil {
			t.Fatal(err)
		}
		if len(c) != CodeLength || codes[c] {
			t.Fatalf("code %q (len %d, duplicate %v)", c, len(c), codes[c])
		}
		codes[c] = true
		for _, r := range c {
			if strings.ContainsRune("0O1IL", r) || !strings.ContainsRune(codeAlphabet, r) {
				t.Fatalf("code %q has %q", c, r)
			}
			seen[r]++
		}
	}
	// 24000 characters over 31 symbols: each ≈ 774; a biased generator strays far.
	for _, r := range codeAlphabet {
		if n := seen[r]; n < 600 || n > 950 {
			t.Fatalf("symbol %q drawn %d times", r, n)
		}
	}
}

func TestACodeIsRedeemedOnceEvenUnderRace(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t), Limits{MaxFailures: 100})
	ctx := context.Background()
	_, code, err := s.Create(ctx, "send", "admin-page-1")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, used := 0, 0
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Redeem(ctx, code, Attempt{Address: "10.0.0.1"}, auto)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, ErrAlreadyUsed):
				used++
			default:
				t.Errorf("redeem: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || used != 9 {
		t.Fatalf("%d winners, %d already-used", wins, used)
	}
}

func TestLeasesOwnersAndLockout(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t), Limits{Lease: time.Second, MaxFailures: 3, Window: time.Minute, Lockout: time.Minute})
	ctx := context.Background()
	_, code, _ := s.Create(ctx, "send", "owner-a")
	time.Sleep(1200 * time.Millisecond) // the owner never touched: lease lapsed
	if _, err := s.Redeem(ctx, code, Attempt{Address: "a"}, auto); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("lapsed lease: %v", err)
	}
	_, code, _ = s.Create(ctx, "send", "owner-b")
	for i := 0; i < 3; i++ {
		time.Sleep(400 * time.Millisecond)
		if err := s.Touch(ctx, "owner-b"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Redeem(ctx, code, Attempt{Address: "b"}, auto); err != nil {
		t.Fatalf("touched session: %v", err)
	}
	// Lockout is per address.
	_, good, _ := s.Create(ctx, "send", "owner-c")
	for i := 0; i < 3; i++ {
		if _, err := s.Redeem(ctx, "ZZZZZZZZ", Attempt{Address: "evil"}, auto); !errors.Is(err, ErrInvalidCode) {
			t.Fatalf("wrong code: %v", err)
		}
	}
	if _, err := s.Redeem(ctx, good, Attempt{Address: "evil"}, auto); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("locked-out address: %v", err)
	}
	if _, err := s.Redeem(ctx, good, Attempt{Address: "friend"}, auto); err != nil {
		t.Fatalf("another address: %v", err)
	}
	atts, err := s.Attempts(ctx, 100)
	if err != nil || len(atts) < 6 {
		t.Fatalf("attempts recorded: %d (%v)", len(atts), err)
	}
}

func TestApprovalTimesOut(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t), Limits{})
	ctx := context.Background()
	_, code, _ := s.Create(ctx, "send", "o")
	sess, err := s.Redeem(ctx, code, Attempt{Address: "x"}, Policy{Mode: RequireApproval})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.RequestApproval(ctx, sess)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if err := s.WaitApproval(wctx, a.ID); !errors.Is(err, ErrApprovalTimeout) {
		t.Fatalf("undecided approval: %v", err)
	}
	// Deleting the session (its owner left) ends the wait at once.
	go func() { time.Sleep(200 * time.Millisecond); _ = s.ReleaseOwner(ctx, "o") }()
	if err := s.WaitApproval(ctx, a.ID); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("owner left while waiting: %v", err)
	}
}
