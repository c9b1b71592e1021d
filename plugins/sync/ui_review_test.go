package main_test

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// sendPage GETs a site's Send page as a program would and returns the page's owner
// and code.
func sendPage(t *testing.T, s *site) (owner, code string) {
	t.Helper()
	resp, err := http.Get(s.url + "/admin/fiberkit/sync/send")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	o := regexp.MustCompile(`data-owner="([^"]+)"`).FindSubmatch(body)
	c := regexp.MustCompile(`<output id="code"[^>]*>([A-Z0-9]{8})</output>`).FindSubmatch(body)
	if resp.StatusCode != 200 || o == nil || c == nil {
		t.Fatalf("send page: HTTP %d %s", resp.StatusCode, body)
	}
	return string(o[1]), string(c[1])
}

// liveSocket opens a site's /live socket as the admin pages' script does (same
// Origin) and says hello; it reads (and drops) every message until closed.
func liveSocket(t *testing.T, s *site, hello map[string]any) (*websocket.Conn, <-chan map[string]any) {
	t.Helper()
	u := "ws" + strings.TrimPrefix(s.url, "http") + "/admin/fiberkit/sync/live"
	c, resp, err := websocket.DefaultDialer.Dial(u, http.Header{"Origin": {s.url}})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", u, err, status)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.WriteJSON(hello); err != nil {
		t.Fatal(err)
	}
	msgs := make(chan map[string]any, 64)
	go func() {
		defer close(msgs)
		for {
			_, data, err := c.ReadMessage()
			if err != nil {
				return
			}
			var m map[string]any
			if json.Unmarshal(data, &m) == nil {
				select {
				case msgs <- m:
				default:
				}
			}
		}
	}()
	return c, msgs
}

func codeValid(t *testing.T, s *site, code string) bool {
	t.Helper()
	var v struct {
		Valid bool `json:"valid"`
	}
	if err := s.call(t, "validate_code", map[string]string{"code": code}, &v); err != nil {
		t.Fatal(err)
	}
	return v.Valid
}

// A Send page served by one replica whose live socket reached another keeps its
// code: the page's presence is the lease in the shared database, not either
// process's memory. Its code still dies soon after the socket closes.
func TestSendPageSocketOnAnotherReplica(t *testing.T) {
	a1 := startSite(t, siteOptions{})
	a2 := startSite(t, siteOptions{db: a1.db})
	owner, code := sendPage(t, a1)
	sock, msgs := liveSocket(t, a2, map[string]any{"op": "hello", "page": "send", "owner": owner})
	select {
	case m := <-msgs:
		if m["type"] != "send" || m["code_alive"] != true {
			t.Fatalf("first view from replica 2: %v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no view from replica 2")
	}
	// Past the window replica 1 gives a page to open its socket, and past a lease.
	time.Sleep(40 * time.Second)
	if !codeValid(t, a1, code) {
		t.Fatal("the code died although its page's socket (on replica 2) is open")
	}
	if !codeValid(t, a2, code) {
		t.Fatal("replica 2 refuses the code")
	}
	// Closing the socket ends the page: the code dies within the grace.
	_ = sock.Close()
	deadline := time.Now().Add(15 * time.Second)
	for codeValid(t, a1, code) {
		if time.Now().After(deadline) {
			t.Fatal("the code outlived its page's socket")
		}
		time.Sleep(250 * time.Millisecond)
	}
}
