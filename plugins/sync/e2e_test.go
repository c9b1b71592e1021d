package main_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
)

// pluginBinary is the Sync plugin and reportBinary the example module that calls
// it through the SDK, built once for the test binary.
var pluginBinary, reportBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fiberkit-sync-test-")
	if err != nil {
		panic(err)
	}
	pluginBinary = filepath.Join(dir, "fiberkit-sync")
	reportBinary = filepath.Join(dir, "sync-report")
	for bin, pkg := range map[string]string{pluginBinary: "plugins/sync", reportBinary: "examples/plugins/sync-report"} {
		if out, err := exec.Command("go", "build", "-o", bin, "github.com/fiberkit/fiberkit/"+pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	defer os.RemoveAll(dir)
	pgtest.Main(m)
}

// site is one running host app with the Sync module.
type site struct {
	kit  *host.Kit
	url  string
	pool *pgxpool.Pool
	db   string
	cfg  string
	app  *fiber.App
	logs *logBuffer // everything the host and its plugins logged
}

// logBuffer collects output (logs, a command's stdout) that goroutines write while
// the test reads it.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type siteOptions struct {
	mode     string // incoming_mode
	password string
	db       string // share a database (replicas)
	report   bool   // also load the sync-report example module
	// ssrfGuard keeps allow_internal_urls off.
	ssrfGuard bool
	// pluginEnv is added to the plugin's environment (host.Config.PluginEnv).
	pluginEnv []string
}

// startSite runs a host app whose Sync module uses the repository's module.yaml
// with the freshly built binary.
func startSite(t *testing.T, o siteOptions) *site {
	t.Helper()
	dir := t.TempDir()
	manifest, err := os.ReadFile("../../module.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := strings.Replace(string(manifest), "executable: bin/fiberkit-sync", "executable: "+pluginBinary, 1)
	if err := os.WriteFile(filepath.Join(dir, "module.yaml"), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	manifests := []string{filepath.Join(dir, "module.yaml")}
	if o.report {
		rm, err := os.ReadFile("../../examples/plugins/sync-report/module.yaml")
		if err != nil {
			t.Fatal(err)
		}
		rdir := filepath.Join(dir, "report")
		_ = os.MkdirAll(rdir, 0o755)
		r := strings.Replace(string(rm), "executable: ../../../bin/sync-report", "executable: "+reportBinary, 1)
		if err := os.WriteFile(filepath.Join(rdir, "module.yaml"), []byte(r), 0o644); err != nil {
			t.Fatal(err)
		}
		manifests = append(manifests, filepath.Join(rdir, "module.yaml"))
	}
	if o.mode == "" {
		o.mode = "auto_accept"
	}
	cfg := filepath.Join(dir, "fiberkit.yaml")
	// Both sites are on 127.0.0.1: they must be allowed to pull from internal URLs.
	body := fmt.Sprintf("modules:\n  sync:\n    enabled: true\n    settings:\n      incoming_mode: %s\n      allow_internal_urls: %v\n", o.mode, !o.ssrfGuard)
	if o.password != "" {
		body += "      incoming_password: " + o.password + "\n"
	}
	if o.report {
		body += "  sync-report:\n    enabled: true\n"
	}
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if o.db == "" {
		o.db = pgtest.NewDatabase(t)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ctx := context.Background()
	logs := &logBuffer{}
	kit, err := host.New(ctx, host.Config{
		DatabaseURL: o.db, ConfigFile: cfg, Manifests: manifests,
		InsecureDevAdmin: true, PublicURL: url, HealthInterval: 200 * time.Millisecond, PluginEnv: o.pluginEnv,
		Logger: slog.New(slog.NewTextHandler(io.MultiWriter(testWriter{t}, logs), &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("host.New: %v", err)
	}
	t.Cleanup(func() { _ = kit.Close() })
	app := fiber.New(host.FiberConfig())
	kit.Mount(app)
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() { _ = app.ShutdownWithTimeout(3 * time.Second) })
	pool, err := pgxpool.New(ctx, o.db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := &site{kit: kit, url: url, pool: pool, db: o.db, cfg: cfg, app: app, logs: logs}
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, _ := kit.Module("sync")
		if st.State == host.StateRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sync module %s: %s", st.State, st.LastError)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// call runs a Sync operation on a site as the admin user.
func (s *site) call(t *testing.T, op string, in, out any) error {
	t.Helper()
	payload, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.kit.Call(context.Background(), "admin", "sync", op, payload)
	if err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(res, out); err != nil {
			t.Fatalf("decode %s: %v (%s)", op, err, res)
		}
	}
	return nil
}

type newSession struct {
	ID   string `json:"id"`
	Code string `json:"code"`
}

func (s *site) newCode(t *testing.T) newSession {
	t.Helper()
	var out newSession
	if err := s.call(t, "create_session", map[string]any{}, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Code) != 8 {
		t.Fatalf("code %q", out.Code)
	}
	return out
}

func (s *site) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := s.pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// checksum is the md5 of a table's COPY output in key order.
func (s *site) checksum(t *testing.T, table, order string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	h := md5.New()
	if _, err := conn.Conn().PgConn().CopyTo(ctx, h, fmt.Sprintf("COPY (SELECT * FROM %s ORDER BY %s) TO STDOUT", table, order)); err != nil {
		t.Fatalf("checksum %s: %v", table, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
