package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/sample"
)

func TestMain(m *testing.M) { testsupport.Main(m) }

// The Sync plugin, the example module that calls it through the SDK, and the
// command-line receiver, each built with the race detector once for the test binary.
const (
	pluginPackage = "github.com/fiberkit/fiberkit/plugins/sync"
	reportPackage = "github.com/fiberkit/fiberkit/examples/plugins/sync-report"
	todoPackage   = "github.com/fiberkit/fiberkit/examples/plugins/todo"
	pullPackage   = "github.com/fiberkit/fiberkit/plugins/sync/cmd/fiberkit-pull"
)

// site is one running host app with the Sync module.
type site struct {
	kit  *host.Kit
	url  string
	pool *pgxpool.Pool
	db   string
	cfg  string
	app  *fiber.App
	logs *testsupport.LogBuffer // everything the host and its plugins logged
}

type siteOptions struct {
	mode string // incoming_mode
	// unlocked leaves enabled and incoming_mode out of the config file (so they are
	// not locked: the operations may change them); Sync is enabled through the
	// settings store instead.
	unlocked bool
	password string
	db       string // share a database (replicas)
	report   bool   // also load the sync-report example module
	todo     bool   // also load the todo example module
	// ssrfGuard keeps allow_internal_urls off.
	ssrfGuard bool
	// pluginEnv is added to the plugin's environment (host.Config.PluginEnv).
	pluginEnv []string
}

// startSite runs a host app whose Sync module uses the repository's module.yaml
// with the plugin built for the tests (with the race detector: a race it reports
// fails the test).
func startSite(t *testing.T, o siteOptions) *site {
	t.Helper()
	dir := t.TempDir()
	manifest, err := os.ReadFile("../../module.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := strings.Replace(string(manifest), "executable: bin/fiberkit-sync", "executable: "+testsupport.Binary(t, pluginPackage), 1)
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
		r := strings.Replace(string(rm), "executable: ../../../bin/sync-report", "executable: "+testsupport.Binary(t, reportPackage), 1)
		if err := os.WriteFile(filepath.Join(rdir, "module.yaml"), []byte(r), 0o644); err != nil {
			t.Fatal(err)
		}
		manifests = append(manifests, filepath.Join(rdir, "module.yaml"))
	}
	if o.todo {
		tm, err := os.ReadFile("../../examples/plugins/todo/module.yaml")
		if err != nil {
			t.Fatal(err)
		}
		tdir := filepath.Join(dir, "todo")
		_ = os.MkdirAll(tdir, 0o755)
		r := strings.Replace(string(tm), "executable: ../../../bin/todo", "executable: "+testsupport.Binary(t, todoPackage), 1)
		if err := os.WriteFile(filepath.Join(tdir, "module.yaml"), []byte(r), 0o644); err != nil {
			t.Fatal(err)
		}
		manifests = append(manifests, filepath.Join(tdir, "module.yaml"))
	}
	if o.mode == "" {
		o.mode = "auto_accept"
	}
	cfg := filepath.Join(dir, "fiberkit.yaml")
	// Both sites are on 127.0.0.1: they must be allowed to pull from internal URLs.
	enabled := "    enabled: true\n"
	if o.unlocked {
		enabled = ""
	}
	body := fmt.Sprintf("modules:\n  sync:\n%s    settings:\n      allow_internal_urls: %v\n", enabled, !o.ssrfGuard)
	if !o.unlocked {
		body += "      incoming_mode: " + o.mode + "\n"
	}
	if o.password != "" {
		body += "      incoming_password: " + o.password + "\n"
	}
	if o.report {
		body += "  sync-report:\n    enabled: true\n"
	}
	if o.todo {
		body += "  todo:\n    enabled: true\n"
	}
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := testsupport.StartSite(t, func(url string) host.Config {
		return host.Config{
			DatabaseURL: o.db, ConfigFile: cfg, Manifests: manifests,
			InsecureDevAdmin: true, PublicURL: url, HealthInterval: 200 * time.Millisecond, PluginEnv: o.pluginEnv,
		}
	})
	s := &site{kit: ts.Kit, url: ts.URL, pool: testsupport.Pool(t, ts.DB), db: ts.DB, cfg: cfg, app: ts.App, logs: ts.Logs}
	if o.unlocked {
		if err := s.kit.SetEnabled(context.Background(), "sync", true, "test"); err != nil {
			t.Fatal(err)
		}
	}
	s.waitState(t, host.StateRunning)
	return s
}

// waitState waits up to 15 s for the Sync module to reach state want.
func (s *site) waitState(t *testing.T, want host.State) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, _ := s.kit.Module("sync")
		if st.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sync module %s: %s", st.State, st.LastError)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// seeded starts a site whose database holds the sample data.
func seeded(t *testing.T, o siteOptions) *site {
	t.Helper()
	s := startSite(t, o)
	if err := sample.Seed(context.Background(), s.db); err != nil {
		t.Fatal(err)
	}
	return s
}

// bigSender starts a site with a table "big" of 60 000 rows, long enough to act
// while it is being transferred.
func bigSender(t *testing.T) *site {
	t.Helper()
	a := startSite(t, siteOptions{})
	a.exec(t, `CREATE TABLE big (id bigint PRIMARY KEY, v text, n numeric(12,2));
		INSERT INTO big SELECT i, md5(i::text), i / 7.0 FROM generate_series(1, 60000) i`)
	return a
}

// sameData fails unless both sites hold the same sample data.
func sameData(t *testing.T, a, b *site) {
	t.Helper()
	for _, tbl := range sample.Tables() {
		if ca, cb := a.checksum(t, tbl[0], tbl[1]), b.checksum(t, tbl[0], tbl[1]); ca != cb {
			t.Fatalf("%s differs between the sites", tbl[0])
		}
	}
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

// newCode creates a session on the site and returns it with its code.
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

// codeValid asks the site whether code may still connect.
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

func (s *site) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	testsupport.Exec(t, s.pool, sql, args...)
}

// checksum is the md5 of a table's COPY output in key order.
func (s *site) checksum(t *testing.T, table, order string) string {
	t.Helper()
	return testsupport.Checksum(t, s.pool, table, order)
}

// disableSync turns Sync off in the site's config file and waits for the host to
// see it.
func (s *site) disableSync(t *testing.T) {
	t.Helper()
	cfg, _ := os.ReadFile(s.cfg)
	if err := os.WriteFile(s.cfg, []byte(strings.Replace(string(cfg), "enabled: true\n    settings", "enabled: false\n    settings", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for st, _ := s.kit.Module("sync"); st.Enabled; st, _ = s.kit.Module("sync") {
		if time.Now().After(deadline) {
			t.Fatal("sync still enabled")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// connect opens a client on s with a fresh code.
func (s *site) connect(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.Connect(context.Background(), s.url, s.newCode(t).Code, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sameTable fails unless a and b hold the same rows in table (ordered by order);
// when says at which point.
func sameTable(t *testing.T, a, b *site, table, order, when string) {
	t.Helper()
	if a.checksum(t, table, order) != b.checksum(t, table, order) {
		t.Fatal("checksums differ " + when)
	}
}
