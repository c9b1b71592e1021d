package testsupport

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// ProxyOptions configure NewProxy.
type ProxyOptions struct {
	// Capture keeps every byte crossing the proxy, both ways (Captured).
	Capture bool
	// DownBytesPerSec, when set, caps the downstream direction (target → client).
	DownBytesPerSec int
}

// Proxy is a TCP proxy to a test's server: it relays each connection until either
// side closes, and can keep what crosses it or cut what is open, as a network
// failure would. Everything stops with the test.
type Proxy struct {
	ln      net.Listener
	target  string
	o       ProxyOptions
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
	capture bytes.Buffer
}

// NewProxy starts a proxy to target (host:port, or an http:// or ws:// URL).
func NewProxy(t testing.TB, target string, o ProxyOptions) *Proxy {
	t.Helper()
	target = strings.TrimPrefix(strings.TrimPrefix(target, "http://"), "ws://")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, o: o}
	t.Cleanup(func() {
		ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	p.wg.Add(1)
	go p.accept()
	return p
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		var up, down io.Writer = out, in
		if p.o.Capture {
			// Captured before forwarded: what the far side may have seen is
			// always in Captured.
			up, down = io.MultiWriter(p, out), io.MultiWriter(p, in)
		}
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(up, in)
			out.Close()
		}()
		go func() {
			defer p.wg.Done()
			if p.o.DownBytesPerSec > 0 {
				throttle(down, out, p.o.DownBytesPerSec)
			} else {
				_, _ = io.Copy(down, out)
			}
			in.Close()
		}()
	}
}

// Write keeps b (the capture's writer).
func (p *Proxy) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.capture.Write(b)
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is the proxy's http:// URL.
func (p *Proxy) URL() string { return "http://" + p.Addr() }

// Captured returns every byte that crossed so far (with Capture).
func (p *Proxy) Captured() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.capture.Bytes())
}

// Cut closes every connection open through the proxy (both ends) and returns how
// many there were; new ones are still relayed.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns) / 2
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
	return n
}

// SlowLink starts a proxy to target whose downstream direction (target → client)
// carries at most bytesPerSec, and returns its address.
func SlowLink(t testing.TB, target string, bytesPerSec int) string {
	t.Helper()
	return NewProxy(t, target, ProxyOptions{DownBytesPerSec: bytesPerSec}).Addr()
}

// throttle copies src to dst at most bytesPerSec, in 10 ms slices.
func throttle(dst io.Writer, src io.Reader, bytesPerSec int) {
	chunk := max(1, bytesPerSec/100)
	buf := make([]byte, chunk)
	for {
		start := time.Now()
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
		if d := 10*time.Millisecond - time.Since(start); d > 0 {
			time.Sleep(d)
		}
	}
}
