package host_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/host/settings"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/sdk"
)

func pluginSettings(t *testing.T, s *site, id string) (int64, map[string]string) {
	t.Helper()
	code, body := testsupport.Get(t, s.url+"/fiberkit/"+id+"/settings")
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

// settingValue is a module's stored value of key, as the settings store has it.
func settingValue(t *testing.T, s *site, id, key string) settingsValue {
	t.Helper()
	snap, err := s.kit.Settings().Snapshot(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := snap.Get(key)
	return settingsValue{Value: v.Value, IsSet: v.IsSet, Locked: v.Locked}
}

type settingsValue struct {
	Value         string
	IsSet, Locked bool
}

func TestSettingsChangeReachesPlugin(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	rev0, vals := pluginSettings(t, s, "tm")
	if vals["greeting"] != "hi" || vals["mode"] != "a" || vals["enabled"] != "true" {
		t.Fatalf("initial settings %v", vals)
	}
	if err := s.kit.Settings().Set(context.Background(), "tm", map[string]string{"greeting": "hej", "mode": "b"}, "test"); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, "new settings in plugin", func() bool {
		rev, v := pluginSettings(t, s, "tm")
		return v["greeting"] == "hej" && v["mode"] == "b" && rev > rev0
	})
	err := s.kit.Settings().Set(context.Background(), "tm", map[string]string{"mode": "zzz"}, "test")
	var verr *settings.ValidationError
	if !errors.As(err, &verr) || verr.Fields["mode"] == "" {
		t.Fatalf("bad enum value: %v, want a validation error on mode", err)
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
	testsupport.Eventually(t, "mode b", func() bool { _, v := pluginSettings(t, s, "tm"); return v["mode"] == "b" })

	// Reload: the file turns the module off.
	writeConfig(t, cfg, "modules:\n  tm:\n    enabled: false\n")
	s.waitState(t, "tm", host.StateDisabled)
	if code, _ := testsupport.Get(t, s.url+"/fiberkit/tm/ping"); code != 404 {
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
	testsupport.Eventually(t, "password hash in plugin", func() bool {
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

// A secret set through every way in — the admin settings form (after a refused
// submission that re-renders the form), a ${ENV} value of the config file, and the
// module's own SetSettings through the SDK — reaches the module as a hash that
// verifies it, and its plain value is nowhere: not in any table, the logs, the admin
// pages, the status JSON, nor the responses of the module's operations and routes.
func TestSecretFromFormConfigFileAndSDKNeverAppearsInPlainText(t *testing.T) {
	const (
		formPlain = "Form-Secret-7f3a9c"
		envPlain  = "Env-Secret-2b8d4e"
		sdkPlain  = "Sdk-Secret-91c5f0"
	)
	plains := []string{formPlain, envPlain, sdkPlain}
	cfg := filepath.Join(t.TempDir(), "fiberkit.yaml")
	t.Setenv("TM2_PASSWORD", envPlain)
	writeConfig(t, cfg, "modules:\n  tm2:\n    settings:\n      password: ${TM2_PASSWORD}\n")
	s := startSite(t, kitOptions{ids: []string{"tm", "tm2"}, enabled: []string{"tm", "tm2"}, configFile: cfg})
	ctx := context.Background()
	var seen []string // every page and response, scanned at the end
	c := adminClient(t)
	adminPage := func(method, path string, form url.Values) (int, string) {
		t.Helper()
		code, body := adminDo(t, c, method, s.url+path, form)
		seen = append(seen, path+": "+body)
		return code, body
	}
	pluginHash := func(id string) string {
		t.Helper()
		code, body := testsupport.Get(t, s.url+"/fiberkit/"+id+"/settings")
		seen = append(seen, "/fiberkit/"+id+"/settings: "+body)
		if code != 200 {
			t.Fatalf("plugin settings of %s: %d", id, code)
		}
		var v struct{ Settings map[string]string }
		decodeJSON(t, body, &v)
		return v.Settings["password"]
	}
	verifies := func(id, plain string) func() bool {
		return func() bool {
			h := pluginHash(id)
			return h != "" && sdk.Settings(map[string]string{"password": h}).SecretMatches("password", plain)
		}
	}

	// 1. The admin form, first with an invalid value in another field: refused as a
	// whole, the page drawn again with the error but without the secret typed in.
	_, page := adminPage("GET", "/admin/fiberkit/modules/tm", nil)
	tok := csrfInput.FindStringSubmatch(page)[1]
	code, page := adminPage("POST", "/admin/fiberkit/modules/tm", url.Values{"_csrf": {tok}, "password": {formPlain}, "mode": {"not-an-option"}, "greeting": {"typed"}, "enabled": {"true"}})
	if code != http.StatusUnprocessableEntity || !regexp.MustCompile(`(?s)id="field-mode".*?class="field-error"`).MatchString(page) {
		t.Fatalf("form with an invalid mode: %d, or no error next to the mode field", code)
	}
	if !strings.Contains(page, `value="typed"`) {
		t.Fatalf("the re-drawn form lost the other values typed in (it should keep them, not the secret)")
	}
	if strings.Contains(page, formPlain) {
		t.Fatalf("the re-drawn form echoes the secret")
	}
	if v := settingValue(t, s, "tm", "password"); v.IsSet {
		t.Fatalf("a refused form still stored the secret")
	}
	// Then valid: saved, and the module gets a hash of it.
	code, _ = adminPage("POST", "/admin/fiberkit/modules/tm", url.Values{"_csrf": {tok}, "password": {formPlain}, "mode": {"b"}, "greeting": {"typed"}, "enabled": {"true"}})
	if code != http.StatusSeeOther {
		t.Fatalf("saving the secret through the form: %d", code)
	}
	testsupport.Eventually(t, "the module gets the form's secret as a verifying hash", verifies("tm", formPlain))
	if h := settingValue(t, s, "tm", "password").Value; h == "" || h == formPlain {
		t.Fatalf("stored form secret %q", h)
	}
	_, page = adminPage("GET", "/admin/fiberkit/modules/tm", nil)
	if !strings.Contains(page, "set — leave empty to keep") {
		t.Fatalf("the settings page does not say the secret is set")
	}

	// 2. The config file's ${TM2_PASSWORD}: locked, hashed in memory, never stored.
	testsupport.Eventually(t, "tm2 gets the config file's secret as a verifying hash", verifies("tm2", envPlain))
	if v := settingValue(t, s, "tm2", "password"); !v.Locked || v.Value == envPlain {
		t.Fatalf("config-file secret: locked %v, value is the plain one: %v", v.Locked, v.Value == envPlain)
	}
	adminPage("GET", "/admin/fiberkit/modules/tm2", nil)

	// 3. The module's own SetSettings, through an operation.
	out, err := s.kit.Call(ctx, "tester", "tm", "set", []byte(`{"password":"`+sdkPlain+`"}`))
	if err != nil || string(out) != "true" {
		t.Fatalf("SDK SetSettings of the secret: %s %v", out, err)
	}
	seen = append(seen, "op set: "+string(out))
	testsupport.Eventually(t, "the module gets the SDK's secret as a verifying hash", verifies("tm", sdkPlain))
	if verifies("tm", formPlain)() {
		t.Fatalf("the old form secret still verifies after the SDK replaced it")
	}

	// Responses of the modules' operations, and what the plugins' environments hold
	// (the host's environment has the config file's variable; plugins must not).
	for _, id := range []string{"tm", "tm2"} {
		for _, op := range []string{"env", "whoami"} {
			out, err := s.kit.Call(ctx, "tester", id, op, nil)
			if err != nil {
				t.Fatalf("%s.%s: %v", id, op, err)
			}
			seen = append(seen, id+" op "+op+": "+string(out))
		}
	}
	adminPage("GET", "/admin/fiberkit/", nil)
	adminPage("GET", "/admin/fiberkit/modules.json", nil)
	adminPage("GET", "/admin/fiberkit/modules/tm", nil)
	adminPage("GET", "/admin/fiberkit/tm/admin-page", nil)

	// Now scan everything.
	dumps := tableDumps(t, s.db)
	for _, want := range []string{"fiberkit_settings", "fiberkit_settings_revisions", "fiberkit_audit", "fiberkit_csrf"} {
		if _, ok := dumps[want]; !ok {
			t.Fatalf("table %s not found among %v", want, keys(dumps))
		}
	}
	if !strings.Contains(dumps["fiberkit_settings"], "password") {
		t.Fatalf("no stored password row to scan: %s", dumps["fiberkit_settings"])
	}
	logs := s.logs.String()
	for _, plain := range plains {
		for tbl, dump := range dumps {
			if strings.Contains(dump, plain) {
				t.Errorf("table %s holds the plain secret %q", tbl, plain)
			}
		}
		if strings.Contains(logs, plain) {
			t.Errorf("the logs hold the plain secret %q", plain)
		}
		for _, r := range seen {
			if strings.Contains(r, plain) {
				name, _, _ := strings.Cut(r, ": ")
				t.Errorf("%s shows the plain secret %q", name, plain)
			}
		}
	}
	// The hash is for the module, not for the admin pages either.
	hash := pluginHash("tm")
	for _, r := range seen {
		if strings.HasPrefix(r, "/admin/") && strings.Contains(r, hash) {
			name, _, _ := strings.Cut(r, ": ")
			t.Errorf("%s shows the secret's hash", name)
		}
	}
}
