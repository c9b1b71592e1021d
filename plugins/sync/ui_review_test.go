package main_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
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

// liveConn is a /live socket opened as the admin pages' script opens it.
type liveConn struct {
	c    *websocket.Conn
	mu   sync.Mutex
	msgs []map[string]any
	next int // the first message waitFor has not looked at
}

// liveSocket opens a site's /live socket as the admin pages' script does (same
// Origin) and says hello; it keeps every message it reads.
func liveSocket(t *testing.T, s *site, hello map[string]any) *liveConn {
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
	lc := &liveConn{c: c}
	lc.send(t, hello)
	go func() {
		for {
			_, data, err := c.ReadMessage()
			if err != nil {
				return
			}
			var m map[string]any
			if json.Unmarshal(data, &m) == nil {
				lc.mu.Lock()
				lc.msgs = append(lc.msgs, m)
				lc.mu.Unlock()
			}
		}
	}()
	return lc
}

func (lc *liveConn) send(t *testing.T, m map[string]any) {
	t.Helper()
	if err := lc.c.WriteJSON(m); err != nil {
		t.Fatal(err)
	}
}

// waitFor returns the first message not looked at yet for which ok holds.
func (lc *liveConn) waitFor(t *testing.T, what string, timeout time.Duration, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		lc.mu.Lock()
		for lc.next < len(lc.msgs) {
			m := lc.msgs[lc.next]
			lc.next++
			if ok(m) {
				lc.mu.Unlock()
				return m
			}
		}
		var last map[string]any
		if len(lc.msgs) > 0 {
			last = lc.msgs[len(lc.msgs)-1]
		}
		lc.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s; last message %v", what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// receiveState waits for a Receive job's view to reach state.
func (lc *liveConn) receiveState(t *testing.T, state string) map[string]any {
	t.Helper()
	return lc.waitFor(t, "state "+state, 30*time.Second, func(m map[string]any) bool { return m["state"] == state })
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
	sock := liveSocket(t, a2, map[string]any{"op": "hello", "page": "send", "owner": owner})
	sock.waitFor(t, "the page's view from replica 2", 10*time.Second, func(m map[string]any) bool {
		return m["type"] == "send" && m["code_alive"] == true
	})
	// Past the window replica 1 gives a page to open its socket, and past a lease.
	time.Sleep(40 * time.Second)
	if !codeValid(t, a1, code) {
		t.Fatal("the code died although its page's socket (on replica 2) is open")
	}
	if !codeValid(t, a2, code) {
		t.Fatal("replica 2 refuses the code")
	}
	// Closing the socket ends the page: the code dies within the grace.
	_ = sock.c.Close()
	deadline := time.Now().Add(15 * time.Second)
	for codeValid(t, a1, code) {
		if time.Now().After(deadline) {
			t.Fatal("the code outlived its page's socket")
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// idleInTransaction counts the sessions of s's database holding a transaction open
// without doing anything (the sender's snapshot for a connected receiver).
func idleInTransaction(t *testing.T, s *site) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND state = 'idle in transaction' AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A Receive job closes its connection when its transfer is done, so the sender's
// snapshot (an open REPEATABLE READ transaction) ends with it.
func TestReceiveJobClosesItsConnectionWhenDone(t *testing.T) {
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{})
	code := a.newCode(t).Code
	page := liveSocket(t, b, map[string]any{"op": "hello", "page": "receive"})
	page.receiveState(t, "idle")
	page.send(t, map[string]any{"op": "connect", "url": a.url, "code": code})
	page.receiveState(t, "ready")
	if n := idleInTransaction(t, a); n == 0 {
		t.Fatal("no snapshot open on the sender while connected (the test would prove nothing)")
	}
	page.send(t, map[string]any{"op": "start", "tables": []string{"customers", "products"}, "strategy": "skip", "create_missing": true})
	page.receiveState(t, "done")
	deadline := time.Now().Add(5 * time.Second)
	for idleInTransaction(t, a) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d transactions still open on the sender after the transfer", idleInTransaction(t, a))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
