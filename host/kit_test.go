package host_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
)

// testBinary is the test module, built once for the whole test binary.
var testBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fiberkit-host-test-")
	if err != nil {
		panic(err)
	}
	testBinary = filepath.Join(dir, "testmodule")
	// Built with the race detector, so that the SDK's side of the tests (concurrent
	// WebSocket writers, above all) is race-checked too: a race the plugin reports
	// reaches the host's logs through its stderr, and checkPluginRaces fails the test.
	out, err := exec.Command("go", "build", "-race", "-o", testBinary, "github.com/fiberkit/fiberkit/host/internal/testmodule").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build test module: %v\n%s", err, out)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	pgtest.Main(m)
}

// moduleManifest is the manifest the tests load the test module with.
const moduleManifest = `id: %s
name: Test module %s
version: 0.1.0
min_host_version: 0.1.0
executable: %s
settings:
  - key: greeting
    type: string
    default: hi
  - key: mode
    type: enum
    options: [a, b]
    default: a
  - key: password
    type: secret
routes:
  - path: /ping
  - path: /upload
    methods: [POST]
  - path: /download
    methods: [GET]
  - path: /sse
  - path: /sse-gate
    methods: [POST]
  - path: /headers
  - path: /status/:code
  - path: /panic
  - path: /settings
  - path: /lastclose
  - path: /flood
  - path: /admin-page
    admin: true
  - path: /admin-set
    methods: [POST]
    admin: true
websockets:
  - path: /ws
  - path: /ws-public
    browser: true
  - path: /ws-reject
  - path: /ws-not-served
operations:
  - name: whoami
  - name: call
  - name: set
`

// site is a running host app for one test.
type site struct {
	kit  *host.Kit
	url  string
	db   string
	logs *syncBuffer
}

type kitOptions struct {
	ids        []string // modules to load (all from the test binary)
	configFile string
	enabled    []string // modules to enable before start (through the settings store)
	auth       fiber.Handler
	db         string
	maxFrame   int64
}

func startSite(t *testing.T, o kitOptions) *site {
	t.Helper()
	if len(o.ids) == 0 {
		o.ids = []string{"tm"}
	}
	dir := t.TempDir()
	var manifests []string
	for _, id := range o.ids {
		p := filepath.Join(dir, id, "module.yaml")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(fmt.Sprintf(moduleManifest, id, id, testBinary)), 0o644); err != nil {
			t.Fatal(err)
		}
		manifests = append(manifests, p)
	}
	if o.db == "" {
		o.db = pgtest.NewDatabase(t)
	}
	logs := &syncBuffer{}
	checkPluginRaces(t, logs)
	cfg := host.Config{
		DatabaseURL:    o.db,
		ConfigFile:     o.configFile,
		Manifests:      manifests,
		AdminAuth:      o.auth,
		MaxFrameSize:   o.maxFrame,
		HealthInterval: 200 * time.Millisecond,
		Logger:         slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if cfg.AdminAuth == nil {
		cfg.AdminAuth = basicAuth("admin", "secret-admin-pw")
	}
	ctx := context.Background()
	kit, err := host.New(ctx, cfg)
	if err != nil {
		t.Fatalf("host.New: %v", err)
	}
	t.Cleanup(func() { _ = kit.Close() })
	for _, id := range o.enabled {
		if err := kit.SetEnabled(ctx, id, true, "test"); err != nil {
			t.Fatalf("enable %s: %v", id, err)
		}
	}
	s := serveKit(t, kit, o.db, logs)
	for _, id := range o.enabled {
		s.waitState(t, id, host.StateRunning)
	}
	return s
}

// raceReport is how the race detector starts a report (on the plugin's stderr, which
// go-plugin copies into the host's log).
const raceReport = "WARNING: DATA RACE"

// checkPluginRaces fails the test if a plugin process reported a data race. Call it
// before the kit is created: cleanups run last-in first-out, so the check then runs
// after Kit.Close, once the plugins' stderr has been read to the end.
func checkPluginRaces(t *testing.T, logs *syncBuffer) {
	t.Helper()
	t.Cleanup(func() {
		if l := logs.String(); strings.Contains(l, raceReport) {
			i := strings.Index(l, raceReport)
			t.Errorf("a plugin process reported a data race:\n%s", l[i:min(len(l), i+4000)])
		}
	})
}

// waitState polls the module's state until it is want or 15 s pass.
func (s *site) waitState(t *testing.T, id string, want host.State) host.ModuleStatus {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, ok := s.kit.Module(id)
		if !ok {
			t.Fatalf("no module %q", id)
		}
		if st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("module %s: state %s, want %s (last error %q)", id, st.State, want, st.LastError)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func basicAuth(user, pass string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		u, p, ok := parseBasic(c.Get(fiber.HeaderAuthorization))
		if !ok || u != user || p != pass {
			c.Set(fiber.HeaderWWWAuthenticate, `Basic realm="admin"`)
			return c.SendStatus(fiber.StatusUnauthorized)
		}
		c.Locals(host.UserLocal, u)
		return c.Next()
	}
}

func parseBasic(h string) (string, string, bool) {
	r, _ := http.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", h)
	return r.BasicAuth()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// syncBuffer collects logs so tests can search them.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// peakRSS returns a process's peak resident set size in bytes (VmHWM).
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read status of %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:")), "%d", &kb)
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM for %d", pid)
	return 0
}

// serveKit mounts kit on a Fiber app listening on a free loopback port, shut down
// when the test ends.
func serveKit(t *testing.T, kit *host.Kit, db string, logs *syncBuffer) *site {
	t.Helper()
	app := fiber.New(host.FiberConfig())
	kit.Mount(app)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() { _ = app.ShutdownWithTimeout(5 * time.Second) })
	return &site{kit: kit, url: "http://" + ln.Addr().String(), db: db, logs: logs}
}
