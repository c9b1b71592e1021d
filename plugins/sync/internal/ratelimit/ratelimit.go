// Package ratelimit bounds how often one client address may call this site's
// public, unauthenticated endpoints: a token bucket per address.
package ratelimit

import (
	"net/netip"
	"sync"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/session"
)

// Limiter is a token bucket per client address: each address may make burst
// requests at once, and gets them back over refill.
type Limiter struct {
	burst  float64
	refill time.Duration

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxBuckets bounds the addresses remembered; beyond it, full buckets are dropped.
const maxBuckets = 10000

// New returns a Limiter that allows burst requests per address, refilled over refill.
func New(burst int, refill time.Duration) *Limiter {
	return &Limiter{burst: float64(burst), refill: refill, buckets: map[string]*bucket{}}
}

// Allow takes a token from addr's bucket; false when it is empty. IPv6 clients are
// counted per /64, which one client usually holds whole.
func (l *Limiter) Allow(addr string, now time.Time) bool {
	key := clientKey(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	rate := l.burst / l.refill.Seconds()
	fill := func(b *bucket) {
		b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*rate)
		b.at = now
	}
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			for k, o := range l.buckets {
				if fill(o); o.tokens >= l.burst {
					delete(l.buckets, k)
				}
			}
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	fill(b)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// clientKey is the address a request is counted under.
func clientKey(addr string) string {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		addr = ap.Addr().String()
	}
	return session.RateKey(addr)
}
