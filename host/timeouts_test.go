package host_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/internal/testsupport"
)

// FiberConfig sets a read timeout (request heads) and an idle timeout (keep-alive),
// and no write timeout, which would cut streamed responses.
func TestFiberConfigTimeouts(t *testing.T) {
	cfg := host.FiberConfig()
	if cfg.ReadTimeout != host.DefaultReadTimeout || cfg.ReadTimeout <= 0 || cfg.ReadTimeout > time.Minute {
		t.Errorf("ReadTimeout %v, want DefaultReadTimeout (%v), at most a minute", cfg.ReadTimeout, host.DefaultReadTimeout)
	}
	if cfg.IdleTimeout != host.DefaultIdleTimeout || cfg.IdleTimeout <= 0 || cfg.IdleTimeout > 5*time.Minute {
		t.Errorf("IdleTimeout %v, want DefaultIdleTimeout (%v), at most 5 minutes", cfg.IdleTimeout, host.DefaultIdleTimeout)
	}
	if cfg.WriteTimeout != 0 {
		t.Errorf("WriteTimeout %v would cut long responses", cfg.WriteTimeout)
	}
}

// shortTimeouts serves the kit of s on a second app made from FiberConfig with the
// read timeout shortened to 1 s and the idle timeout to 2 s, and returns its URL.
func shortTimeouts(t *testing.T, s *site) string {
	t.Helper()
	cfg := host.FiberConfig()
	cfg.ReadTimeout, cfg.IdleTimeout = time.Second, 2*time.Second
	return serveOn(t, s, cfg)
}

// serveOn serves the kit of s on a second app made with cfg and returns its URL.
func serveOn(t *testing.T, s *site, cfg fiber.Config) string {
	t.Helper()
	app := fiber.New(cfg)
	s.kit.Mount(app)
	return testsupport.Serve(t, app)
}

// closedWithin reports how long the server took to close conn, failing the test if
// it kept it open longer than limit.
func closedWithin(t *testing.T, conn net.Conn, limit time.Duration, what string) {
	t.Helper()
	start := time.Now()
	_ = conn.SetReadDeadline(start.Add(limit + 5*time.Second))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if took := time.Since(start); (errors.As(err, &ne) && ne.Timeout()) || took > limit {
		t.Fatalf("%s: connection still open after %v (err %v), want closed within %v", what, took.Round(time.Millisecond), err, limit)
	}
}

// Slowloris: connections that send a partial request head, or nothing, or stay idle
// after a request, are closed by the server within its timeouts.
func TestSlowClientsAreDisconnected(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	base := strings.TrimPrefix(shortTimeouts(t, s), "http://")
	dial := func(send string) net.Conn {
		t.Helper()
		conn, err := net.Dial("tcp", base)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := io.WriteString(conn, send); err != nil {
			t.Fatal(err)
		}
		return conn
	}
	partial := dial("GET /fiberkit/tm/ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	silent := dial("")
	trickle := dial("GET /fiberkit/tm/ping HTTP/1.1\r\n")
	go func() {
		// A header line every 300 ms: each byte arrives in time, the head never ends.
		for i := 0; i < 20; i++ {
			time.Sleep(300 * time.Millisecond)
			if _, err := fmt.Fprintf(trickle, "X-H%d: v\r\n", i); err != nil {
				return
			}
		}
	}()
	closedWithin(t, partial, 2500*time.Millisecond, "partial request head")
	closedWithin(t, silent, 2500*time.Millisecond, "nothing sent")
	closedWithin(t, trickle, 2500*time.Millisecond, "request head trickling in")

	// Keep-alive: a complete request is answered; the idle connection is then closed.
	idle := dial("GET /fiberkit/tm/ping HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "pong" {
		t.Fatalf("ping: %d %q", resp.StatusCode, b)
	}
	closedWithin(t, idle, 3500*time.Millisecond, "idle keep-alive connection")
}

// The timeouts do not cut what legitimately lasts: server-sent events quiet for
// longer than the read and idle timeouts, a WebSocket idle that long, and an upload
// whose bytes keep coming for longer. An upload that stalls is cut.
func TestTimeoutsSpareStreamsWebSocketsAndSlowUploads(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	base := shortTimeouts(t, s)
	quiet := 2500 * time.Millisecond // longer than both timeouts

	t.Run("server-sent events", func(t *testing.T) {
		resp, err := http.Get(base + "/fiberkit/tm/sse?gate=slow")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		r := bufio.NewReader(resp.Body)
		for i := 1; i <= 3; i++ {
			line, err := r.ReadString('\n')
			if err != nil || line != fmt.Sprintf("data: event %d\n", i) {
				t.Fatalf("event %d: %q %v", i, line, err)
			}
			_, _ = r.ReadString('\n')
			if i < 3 {
				time.Sleep(quiet)
				gr, err := http.Post(fmt.Sprintf("%s/fiberkit/tm/sse-gate?gate=slow&n=%d", s.url, i), "text/plain", nil)
				if err != nil {
					t.Fatal(err)
				}
				gr.Body.Close()
			}
		}
		if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
			t.Fatalf("end of stream: %q %v", rest, err)
		}
	})

	t.Run("websocket", func(t *testing.T) {
		c := dialWS(t, "ws"+strings.TrimPrefix(base, "http")+"/fiberkit/tm/ws", nil)
		time.Sleep(quiet)
		if err := c.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, data, err := c.ReadMessage(); err != nil || string(data) != "still here" {
			t.Fatalf("echo after %v idle: %q %v", quiet, data, err)
		}
	})

	t.Run("slow upload", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			for i := 0; i < 10; i++ { // 3 s in all, three times the read timeout
				_, _ = pw.Write(bytes.Repeat([]byte("u"), 1000))
				time.Sleep(300 * time.Millisecond)
			}
			pw.Close()
		}()
		resp, err := http.Post(base+"/fiberkit/tm/upload", "application/octet-stream", pr)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"bytes":10000`) {
			t.Fatalf("slow upload: %d %s", resp.StatusCode, b)
		}
	})

	t.Run("stalled upload", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "POST /fiberkit/tm/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"+strings.Repeat("u", 70000))
		closedWithin(t, conn, 4*time.Second, "stalled upload")
	})
}
