package host_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/internal/testsupport"
)

func TestMain(m *testing.M) { testsupport.Main(m) }

// moduleBinary is one of the modules of internal/ (testmodule, rawmodule), built
// with the race detector so that the SDK's side of the tests (concurrent WebSocket
// writers, above all) is race-checked too: a race a plugin reports reaches the host's
// logs through its stderr, and the site fails the test.
func moduleBinary(t *testing.T, name string) string {
	t.Helper()
	return testsupport.Binary(t, "github.com/fiberkit/fiberkit/host/internal/"+name)
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
  - path: /longpoll
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
  - name: whoami-guarded
    callers: [a]
  - name: enable_system
    callers: [a]
  - name: disable_system
    callers: [a]
  - name: call
  - name: set
  - name: caller-guarded
    callers: [a]
`

// site is a running host app for one test.
type site struct {
	kit  *host.Kit
	url  string
	db   string
	logs *testsupport.LogBuffer
}

type kitOptions struct {
	ids            []string // modules to load (all from the test binary)
	configFile     string
	enabled        []string // modules to enable before start (through the settings store)
	auth           fiber.Handler
	db             string
	maxFrame       int64
	healthInterval time.Duration // 200 ms when zero
}

func startSite(t *testing.T, o kitOptions) *site {
	t.Helper()
	if len(o.ids) == 0 {
		o.ids = []string{"tm"}
	}
	manifests := writeManifests(t, t.TempDir(), moduleManifest, moduleBinary(t, "testmodule"), o.ids)
	if o.auth == nil {
		o.auth = basicAuth("admin", "secret-admin-pw")
	}
	if o.healthInterval == 0 {
		o.healthInterval = 200 * time.Millisecond
	}
	s := serve(t, host.Config{
		DatabaseURL:    o.db,
		ConfigFile:     o.configFile,
		Manifests:      manifests,
		AdminAuth:      o.auth,
		MaxFrameSize:   o.maxFrame,
		HealthInterval: o.healthInterval,
	}, o.enabled...)
	return s
}

// writeManifests writes dir/<id>/module.yaml for each id from tmpl, a manifest
// with three verbs (id, id, executable), and returns their paths.
func writeManifests(t *testing.T, dir, tmpl, executable string, ids []string) []string {
	t.Helper()
	var manifests []string
	for _, id := range ids {
		p := filepath.Join(dir, id, "module.yaml")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(fmt.Sprintf(tmpl, id, id, executable)), 0o644); err != nil {
			t.Fatal(err)
		}
		manifests = append(manifests, p)
	}
	return manifests
}

// serve runs a host from cfg for the test, enables the modules enabled (through the
// settings store) and waits for them to run.
func serve(t *testing.T, cfg host.Config, enabled ...string) *site {
	t.Helper()
	ts := testsupport.StartSite(t, func(string) host.Config { return cfg })
	for _, id := range enabled {
		if err := ts.Kit.SetEnabled(context.Background(), id, true, "test"); err != nil {
			t.Fatalf("enable %s: %v", id, err)
		}
	}
	s := &site{kit: ts.Kit, url: ts.URL, db: ts.DB, logs: ts.Logs}
	for _, id := range enabled {
		s.waitState(t, id, host.StateRunning)
	}
	return s
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

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
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

// tableDumps returns every row of every table of the database (outside the system
// schemas) as text, by table name; tables in skip are left out.
func tableDumps(t *testing.T, db string, skip ...string) map[string]string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT table_name::text FROM information_schema.tables
		WHERE table_schema NOT IN ('pg_catalog','information_schema') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, tbl := range tables {
		skipped := false
		for _, s := range skip {
			skipped = skipped || s == tbl
		}
		if skipped {
			continue
		}
		var dump string
		// Rows in a fixed order, so two dumps of unchanged tables are equal.
		q := "SELECT coalesce(string_agg(r, E'\\n' ORDER BY r), '') FROM (SELECT t::text AS r FROM " + pgx.Identifier{tbl}.Sanitize() + " t) x"
		if err := conn.QueryRow(ctx, q).Scan(&dump); err != nil {
			t.Fatalf("dump %s: %v", tbl, err)
		}
		out[tbl] = dump
	}
	return out
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// A plugin does not inherit the host's environment: secrets the host was given
// (e.g. for ${VAR} in the config file) stay in the host.
func TestPluginDoesNotSeeHostEnvironment(t *testing.T) {
	t.Setenv("FOO_SECRET", "do-not-leak-7f3a")
	t.Setenv("SYNC_PASSWORD", "do-not-leak-either")
	t.Setenv("FIBERKIT_SECRET_KEY", "meant-for-plugins")
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	out, err := s.kit.Call(context.Background(), "u", "tm", "env", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	if err := json.Unmarshal(out, &env); err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(env, "\n")
	if strings.Contains(joined, "do-not-leak") {
		t.Fatalf("plugin sees the host's secrets:\n%s", joined)
	}
	for _, want := range []string{"FIBERKIT_SECRET_KEY=meant-for-plugins", "PATH="} {
		found := false
		for _, kv := range env {
			if strings.HasPrefix(kv, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("plugin environment lacks %s:\n%s", want, joined)
		}
	}
}

func TestHostRefusesBadSetups(t *testing.T) {
	ctx := context.Background()
	_, err := host.New(ctx, host.Config{DatabaseURL: "postgres://unused"})
	if err == nil || !strings.Contains(err.Error(), "AdminAuth") {
		t.Fatalf("no admin auth: %v", err)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "module.yaml")
	if err := os.WriteFile(bad, []byte("id: bad\nname: Bad\nversion: 0.1.0\nmin_host_version: 0.1.0\nexecutable: ./missing\nsettings:\n  - key: x\n    type: colour\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = host.New(ctx, host.Config{DatabaseURL: pgtest.NewDatabase(t), Manifests: []string{bad}, InsecureDevAdmin: true})
	if err == nil || !strings.Contains(err.Error(), "colour") || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("bad manifest: %v, want errors naming the unknown type and the missing executable", err)
	}
}
