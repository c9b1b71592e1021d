package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/plugins/sync/syncweb"
)

// nginxConf is a caching proxy in front of a shape origin, as Electric's docs set up
// a CDN: responses cached by URL, and concurrent requests for one URL collapsed into
// one origin request (proxy_cache_lock), long enough for a live long-poll.
const nginxConf = `daemon off;
user %[4]s;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	proxy_cache_path %[1]s/cache keys_zone=shapes:10m;
	server {
		listen 127.0.0.1:%[2]d;
		location / {
			proxy_pass http://%[3]s;
			proxy_http_version 1.1;
			proxy_cache shapes;
			proxy_cache_key $scheme$proxy_host$request_uri;
			proxy_cache_lock on;
			proxy_cache_lock_timeout 60s;
			proxy_cache_lock_age 60s;
			proxy_read_timeout 60s;
			add_header X-Cache-Status $upstream_cache_status;
		}
	}
}
`

// startNginx runs nginx in front of origin and returns its URL.
func startNginx(t *testing.T, origin string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, err = os.Stat("/usr/sbin/nginx"); err != nil {
			t.Fatal("nginx is not installed (Debian: apt-get install nginx; .ci/run installs it)")
		}
		bin = "/usr/sbin/nginx"
	}
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := filepath.Join(dir, "nginx.conf")
	// Workers run as the test's user: nginx's default (nobody) could not enter the
	// test's temporary directory.
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, port, strings.TrimPrefix(origin, "http://"), me.Username)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", conf)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", u[len("http://"):]); err == nil {
			c.Close()
			return u
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not start: %s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// countingOrigin serves a static shape with syncweb and counts the requests it
// gets, by URL.
type countingOrigin struct {
	mu   sync.Mutex
	hits map[string]int
}

func (o *countingOrigin) get(u string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hits[u]
}

func (o *countingOrigin) total() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, h := range o.hits {
		n += h
	}
	return n
}

func startShapeOrigin(t *testing.T, kit *host.Kit, spec syncapi.ShapeSpec) (*countingOrigin, string) {
	t.Helper()
	o := &countingOrigin{hits: map[string]int{}}
	app := fiber.New(host.FiberConfig())
	app.Get("/shape", func(c *fiber.Ctx) error {
		o.mu.Lock()
		o.hits[c.OriginalURL()]++
		o.mu.Unlock()
		return c.Next()
	}, syncweb.Shape(kit, spec))
	return o, testsupport.Serve(t, app)
}

// cacheGet is one request of Electric's protocol; it returns the status, the
// headers a client follows, and the body.
func cacheGet(t *testing.T, u string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Error(err)
		return 0, nil, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// Behind nginx with proxy_cache, N clients of one shape cost the origin one request
// per offset: the initial request, and each live long-poll, which every client makes
// with the same handle, offset and cursor.
func TestCachingProxyCollapsesAShapesClients(t *testing.T) {
	s := liveSite(t, siteOptions{})
	s.exec(t, `CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 50) g`)
	origin, originURL := startShapeOrigin(t, s.kit, syncapi.ShapeSpec{Table: "items"})
	proxy := startNginx(t, originURL)

	const clients = 20
	type state struct {
		handle, offset, cursor string
		urls                   []string // the catch-up requests made, in order
		rows                   int
	}
	states := make([]state, clients)
	var wg sync.WaitGroup
	for i := range states {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			st := &states[i]
			q := "/shape?offset=-1"
			for {
				code, h, body := cacheGet(t, proxy+q)
				if code != 200 {
					t.Errorf("client %d, %s: %d %.200s", i, q, code, body)
					return
				}
				st.urls = append(st.urls, q)
				st.rows += strings.Count(body, `"operation":"insert"`)
				st.handle, st.offset, st.cursor = h.Get("electric-handle"), h.Get("electric-offset"), h.Get("electric-cursor")
				if _, ok := h["Electric-Up-To-Date"]; ok {
					return
				}
				q = "/shape?" + url.Values{"offset": {st.offset}, "handle": {st.handle}}.Encode()
			}
		}(i)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, st := range states {
		if st.rows != 50 || fmt.Sprint(st.urls) != fmt.Sprint(states[0].urls) {
			t.Fatalf("client %d: %d rows over %v; client 0 %v", i, st.rows, st.urls, states[0].urls)
		}
	}
	for _, u := range states[0].urls {
		if n := origin.get(u); n != 1 {
			t.Fatalf("%d clients' request %s reached the origin %d times, want 1", clients, u, n)
		}
	}
	catchUp := origin.total()

	// Every client long-polls the same URL; a write answers them all with one origin
	// request.
	live := url.Values{"offset": {states[0].offset}, "handle": {states[0].handle}, "live": {"true"}}
	if states[0].cursor != "" {
		live.Set("cursor", states[0].cursor)
	}
	liveURL := "/shape?" + live.Encode()
	got := make([]string, clients)
	for i := range got {
		if states[i].handle != states[0].handle || states[i].offset != states[0].offset || states[i].cursor != states[0].cursor {
			t.Fatalf("client %d got %+v, client 0 %+v", i, states[i], states[0])
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			code, _, body := cacheGet(t, proxy+liveURL)
			if code != 200 {
				t.Errorf("client %d, live: %d %s", i, code, body)
			}
			got[i] = body
		}(i)
	}
	time.Sleep(time.Second) // all waiting on the one origin long-poll
	s.exec(t, `INSERT INTO items VALUES (51, 'new')`)
	wg.Wait()
	for i, body := range got {
		var ms []syncapi.Message
		if err := json.Unmarshal([]byte(body), &ms); err != nil || len(ms) == 0 || ms[0].Key != `"public"."items"/"51"` {
			t.Fatalf("client %d's long-poll: %.300s (%v)", i, body, err)
		}
	}
	if n := origin.get(liveURL); n != 1 {
		t.Fatalf("%d clients' long-polls reached the origin %d times, want 1", clients, n)
	}
	if n := origin.total(); n != catchUp+1 {
		t.Fatalf("the origin served %d requests for %d clients, want %d", n, clients, catchUp+1)
	}
	t.Logf("%d clients, %d origin requests (%d to catch up, 1 long-poll)", clients, origin.total(), catchUp)
}
