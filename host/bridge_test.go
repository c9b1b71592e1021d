package host_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// M1: an admin WebSocket refuses a foreign Origin whether or not it is marked
// browser; a same-origin page and a non-browser client (no Origin) get through.
func TestAdminWebSocketRefusesForeignOrigin(t *testing.T) {
	s := startRawSite(t, false)
	own := "http://" + strings.TrimPrefix(s.url, "http://")
	for _, path := range []string{"/admin/fiberkit/rm/admin-ws", "/admin/fiberkit/rm/admin-browser-ws"} {
		h := http.Header{"Authorization": {adminAuthHeader}, "Origin": {"http://evil.example"}}
		_, resp, err := websocket.DefaultDialer.Dial(wsURL(s, path), h)
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Fatalf("%s from a foreign origin: err %v, status %d; want 403", path, err, status)
		}
		c := dialWS(t, wsURL(s, path), http.Header{"Authorization": {adminAuthHeader}, "Origin": {own}})
		_ = c.WriteMessage(websocket.TextMessage, []byte("same origin"))
		if _, data, err := c.ReadMessage(); err != nil || string(data) != "same origin" {
			t.Fatalf("%s same origin: %q %v", path, data, err)
		}
	}
	// A non-browser admin client sends no Origin: fine on a non-browser endpoint, not
	// on a browser one.
	c := dialWS(t, wsURL(s, "/admin/fiberkit/rm/admin-ws"), http.Header{"Authorization": {adminAuthHeader}})
	_ = c.WriteMessage(websocket.TextMessage, []byte("no origin"))
	if _, data, err := c.ReadMessage(); err != nil || string(data) != "no origin" {
		t.Fatalf("admin socket without Origin: %q %v", data, err)
	}
	if _, resp, err := websocket.DefaultDialer.Dial(wsURL(s, "/admin/fiberkit/rm/admin-browser-ws"), http.Header{"Authorization": {adminAuthHeader}}); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("admin browser socket without Origin: err %v, want 403", err)
	}
	// Still behind the admin auth.
	if _, resp, err := websocket.DefaultDialer.Dial(wsURL(s, "/admin/fiberkit/rm/admin-ws"), nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("admin socket without credentials: err %v, want 401", err)
	}
}

// M4: pings and pongs cross the bridge as control frames both ways, and a stray
// accept from the plugin is no frame at all.
func TestWebSocketPingPongBridged(t *testing.T) {
	s := startRawSite(t, false)
	c := dialWS(t, wsURL(s, "/fiberkit/rm/ws"), nil)
	pings, pongs := make(chan string, 8), make(chan string, 8)
	c.SetPingHandler(func(d string) error {
		pings <- d
		return c.WriteControl(websocket.PongMessage, []byte(d), time.Now().Add(time.Second))
	})
	c.SetPongHandler(func(d string) error { pongs <- d; return nil })
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	read := func() string {
		t.Helper()
		typ, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if typ != websocket.TextMessage {
			t.Fatalf("message type %d %q", typ, data)
		}
		return string(data)
	}
	recv := func(ch chan string, what string) string {
		t.Helper()
		select {
		case d := <-ch:
			return d
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s", what)
			return ""
		}
	}

	// Plugin → client.
	_ = c.WriteMessage(websocket.TextMessage, []byte("ping:from-plugin"))
	if got := read(); got != "sent ping" {
		t.Fatalf("after the plugin's ping, data message %q (the ping must be a control frame)", got)
	}
	if d := recv(pings, "ping from the plugin"); d != "from-plugin" {
		t.Fatalf("ping payload %q", d)
	}
	// The client's pong to that ping reaches the plugin.
	if got := read(); got != "got pong from-plugin" {
		t.Fatalf("plugin saw %q, want the client's pong", got)
	}
	_ = c.WriteMessage(websocket.TextMessage, []byte("pong:unsolicited"))
	if got := read(); got != "sent pong" {
		t.Fatalf("after the plugin's pong, data message %q", got)
	}
	if d := recv(pongs, "pong from the plugin"); d != "unsolicited" {
		t.Fatalf("pong payload %q", d)
	}

	// Client → plugin: a ping is answered (by the host) and reported to the plugin.
	if err := c.WriteControl(websocket.PingMessage, []byte("from-client"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "got ping from-client" {
		t.Fatalf("plugin saw %q, want the client's ping", got)
	}
	if d := recv(pongs, "pong from the host"); d != "from-client" {
		t.Fatalf("pong payload %q", d)
	}
	if err := c.WriteControl(websocket.PongMessage, []byte("client-pong"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "got pong client-pong" {
		t.Fatalf("plugin saw %q, want the client's pong", got)
	}

	// A stray accept is dropped, not turned into an empty text message.
	_ = c.WriteMessage(websocket.TextMessage, []byte("accept"))
	if got := read(); got != "after accept" {
		t.Fatalf("after a stray accept, data message %q", got)
	}
}

// M5: Publish does not wait on a client that never reads: the reader keeps getting
// every message promptly, and the stuck client is disconnected as too slow.
func TestPublishIsNotHeldUpByASlowClient(t *testing.T) {
	s := startRawSite(t, false)
	slow := dialWS(t, wsURL(s, "/fiberkit/rm/sub"), nil)
	_ = slow // never read
	fast := dialWS(t, wsURL(s, "/fiberkit/rm/sub"), nil)
	got := make(chan string, 1024)
	go func() {
		for {
			_, data, err := fast.ReadMessage()
			if err != nil {
				close(got)
				return
			}
			got <- string(data[:8])
		}
	}()
	publish := func(seq int) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		start := time.Now()
		out, err := s.kit.Call(ctx, "", "rm", "publish", []byte(fmt.Sprintf(`{"route":"/sub","size":262144,"seq":%d}`, seq)))
		if err != nil {
			t.Fatalf("publish %d: %v", seq, err)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("publish %d took %v: held up by the slow client", seq, took)
		}
		var n int
		_ = json.Unmarshal(out, &n)
		return n
	}
	deliveredTo := 0
	for i := 0; i < 150; i++ {
		deliveredTo = publish(i)
		select {
		case m, ok := <-got:
			if !ok {
				t.Fatalf("the reading client was disconnected at message %d", i)
			}
			if m != fmt.Sprintf("%08d", i) {
				t.Fatalf("reader got %q, want message %d", m, i)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("the reading client did not get message %d promptly", i)
		}
	}
	if deliveredTo != 1 {
		t.Fatalf("the last publish reached %d connections; the slow client should be gone", deliveredTo)
	}
	// The slow client, reading at last, finds its connection closed: with 1008 when
	// the close frame could still be written, cut (1006) when its buffers were full.
	_ = slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := slow.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code != websocket.ClosePolicyViolation && ce.Code != websocket.CloseAbnormalClosure {
				t.Fatalf("slow client closed with %d %q", ce.Code, ce.Text)
			}
			t.Logf("slow client: %v", err)
			break
		}
	}
}
