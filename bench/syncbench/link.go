package main

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// bucket is a token bucket: take(n) returns once n bytes fit the rate. Takers that
// find it in debt wait for the debt, so concurrent connections share the rate.
type bucket struct {
	mu     sync.Mutex
	rate   float64 // bytes per second
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(bytesPerSec float64) *bucket {
	return &bucket{rate: bytesPerSec, burst: 32 << 10, tokens: 32 << 10, last: time.Now()}
}

func (b *bucket) take(n int) {
	b.mu.Lock()
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	b.tokens -= float64(n)
	var wait time.Duration
	if b.tokens < 0 {
		wait = time.Duration(-b.tokens / b.rate * float64(time.Second))
	}
	b.mu.Unlock()
	if wait > 0 {
		time.Sleep(wait)
	}
}

// link is a TCP proxy to target whose two directions are each limited to a rate: a
// slow network between the two sites.
type link struct {
	ln         net.Listener
	target     string
	up, down   *bucket // client → target, target → client
	sent, recv atomic.Int64
	wg         sync.WaitGroup
}

func startLink(target string, mbit float64) (*link, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	bps := mbit * 1e6 / 8
	l := &link{ln: ln, target: target, up: newBucket(bps), down: newBucket(bps)}
	go l.serve()
	return l, nil
}

func (l *link) addr() string { return l.ln.Addr().String() }

func (l *link) serve() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer c.Close()
			t, err := net.Dial("tcp", l.target)
			if err != nil {
				return
			}
			defer t.Close()
			done := make(chan struct{}, 2)
			go func() { relay(t, c, l.up, &l.recv); done <- struct{}{} }()
			go func() { relay(c, t, l.down, &l.sent); done <- struct{}{} }()
			<-done
			<-done
		}()
	}
}

// relay copies src to dst at the bucket's rate, counting bytes, and half-closes dst
// at the end so the other side sees EOF.
func relay(dst, src net.Conn, b *bucket, n *atomic.Int64) {
	buf := make([]byte, 16<<10)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			b.take(k)
			if _, werr := dst.Write(buf[:k]); werr != nil {
				break
			}
			n.Add(int64(k))
		}
		if err != nil {
			if err != io.EOF {
				_ = dst.Close()
				_ = src.Close()
				return
			}
			break
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	} else {
		_ = dst.Close()
	}
}

func (l *link) close() {
	_ = l.ln.Close()
}
