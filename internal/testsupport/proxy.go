package testsupport

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// SlowLink starts a TCP proxy to target (host:port) whose downstream direction
// (target → client) carries at most bytesPerSec, and returns its address. Each
// connection is relayed until either side closes; everything stops with the test.
func SlowLink(t testing.TB, target string, bytesPerSec int) string {
	t.Helper()
	target = strings.TrimPrefix(strings.TrimPrefix(target, "http://"), "ws://")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			wg.Add(2)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(out, in)
				out.Close()
			}()
			go func() {
				defer wg.Done()
				throttle(in, out, bytesPerSec)
				in.Close()
			}()
		}
	}()
	return ln.Addr().String()
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
