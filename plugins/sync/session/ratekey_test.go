package session

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
)

func TestRateKey(t *testing.T) {
	for addr, want := range map[string]string{
		"203.0.113.9":          "203.0.113.9",
		"::ffff:203.0.113.9":   "203.0.113.9",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::/64",
		"fe80::1%eth0":         "fe80::/64",
		"not an address":       "not an address",
	} {
		if got := RateKey(addr); got != want {
			t.Errorf("RateKey(%q) = %q, want %q", addr, got, want)
		}
	}
}

// Rotating IPv6 addresses inside one /64 does not reset the count of wrong guesses.
func TestLockoutCoversAnIPv6Slash64(t *testing.T) {
	s := open(t, pgtest.NewDatabase(t), Limits{MaxFailures: 3})
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		_, err := s.Redeem(ctx, "ZZZZZZZZ", Attempt{Address: fmt.Sprintf("2001:db8:1:2::%x", i)}, Policy{Mode: AutoAccept})
		if !errors.Is(err, ErrInvalidCode) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	if _, err := s.Redeem(ctx, "ZZZZZZZZ", Attempt{Address: "2001:db8:1:2::99"}, Policy{Mode: AutoAccept}); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("fourth guess from the same /64: %v", err)
	}
	// Another /64 is another client.
	if _, err := s.Redeem(ctx, "ZZZZZZZZ", Attempt{Address: "2001:db8:1:3::1"}, Policy{Mode: AutoAccept}); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("guess from another /64: %v", err)
	}
}
