package host_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

func dialWS(t *testing.T, url string, header http.Header) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(url, header)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", url, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func wsURL(s *site, path string) string { return "ws" + strings.TrimPrefix(s.url, "http") + path }

func TestWebSocketEchoTextAndBinary(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	c := dialWS(t, wsURL(s, "/fiberkit/tm/ws"), nil)
	if err := c.WriteMessage(websocket.TextMessage, []byte("héllo ✓")); err != nil {
		t.Fatal(err)
	}
	bin := []byte{0, 1, 2, 255, 0, 7}
	if err := c.WriteMessage(websocket.BinaryMessage, bin); err != nil {
		t.Fatal(err)
	}
	typ, data, err := c.ReadMessage()
	if err != nil || typ != websocket.TextMessage || string(data) != "héllo ✓" {
		t.Fatalf("text echo: %d %q %v", typ, data, err)
	}
	typ, data, err = c.ReadMessage()
	if err != nil || typ != websocket.BinaryMessage || string(data) != string(bin) {
		t.Fatalf("binary echo: %d %v %v", typ, data, err)
	}
}

func TestWebSocketCloseCodesBothWays(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})

	// Plugin → client.
	c := dialWS(t, wsURL(s, "/fiberkit/tm/ws"), nil)
	_ = c.WriteMessage(websocket.TextMessage, []byte("close:4001:plugin says bye"))
	_, _, err := c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Text != "plugin says bye" {
		t.Fatalf("client saw %v, want close 4001 'plugin says bye'", err)
	}

	// Client → plugin.
	c2 := dialWS(t, wsURL(s, "/fiberkit/tm/ws"), nil)
	_ = c2.WriteMessage(websocket.TextMessage, []byte("ready"))
	if _, _, err := c2.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	_ = c2.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4002, "client says bye"), time.Now().Add(time.Second))
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body := get(t, s.url+"/fiberkit/tm/lastclose")
		if body == "4002 client says bye" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin saw close %q, want '4002 client says bye'", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWebSocketTenThousandMessagesInOrder(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	c := dialWS(t, wsURL(s, "/fiberkit/tm/ws"), nil)
	const n = 10000
	_ = c.WriteMessage(websocket.TextMessage, []byte("seq:"+strconv.Itoa(n)))
	for i := 0; i < n; i++ {
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if string(data) != strconv.Itoa(i) {
			t.Fatalf("message %d arrived as %q", i, data)
		}
	}
	// And client → plugin order: echo n messages.
	go func() {
		for i := 0; i < n; i++ {
			_ = c.WriteMessage(websocket.TextMessage, []byte("m"+strconv.Itoa(i)))
		}
	}()
	for i := 0; i < n; i++ {
		_, data, err := c.ReadMessage()
		if err != nil || string(data) != "m"+strconv.Itoa(i) {
			t.Fatalf("echo %d: %q %v", i, data, err)
		}
	}
}

func TestWebSocketConcurrentWritersInPlugin(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	c := dialWS(t, wsURL(s, "/fiberkit/tm/ws"), nil)
	_ = c.WriteMessage(websocket.TextMessage, []byte("concurrent:500"))
	last := map[string]int{}
	got := 0
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if string(data) == "concurrent-done" {
			break
		}
		var g string
		var i int
		if _, err := fmt.Sscanf(strings.Replace(string(data), "-", " ", 1), "%s %d", &g, &i); err != nil {
			t.Fatalf("garbled message %q", data)
		}
		if prev, ok := last[g]; ok && i != prev+1 {
			t.Fatalf("writer %s: %d after %d", g, i, prev)
		}
		last[g] = i
		got++
	}
	if got != 8*500 {
		t.Fatalf("got %d messages, want %d", got, 8*500)
	}
}

func TestWebSocketOversizedFrameClosesWith1009(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}, maxFrame: 64 << 10})
	c := dialWS(t, wsURL(s, "/fiberkit/tm/ws"), nil)
	_ = c.WriteMessage(websocket.BinaryMessage, make([]byte, 65<<10))
	_, _, err := c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
		t.Fatalf("oversized frame: %v, want close 1009", err)
	}
}

func TestWebSocketClientThatNeverReadsDoesNotGrowHostMemory(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	c := dialWS(t, wsURL(s, "/fiberkit/tm/ws"), nil)
	resetPeak(t, os.Getpid())
	before := peakRSS(t, os.Getpid())
	// Ask for 200 MB of 64 KB messages and never read them.
	_ = c.WriteMessage(websocket.TextMessage, []byte("flood:3200"))
	time.Sleep(3 * time.Second)
	growth := peakRSS(t, os.Getpid()) - before
	t.Logf("host peak RSS grew %d KB while a client ignored a 200 MB flood", growth>>10)
	if growth > 40<<20 {
		t.Fatalf("host memory grew %d MB for a client that never reads", growth>>20)
	}
	// The host still serves others meanwhile.
	if code, body := get(t, s.url+"/fiberkit/tm/ping"); code != 200 || body != "pong" {
		t.Fatalf("host stuck: %d %q", code, body)
	}
}

func TestBrowserWebSocketChecksOrigin(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	host := strings.TrimPrefix(s.url, "http://")
	_, resp, err := websocket.DefaultDialer.Dial(wsURL(s, "/fiberkit/tm/ws-public"), http.Header{"Origin": {"http://evil.example"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: err %v resp %v, want 403", err, resp)
	}
	c := dialWS(t, wsURL(s, "/fiberkit/tm/ws-public"), http.Header{"Origin": {"http://" + host}})
	_ = c.WriteMessage(websocket.TextMessage, []byte("same origin"))
	if _, data, err := c.ReadMessage(); err != nil || string(data) != "same origin" {
		t.Fatalf("same origin echo: %q %v", data, err)
	}
}

func TestModuleRejectsWebSocketBeforeUpgrade(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	_, resp, err := websocket.DefaultDialer.Dial(wsURL(s, "/fiberkit/tm/ws-reject?why=bad+code"), nil)
	if err == nil || resp == nil {
		t.Fatalf("rejected socket: err %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden || string(body) != "no entry: bad code" {
		t.Fatalf("reject gave %d %q, want 403 'no entry: bad code'", resp.StatusCode, body)
	}
}

func TestWebSocketTheModuleDoesNotServeIs404(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	_, resp, err := websocket.DefaultDialer.Dial(wsURL(s, "/fiberkit/tm/ws-not-served"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unserved websocket: err %v resp %v, want 404", err, resp)
	}
	// The module is unharmed.
	if code, body := get(t, s.url+"/fiberkit/tm/ping"); code != 200 || body != "pong" {
		t.Fatalf("after unserved websocket: %d %q", code, body)
	}
}
