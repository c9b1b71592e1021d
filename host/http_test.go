package host_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/internal/testsupport"
)

// resetPeak resets a process's VmHWM so the next peakRSS shows only what follows.
func resetPeak(t *testing.T, pid int) {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Fatalf("reset peak RSS of %d: %v", pid, err)
	}
}

// patternReader yields n bytes of a fixed pattern without holding them.
type patternReader struct{ left int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := min(int64(len(p)), r.left)
	for i := range p[:n] {
		p[i] = byte(i % 199)
	}
	r.left -= n
	return int(n), nil
}

func TestHTTPStreamsLargeBodiesWithBoundedMemory(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	st := s.waitState(t, "tm", "running")
	const size = 50 << 20

	// Upload: the plugin hashes what it receives. A first, smaller upload warms the
	// buffer pools, so what is measured is what a large body adds.
	warm, _ := http.NewRequest("POST", s.url+"/fiberkit/tm/upload", &patternReader{left: 8 << 20})
	warm.ContentLength = 8 << 20
	if resp, err := http.DefaultClient.Do(warm); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	want := sha256.New()
	_, _ = io.Copy(want, &patternReader{left: size})
	resetPeak(t, os.Getpid())
	resetPeak(t, st.PID)
	hostBefore, pluginBefore := peakRSS(t, os.Getpid()), peakRSS(t, st.PID)
	req, _ := http.NewRequest("POST", s.url+"/fiberkit/tm/upload", &patternReader{left: size})
	req.ContentLength = size
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var up struct {
		Bytes  int64  `json:"bytes"`
		SHA256 string `json:"sha256"`
	}
	decodeJSON(t, string(body), &up)
	if up.Bytes != size || up.SHA256 != hex.EncodeToString(want.Sum(nil)) {
		t.Fatalf("upload arrived as %d bytes sha %s, want %d bytes sha %x", up.Bytes, up.SHA256, size, want.Sum(nil))
	}
	hostGrowth, pluginGrowth := peakRSS(t, os.Getpid())-hostBefore, peakRSS(t, st.PID)-pluginBefore
	t.Logf("50 MB upload: host peak grew %d KB, plugin peak grew %d KB", hostGrowth>>10, pluginGrowth>>10)
	if hostGrowth > 25<<20 || pluginGrowth > 25<<20 {
		t.Fatalf("memory not bounded on upload: host +%d MB, plugin +%d MB", hostGrowth>>20, pluginGrowth>>20)
	}

	// Download: count and hash what arrives, reading slowly at first.
	resetPeak(t, os.Getpid())
	resetPeak(t, st.PID)
	hostBefore, pluginBefore = peakRSS(t, os.Getpid()), peakRSS(t, st.PID)
	resp, err = http.Get(fmt.Sprintf("%s/fiberkit/tm/download?size=%d", s.url, size))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("download: %d bytes, err %v; want %d", n, err, size)
	}
	hostGrowth, pluginGrowth = peakRSS(t, os.Getpid())-hostBefore, peakRSS(t, st.PID)-pluginBefore
	t.Logf("50 MB download: host peak grew %d KB, plugin peak grew %d KB", hostGrowth>>10, pluginGrowth>>10)
	if hostGrowth > 25<<20 || pluginGrowth > 25<<20 {
		t.Fatalf("memory not bounded on download: host +%d MB, plugin +%d MB", hostGrowth>>20, pluginGrowth>>20)
	}
}

func TestServerSentEventsArriveBeforeTheResponseEnds(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	resp, err := http.Get(s.url + "/fiberkit/tm/sse?gate=g1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	r := bufio.NewReader(resp.Body)
	for i := 1; i <= 3; i++ {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if want := fmt.Sprintf("data: event %d\n", i); line != want {
			t.Fatalf("got %q, want %q", line, want)
		}
		_, _ = r.ReadString('\n')
		// The plugin holds event i+1 until told event i arrived: if events were
		// buffered until the end, this test would hang instead of passing.
		if i < 3 {
			gr, err := http.Post(fmt.Sprintf("%s/fiberkit/tm/sse-gate?gate=g1&n=%d", s.url, i), "text/plain", nil)
			if err != nil {
				t.Fatal(err)
			}
			gr.Body.Close()
		}
	}
}

func TestHeadersCookiesAndStatusPassBothWays(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	req, _ := http.NewRequest("GET", s.url+"/fiberkit/tm/headers", nil)
	req.Header.Add("X-Test", "first")
	req.Header.Add("X-Test", "second")
	req.AddCookie(&http.Cookie{Name: "session", Value: "abc"})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d, want 201", resp.StatusCode)
	}
	if got := resp.Header.Values("X-Multi"); strings.Join(got, ",") != "one,two" {
		t.Fatalf("X-Multi = %q", got)
	}
	cookies := map[string]string{}
	for _, c := range resp.Cookies() {
		cookies[c.Name] = c.Value
	}
	if cookies["a"] != "1" || cookies["b"] != "2" {
		t.Fatalf("cookies = %v", cookies)
	}
	var seen struct {
		Header http.Header
		Caller struct {
			User       string `json:"user"`
			RemoteAddr string `json:"remote_addr"`
		}
	}
	b, _ := io.ReadAll(resp.Body)
	decodeJSON(t, string(b), &seen)
	if got := strings.Join(seen.Header.Values("X-Test"), ","); got != "first,second" {
		t.Fatalf("plugin saw X-Test = %q", got)
	}
	if !strings.Contains(seen.Header.Get("Cookie"), "session=abc") {
		t.Fatalf("plugin saw Cookie = %q", seen.Header.Get("Cookie"))
	}
	if seen.Caller.RemoteAddr != "127.0.0.1" || seen.Caller.User != "" {
		t.Fatalf("caller = %+v", seen.Caller)
	}
	for _, code := range []int{204, 404, 418, 503} {
		got, _ := testsupport.Get(t, fmt.Sprintf("%s/fiberkit/tm/status/%d", s.url, code))
		if got != code {
			t.Fatalf("status %d came back as %d", code, got)
		}
	}
}

func TestPanickingHandlerGives500AndTheModuleLives(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	before, _ := s.kit.Module("tm")
	code, _ := testsupport.Get(t, s.url+"/fiberkit/tm/panic")
	if code != http.StatusInternalServerError {
		t.Fatalf("panic gave %d, want 500", code)
	}
	code, body := testsupport.Get(t, s.url+"/fiberkit/tm/ping")
	if code != 200 || body != "pong" {
		t.Fatalf("after panic: %d %q", code, body)
	}
	after, _ := s.kit.Module("tm")
	if after.PID != before.PID || after.Restarts != before.Restarts {
		t.Fatalf("the plugin process was replaced: %+v → %+v", before, after)
	}
}

func TestUndeclaredRoutesAndMethodsAreRefused(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	if code, _ := testsupport.Get(t, s.url+"/fiberkit/tm/not-in-manifest"); code != 404 {
		t.Fatalf("undeclared route: %d", code)
	}
	resp, err := http.Post(s.url+"/fiberkit/tm/download", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST to a GET route: %d", resp.StatusCode)
	}
	// An admin route is not reachable on the public prefix.
	if code, _ := testsupport.Get(t, s.url+"/fiberkit/tm/admin-page"); code != 404 {
		t.Fatalf("admin route on public prefix: %d", code)
	}
}

// Request bodies of every size reach the module's handler intact, whether the app
// streams them (FiberConfig: StreamRequestBody) or holds them whole (an app made
// without it). A whole body of up to 1 MiB goes over a pooled Exchange stream in one
// message; a larger one is sent in chunks over ServeHTTP, as a streamed one is.
func TestHTTPRequestBodiesOfEverySizeReachTheModule(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	// The same kit mounted on a second app, one that reads request bodies whole.
	whole := serveOn(t, s, fiber.Config{BodyLimit: 16 << 20, DisableStartupMessage: true})
	apps := []struct{ name, url string }{{"StreamRequestBody", s.url}, {"whole bodies", whole}}
	for _, a := range apps {
		for _, size := range []int64{0, 1000, 1 << 20, 1<<20 + 1, 5<<20 + 3} {
			want := sha256.New()
			_, _ = io.Copy(want, &patternReader{left: size})
			req, _ := http.NewRequest("POST", a.url+"/fiberkit/tm/upload", &patternReader{left: size})
			req.ContentLength = size
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s, %d bytes: %v", a.name, size, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%s, %d bytes: %d %s", a.name, size, resp.StatusCode, body)
			}
			var up struct {
				Bytes  int64  `json:"bytes"`
				SHA256 string `json:"sha256"`
			}
			decodeJSON(t, string(body), &up)
			if up.Bytes != size || up.SHA256 != hex.EncodeToString(want.Sum(nil)) {
				t.Fatalf("%s: a body of %d bytes arrived as %d bytes sha %s", a.name, size, up.Bytes, up.SHA256)
			}
		}
	}
}

// A long-poll that writes its status at once and its body seconds later: the client
// gets the status when the handler wrote it, not a 504 after the head timeout nor the
// status only with the body.
func TestHTTPLongPollStatusArrivesBeforeItsBody(t *testing.T) {
	defer host.SetHeadTimeout(700 * time.Millisecond)()
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	client := &http.Client{Timeout: 15 * time.Second}
	for i := 0; i < 2; i++ { // a fresh Exchange stream, then a pooled one
		start := time.Now()
		resp, err := client.Get(s.url + "/fiberkit/tm/longpoll?wait=2s")
		if err != nil {
			t.Fatal(err)
		}
		headAfter := time.Since(start)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		bodyAfter := time.Since(start)
		if resp.StatusCode != http.StatusAccepted || resp.Header.Get("X-Answered") == "" {
			t.Fatalf("long-poll: %d %q, want 202 from the module", resp.StatusCode, body)
		}
		if err != nil || string(body) != "done" {
			t.Fatalf("long-poll body: %q %v", body, err)
		}
		t.Logf("long-poll: status after %v, body after %v", headAfter, bodyAfter)
		if headAfter > 1500*time.Millisecond || bodyAfter < 1900*time.Millisecond {
			t.Fatalf("long-poll: status after %v, body after %v; want the status at once, the body after 2 s", headAfter, bodyAfter)
		}
	}
}
