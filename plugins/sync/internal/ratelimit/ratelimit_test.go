package ratelimit

import (
	"testing"
	"time"
)

// A burst per address, refilled over time, addresses counted apart (IPv6 per /64).
func TestLimiter(t *testing.T) {
	l := New(3, time.Minute)
	now := time.Now()
	for i := range 3 {
		if !l.Allow("203.0.113.1", now) {
			t.Fatalf("request %d refused within the burst", i)
		}
	}
	if l.Allow("203.0.113.1", now) {
		t.Fatal("a 4th request at once was allowed")
	}
	if !l.Allow("203.0.113.2", now) {
		t.Fatal("another address was refused")
	}
	if !l.Allow("203.0.113.1", now.Add(21*time.Second)) {
		t.Fatal("no token back after a third of the refill time")
	}
	for range 3 {
		_ = l.Allow("2001:db8::1", now)
	}
	if l.Allow("[2001:db8::ffff]:443", now) {
		t.Fatal("another address in the same /64 got a fresh bucket")
	}
}
