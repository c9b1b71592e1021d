package main_test

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fiberkit/fiberkit/host/browsertest"
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

func TestSendPageRecoversFromADroppedSocket(t *testing.T) {
	a := startSite(t, siteOptions{})
	tab := browsertest.New(t, nil)
	code := readCode(t, tab, a)
	// Wait until the page's socket is up (the banner stays hidden), then kill the
	// plugin: the socket drops, the page says so, and reconnects once the host has
	// restarted the plugin; the code survives.
	if err := chromedp.Run(tab, chromedp.WaitNotVisible(`#socket-state`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	st, _ := a.kit.Module("sync")
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, chromedp.WaitVisible(`#socket-state`, chromedp.ByQuery)); err != nil {
		t.Fatalf("the page did not notice the dropped socket: %v", err)
	}
	if err := chromedp.Run(ctx, chromedp.WaitNotVisible(`#socket-state`, chromedp.ByQuery)); err != nil {
		t.Fatalf("the page did not reconnect: %v", err)
	}
	time.Sleep(6 * time.Second) // longer than the grace a closed page gets
	if !codeValid(t, a, code) {
		t.Fatal("the code died although its page reconnected")
	}
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
