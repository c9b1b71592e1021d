package host_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/internal/testsupport"
)

const rawManifest = `id: %s
name: Raw module %s
version: 0.1.0
min_host_version: 0.1.0
executable: %s
routes:
  - path: /hang
  - path: /echo
  - path: /sink
  - path: /headers
  - path: /upload
    methods: [POST]
    admin: true
  - path: /headers
    admin: true
websockets:
  - path: /ws
  - path: /sub
  - path: /admin-ws
    admin: true
  - path: /admin-browser-ws
    admin: true
    browser: true
operations:
  - name: publish
`

// startRawSite runs a host app with the raw module enabled as "rm" and, when
// noHTTP, a copy of it without HTTP as "rn".
func startRawSite(t *testing.T, noHTTP bool) *site {
	t.Helper()
	dir := t.TempDir()
	ids := []string{"rm"}
	if noHTTP {
		ids = append(ids, "rn")
	}
	manifests := writeManifests(t, dir, rawManifest, moduleBinary(t, "rawmodule"), ids)
	if noHTTP {
		if err := os.WriteFile(filepath.Join(dir, "rn", "nohttp"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return serve(t, host.Config{
		Manifests:      manifests,
		AdminAuth:      basicAuth("admin", "secret-admin-pw"),
		HealthInterval: 200 * time.Millisecond,
	}, ids...)
}

// adminToken signs in to the admin list page and returns the CSRF token of its forms.
func adminToken(t *testing.T, s *site, c *http.Client) string {
	t.Helper()
	_, page := adminDo(t, c, "GET", s.url+"/admin/fiberkit/", nil)
	m := csrfInput.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token on the admin page")
	}
	return m[1]
}

// multipartUpload is a multipart body of one file of size bytes, produced as it is
// read; field, when set, is a _csrf form field before the file.
func multipartUpload(size int64, csrfField string) (body io.Reader, contentType string, length int64) {
	var head, tail bytes.Buffer
	mw := multipart.NewWriter(&head)
	if csrfField != "" {
		_ = mw.WriteField("_csrf", csrfField)
	}
	_, _ = mw.CreateFormFile("file", "f.bin")
	mark := head.Len()
	_ = mw.Close()
	tail.Write(head.Bytes()[mark:])
	head.Truncate(mark)
	length = int64(head.Len()) + size + int64(tail.Len())
	return io.MultiReader(&head, &patternReader{left: size}, &tail), mw.FormDataContentType(), length
}

// H1: a module admin route takes a 100 MB multipart upload with the CSRF token in the
// header and streams it (host memory bounded, body intact); without the header the
// upload is refused unread; a small urlencoded form still carries its token in the
// _csrf field.
func TestAdminMultipartUploadStreamsAndNeedsHeaderToken(t *testing.T) {
	s := startRawSite(t, false)
	c := adminClient(t)
	tok := adminToken(t, s, c)
	try := func(body io.Reader, ct string, length int64, header string) (int, string, error) {
		req, _ := http.NewRequest("POST", s.url+"/admin/fiberkit/rm/upload", body)
		req.ContentLength = length // -1: chunked
		req.Header.Set("Authorization", adminAuthHeader)
		req.Header.Set("Content-Type", ct)
		if header != "" {
			req.Header.Set("X-Csrf-Token", header)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	post := func(body io.Reader, ct string, length int64, header string) (int, string) {
		t.Helper()
		code, b, err := try(body, ct, length, header)
		if err != nil {
			t.Fatalf("upload: %v", err)
		}
		return code, b
	}
	// Warm the buffer pools, so what is measured is what a large body adds.
	body, ct, n := multipartUpload(8<<20, "")
	if code, b := post(body, ct, n, tok); code != 200 {
		t.Fatalf("warm-up upload: %d %s", code, b)
	}
	const size = 100 << 20
	for _, chunked := range []bool{false, true} {
		body, ct, n := multipartUpload(size, "")
		length := n
		if chunked {
			length = -1
		}
		resetPeak(t, os.Getpid())
		before := peakRSS(t, os.Getpid())
		code, b := post(body, ct, length, tok)
		growth := peakRSS(t, os.Getpid()) - before
		t.Logf("100 MB multipart upload (chunked %v) with the header token: %d %s; host peak grew %d KB", chunked, code, b, growth>>10)
		if code != 200 || b != fmt.Sprintf(`{"bytes":%d,"csrf":true}`, n) {
			t.Fatalf("upload with header token: %d %s, want 200 and %d bytes", code, b, n)
		}
		if growth > 20<<20 {
			t.Fatalf("host memory grew %d MB for a streamed upload", growth>>20)
		}
	}
	// The token only in a multipart form field: refused, the body left unparsed. A
	// body the host can drain (≤ 16 MiB) gets the 403 with its reason; a larger one is
	// cut off after the answer, so the client may see a reset instead — either way
	// the host holds none of it.
	for _, size := range []int64{8 << 20, size} {
		for _, chunked := range []bool{false, true} {
			body, ct, n := multipartUpload(size, tok)
			if chunked {
				n = -1
			}
			resetPeak(t, os.Getpid())
			before := peakRSS(t, os.Getpid())
			code, b, err := try(body, ct, n, "")
			growth := peakRSS(t, os.Getpid()) - before
			t.Logf("%d MB multipart upload (chunked %v), token in the form only: %d %q %v; host peak grew %d KB", size>>20, chunked, code, b, err, growth>>10)
			switch {
			case err == nil && (code != http.StatusForbidden || !strings.Contains(b, "X-Csrf-Token")):
				t.Fatalf("token in a multipart field: %d %q, want 403 naming the header", code, b)
			case err != nil && size <= 16<<20:
				t.Fatalf("a drainable refused upload got no answer: %v", err)
			case err != nil && !strings.Contains(err.Error(), "reset") && !strings.Contains(err.Error(), "broken pipe"):
				t.Fatalf("refused upload: %v", err)
			}
			if growth > 20<<20 {
				t.Fatalf("host memory grew %d MB refusing an upload", growth>>20)
			}
		}
	}
	// No token at all.
	if code, _ := post(strings.NewReader("x"), "application/octet-stream", 1, ""); code != http.StatusForbidden {
		t.Fatalf("no token: %d, want 403", code)
	}
	// A small urlencoded form with the token in _csrf reaches the module whole.
	form := url.Values{"_csrf": {tok}, "note": {strings.Repeat("n", 1000)}}.Encode()
	code, b := post(strings.NewReader(form), "application/x-www-form-urlencoded", int64(len(form)), "")
	if code != 200 || b != fmt.Sprintf(`{"bytes":%d,"csrf":true}`, len(form)) {
		t.Fatalf("small form with _csrf field: %d %s", code, b)
	}
	// The _csrf query parameter is not read (URLs end up in logs and Referer headers).
	req, _ := http.NewRequest("POST", s.url+"/admin/fiberkit/rm/upload?_csrf="+url.QueryEscape(tok), strings.NewReader("abc"))
	req.Header.Set("Authorization", adminAuthHeader)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("token in the query: %d, want 403", resp.StatusCode)
	}
}

// M3: a module that never answers costs the client a 504 after the head timeout.
func TestProxyHeadTimeoutGives504(t *testing.T) {
	defer host.SetHeadTimeout(700 * time.Millisecond)()
	s := startRawSite(t, false)
	client := &http.Client{Timeout: 15 * time.Second}
	start := time.Now()
	resp, err := client.Get(s.url + "/fiberkit/rm/hang")
	if err != nil {
		t.Fatalf("a module that never answers left the client waiting: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != http.StatusGatewayTimeout || took > 5*time.Second {
		t.Fatalf("never-answering module: %d %q after %v, want 504 after ~0.7 s", resp.StatusCode, b, took)
	}
	// The module and the host are fine afterwards.
	if code, body := testsupport.Get(t, s.url+"/fiberkit/rm/headers"); code != 200 {
		t.Fatalf("after timeout: %d %s", code, body)
	}
	// A slow upload is not cut off while its body still arrives.
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < 8; i++ {
			_, _ = pw.Write(bytes.Repeat([]byte("u"), 1000))
			time.Sleep(200 * time.Millisecond) // 1.6 s in all, more than the head timeout
		}
		pw.Close()
	}()
	resp, err = client.Post(s.url+"/fiberkit/rm/sink", "application/octet-stream", pr)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"bytes":8000`) {
		t.Fatalf("slow upload: %d %s", resp.StatusCode, b)
	}
}

// rawRequest sends a request head by hand and returns the connection.
func rawRequest(t *testing.T, s *site, head string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	return conn
}

// busyGoroutines counts the process's goroutines but fasthttp's idle workers, which
// its worker pool keeps for up to twice MaxIdleWorkerDuration (10 s) after their
// connection ended: counting them made a leak check pass or fail by timing alone.
func busyGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	busy := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "fasthttp.(*workerPool).workerFunc") && !strings.Contains(g, "fasthttp.(*Server).serveConn") {
			continue
		}
		busy++
	}
	return busy
}

// M3: clients that vanish mid-upload — while the module streams its answer back, or
// before it answered — leave no goroutine behind (and, under -race, no race with
// fasthttp recycling the request).
func TestProxyClientGoneMidUploadLeavesNothingBehind(t *testing.T) {
	s := startRawSite(t, false)
	// Warm up: connections to the plugin, pools.
	for i := 0; i < 3; i++ {
		testsupport.Get(t, s.url+"/fiberkit/rm/headers")
	}
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(200 * time.Millisecond)
	before := busyGoroutines()
	chunk := bytes.Repeat([]byte("b"), 64<<10)
	for i := 0; i < 6; i++ {
		path := "/fiberkit/rm/echo"
		if i%2 == 1 {
			path = "/fiberkit/rm/sink"
		}
		hdr := "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
		if i%3 == 0 {
			hdr += "Transfer-Encoding: chunked\r\n\r\n"
		} else {
			hdr += "Content-Length: 104857600\r\n\r\n"
		}
		conn := rawRequest(t, s, hdr)
		for j := 0; j < 16; j++ {
			piece := chunk
			if i%3 == 0 {
				piece = append([]byte(fmt.Sprintf("%x\r\n", len(chunk))), append(chunk, '\r', '\n')...)
			}
			if _, err := conn.Write(piece); err != nil {
				break
			}
		}
		if path == "/fiberkit/rm/echo" {
			// Read the start of the echoed body, then go.
			br := bufio.NewReader(conn)
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if resp, err := http.ReadResponse(br, nil); err == nil {
				_, _ = io.ReadFull(resp.Body, make([]byte, 1<<10))
			}
		}
		conn.Close()
	}
	// A client that stops sending but stays connected, then goes.
	conn := rawRequest(t, s, "POST /fiberkit/rm/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
	_, _ = conn.Write(chunk)
	time.Sleep(300 * time.Millisecond)
	conn.Close()

	deadline := time.Now().Add(10 * time.Second)
	for {
		now := busyGoroutines()
		if now <= before+2 {
			t.Logf("goroutines: %d before, %d after", before, now)
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after the clients left\n%s", before, now, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Still serving.
	if code, body := testsupport.Get(t, s.url+"/fiberkit/rm/headers"); code != 200 {
		t.Fatalf("after aborted uploads: %d %s", code, body)
	}
}

// Low: a module that serves no HTTP answers 501, not a "module error".
func TestModuleWithoutHTTPAnswers501(t *testing.T) {
	s := startRawSite(t, true)
	code, body := testsupport.Get(t, s.url+"/fiberkit/rn/headers")
	if code != http.StatusNotImplemented {
		t.Fatalf("module without HTTP: %d %q, want 501", code, body)
	}
	if code, _ := testsupport.Get(t, s.url+"/fiberkit/rm/headers"); code != 200 {
		t.Fatalf("the module with HTTP: %d", code)
	}
}

// M2: what a module sees of the request header.
func TestProxyStripsCredentialsAndConnectionHeaders(t *testing.T) {
	s := startRawSite(t, false)
	seen := func(path string) http.Header {
		t.Helper()
		conn := rawRequest(t, s, "GET "+path+" HTTP/1.1\r\nHost: x\r\n"+
			"Authorization: "+adminAuthHeader+"\r\n"+
			"Proxy-Authorization: Basic cHJveHk6cHc=\r\n"+
			"Cookie: app=1; fiberkit_csrf=kit-cookie; other=2\r\n"+
			"Connection: keep-alive, X-Hop\r\n"+
			"X-Hop: secret\r\nKeep-Alive: timeout=5\r\nTe: trailers\r\nX-Plain: kept\r\n\r\n")
		defer conn.Close()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		var v struct{ Header http.Header }
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		return v.Header
	}
	for _, admin := range []bool{true, false} {
		path := "/fiberkit/rm/headers"
		if admin {
			path = "/admin/fiberkit/rm/headers"
		}
		h := seen(path)
		t.Logf("%s: module saw %v", path, h)
		for _, k := range []string{"Proxy-Authorization", "X-Hop", "Keep-Alive", "Te", "Connection"} {
			if v := h.Values(k); len(v) > 0 {
				t.Errorf("%s: module saw %s: %q", path, k, v)
			}
		}
		if h.Get("X-Plain") != "kept" {
			t.Errorf("%s: X-Plain = %q", path, h.Get("X-Plain"))
		}
		if got := h.Get("Cookie"); got != "app=1; other=2" {
			t.Errorf("%s: Cookie = %q, want the app's cookies without the kit's", path, got)
		}
		// The admin's credentials are the host's business; on a public route the
		// Authorization header is addressed to the module (Sync's bearer tokens).
		if got := h.Get("Authorization"); admin && got != "" || !admin && got != adminAuthHeader {
			t.Errorf("%s: Authorization = %q", path, got)
		}
	}
}
