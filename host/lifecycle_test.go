package host_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/host/settings"
	"github.com/fiberkit/fiberkit/sdk"
)

func pluginSettings(t *testing.T, s *site, id string) (int64, map[string]string) {
	t.Helper()
	code, body := get(t, s.url+"/fiberkit/"+id+"/settings")
	if code != 200 {
		t.Fatalf("GET settings: %d %s", code, body)
	}
	var v struct {
		Revision int64             `json:"revision"`
		Settings map[string]string `json:"settings"`
	}
	decodeJSON(t, body, &v)
	return v.Revision, v.Settings
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func processAlive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

func TestSettingsChangeReachesPlugin(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	rev0, vals := pluginSettings(t, s, "tm")
	if vals["greeting"] != "hi" || vals["mode"] != "a" || vals["enabled"] != "true" {
		t.Fatalf("initial settings %v", vals)
	}
	if err := s.kit.Settings().Set(context.Background(), "tm", map[string]string{"greeting": "hej", "mode": "b"}, "test"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "new settings in plugin", func() bool {
		rev, v := pluginSettings(t, s, "tm")
		return v["greeting"] == "hej" && v["mode"] == "b" && rev > rev0
	})
	err := s.kit.Settings().Set(context.Background(), "tm", map[string]string{"mode": "zzz"}, "test")
	var verr *settings.ValidationError
	if !errors.As(err, &verr) || verr.Fields["mode"] == "" {
		t.Fatalf("bad enum value: %v, want a validation error on mode", err)
	}
}

func TestDisableStopsProcessAndRoutesThenEnableBringsThemBack(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	st := s.waitState(t, "tm", host.StateRunning)
	pid := st.PID
	if !processAlive(pid) {
		t.Fatalf("plugin pid %d not alive", pid)
	}
	ctx := context.Background()
	if err := s.kit.SetEnabled(ctx, "tm", false, "test"); err != nil {
		t.Fatal(err)
	}
	s.waitState(t, "tm", host.StateDisabled)
	eventually(t, "plugin process gone", func() bool { return !processAlive(pid) })
	if code, _ := get(t, s.url+"/fiberkit/tm/ping"); code != 404 {
		t.Fatalf("disabled module route answered %d, want 404", code)
	}
	if err := s.kit.SetEnabled(ctx, "tm", true, "test"); err != nil {
		t.Fatal(err)
	}
	st = s.waitState(t, "tm", host.StateRunning)
	if st.PID == pid || !processAlive(st.PID) {
		t.Fatalf("re-enabled module has pid %d (old %d)", st.PID, pid)
	}
	if code, body := get(t, s.url+"/fiberkit/tm/ping"); code != 200 || body != "pong" {
		t.Fatalf("after re-enable: %d %q", code, body)
	}
}

func TestKilledPluginIsRestarted(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	st := s.waitState(t, "tm", host.StateRunning)
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "restart", func() bool {
		now, _ := s.kit.Module("tm")
		return now.State == host.StateRunning && now.PID != st.PID && now.Restarts == st.Restarts+1
	})
	if code, body := get(t, s.url+"/fiberkit/tm/ping"); code != 200 || body != "pong" {
		t.Fatalf("after restart: %d %q", code, body)
	}
}

func writeConfig(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestConfigFileLocksValuesAndTogglesEnabledOnReload(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "fiberkit.yaml")
	t.Setenv("TM_GREETING", "from-env")
	writeConfig(t, cfg, "modules:\n  tm:\n    enabled: true\n    settings:\n      greeting: ${TM_GREETING}\n")
	s := startSite(t, kitOptions{configFile: cfg})
	s.waitState(t, "tm", host.StateRunning)
	_, vals := pluginSettings(t, s, "tm")
	if vals["greeting"] != "from-env" {
		t.Fatalf("greeting = %q, want the config file's ${TM_GREETING}", vals["greeting"])
	}
	ctx := context.Background()
	if err := s.kit.Settings().Set(ctx, "tm", map[string]string{"greeting": "changed"}, "test"); !errors.Is(err, settings.ErrLocked) {
		t.Fatalf("setting a locked value: %v, want ErrLocked", err)
	}
	// Through the SDK (the plugin setting its own settings via the host).
	_, err := s.kit.Call(ctx, "tester", "tm", "set", []byte(`{"greeting":"changed"}`))
	if !errors.Is(err, sdk.ErrLocked) {
		t.Fatalf("SDK set of a locked value: %v, want ErrLocked", err)
	}
	// An unlocked value still changes through the SDK.
	if _, err := s.kit.Call(ctx, "tester", "tm", "set", []byte(`{"mode":"b"}`)); err != nil {
		t.Fatalf("SDK set of an unlocked value: %v", err)
	}
	eventually(t, "mode b", func() bool { _, v := pluginSettings(t, s, "tm"); return v["mode"] == "b" })

	// Reload: the file turns the module off.
	writeConfig(t, cfg, "modules:\n  tm:\n    enabled: false\n")
	s.waitState(t, "tm", host.StateDisabled)
	if code, _ := get(t, s.url+"/fiberkit/tm/ping"); code != 404 {
		t.Fatalf("module disabled by config still answers %d", code)
	}
	st, _ := s.kit.Module("tm")
	if !st.EnabledLocked {
		t.Fatalf("enabled flag from the config file is not shown as locked")
	}
	if err := s.kit.SetEnabled(ctx, "tm", true, "test"); !errors.Is(err, settings.ErrLocked) {
		t.Fatalf("enabling a module the config file disables: %v, want ErrLocked", err)
	}
	// And back on by SIGHUP-free reload.
	writeConfig(t, cfg, "modules:\n  tm:\n    enabled: true\n")
	s.waitState(t, "tm", host.StateRunning)
}

func TestSecretIsNeverStoredOrShownInPlainText(t *testing.T) {
	const plain = "Sup3r-Secret-Passw0rd"
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	ctx := context.Background()
	if err := s.kit.Settings().Set(ctx, "tm", map[string]string{"password": plain}, "test"); err != nil {
		t.Fatal(err)
	}
	var hash string
	eventually(t, "password hash in plugin", func() bool {
		_, v := pluginSettings(t, s, "tm")
		hash = v["password"]
		return hash != ""
	})
	if strings.Contains(hash, plain) {
		t.Fatalf("plugin received the plain password")
	}
	// The plugin can verify a candidate against what it got.
	if !sdk.Settings(map[string]string{"password": hash}).SecretMatches("password", plain) {
		t.Fatalf("the hash the plugin got does not verify the password")
	}
	// Every row of every table, as text.
	conn, err := pgx.Connect(ctx, s.db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT quote_ident(table_schema)||'.'||quote_ident(table_name) FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog','information_schema')`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) == 0 {
		t.Fatal("no tables found")
	}
	for _, tbl := range tables {
		var dump string
		if err := conn.QueryRow(ctx, "SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM "+tbl+" t").Scan(&dump); err != nil {
			t.Fatalf("dump %s: %v", tbl, err)
		}
		if strings.Contains(dump, plain) {
			t.Fatalf("table %s holds the plain secret", tbl)
		}
	}
	if strings.Contains(s.logs.String(), plain) {
		t.Fatalf("logs hold the plain secret")
	}
	_, html := adminGet(t, s, "/admin/fiberkit/modules/tm")
	if strings.Contains(html, plain) || strings.Contains(html, hash) {
		t.Fatalf("admin page shows the secret or its hash")
	}
	_, js := adminGet(t, s, "/admin/fiberkit/modules.json")
	if strings.Contains(js, plain) {
		t.Fatalf("status JSON shows the secret")
	}
}

func TestPluginCallsAnotherThroughTheHost(t *testing.T) {
	s := startSite(t, kitOptions{ids: []string{"a", "b", "off"}, enabled: []string{"a", "b"}})
	ctx := context.Background()
	out, err := s.kit.Call(ctx, "tester", "a", "call", []byte(`{"Target":"b","Op":"whoami"}`))
	if err != nil {
		t.Fatal(err)
	}
	var seen sdk.Caller
	if err := json.Unmarshal(out, &seen); err != nil {
		t.Fatalf("decode %s: %v", out, err)
	}
	if seen.Plugin != "a" || seen.User != "" {
		t.Fatalf("b saw caller %+v, want plugin a", seen)
	}
	_, err = s.kit.Call(ctx, "tester", "a", "call", []byte(`{"Target":"off","Op":"whoami"}`))
	if !errors.Is(err, sdk.ErrModuleDisabled) {
		t.Fatalf("calling a disabled module: %v, want ErrModuleDisabled", err)
	}
	_, err = s.kit.Call(ctx, "tester", "a", "call", []byte(`{"Target":"nope","Op":"whoami"}`))
	if !errors.Is(err, sdk.ErrUnknownModule) {
		t.Fatalf("calling an unknown module: %v, want ErrUnknownModule", err)
	}
	_, err = s.kit.Call(ctx, "tester", "b", "no-such-op", nil)
	if !errors.Is(err, sdk.ErrUnknownOperation) {
		t.Fatalf("unknown operation: %v, want ErrUnknownOperation", err)
	}
	// The host app calling directly is seen as its user.
	out, err = s.kit.Call(ctx, "alice", "b", "whoami", nil)
	if err != nil {
		t.Fatal(err)
	}
	seen = sdk.Caller{}
	_ = json.Unmarshal(out, &seen)
	if seen.User != "alice" || seen.Plugin != "" {
		t.Fatalf("direct call seen as %+v", seen)
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
