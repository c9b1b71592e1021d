package host_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/sdk"
)

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

// Forged POSTs — no token, a wrong one, a valid token of another session, a made-up
// token in both cookie and field, the right token without its cookie — are refused
// with 403 on the kit's settings form and on a module's admin route, and change
// nothing in the database. The same requests with the session's own token do change
// the settings, so the refusals are what kept them unchanged.
func TestCSRFOnSettingsFormAndModuleAdminRoute(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	a, b := adminClient(t), adminClient(t)
	token := func(c *http.Client) string {
		t.Helper()
		code, page := adminDo(t, c, "GET", s.url+"/admin/fiberkit/modules/tm", nil)
		m := csrfInput.FindStringSubmatch(page)
		if code != 200 || m == nil {
			t.Fatalf("settings page: %d, token found %v", code, m != nil)
		}
		return m[1]
	}
	tokA, tokB := token(a), token(b)
	if tokA == tokB {
		t.Fatal("two sessions got the same CSRF token")
	}
	settingsURL := s.url + "/admin/fiberkit/modules/tm"
	moduleURL := s.url + "/admin/fiberkit/tm/admin-set"
	u, _ := url.Parse(s.url)

	before := tableDumps(t, s.db, "fiberkit_csrf")
	if _, ok := before["fiberkit_settings"]; !ok {
		t.Fatalf("no fiberkit_settings table among %v", keys(before))
	}
	type forgery struct {
		name   string
		client func() *http.Client
		form   url.Values
		header string // X-Csrf-Token
	}
	change := func(tok string) url.Values {
		v := url.Values{"enabled": {"true"}, "greeting": {"forged"}, "mode": {"b"}}
		if tok != "" {
			v.Set("_csrf", tok)
		}
		return v
	}
	forgeries := []forgery{
		{"no token", func() *http.Client { return a }, change(""), ""},
		{"wrong token", func() *http.Client { return a }, change("forged-token"), ""},
		{"wrong token in the header", func() *http.Client { return a }, change(""), "forged-token"},
		{"another session's token", func() *http.Client { return a }, change(tokB), ""},
		{"another session's token in the header", func() *http.Client { return a }, change(""), tokB},
		{"made-up token in cookie and field", func() *http.Client {
			c := adminClient(t)
			c.Jar.SetCookies(u, []*http.Cookie{{Name: "fiberkit_csrf", Value: "made-up-token", Path: "/"}})
			return c
		}, change("made-up-token"), ""},
		{"right token without its cookie", func() *http.Client { return adminClient(t) }, change(tokA), ""},
	}
	for _, target := range []string{settingsURL, moduleURL} {
		for _, f := range forgeries {
			c := f.client()
			req, _ := http.NewRequest("POST", target, strings.NewReader(f.form.Encode()))
			req.Header.Set("Authorization", adminAuthHeader)
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if f.header != "" {
				req.Header.Set("X-Csrf-Token", f.header)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("%s to %s: %v", f.name, target, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s to %s: %d, want 403", f.name, target, resp.StatusCode)
			}
		}
	}
	after := tableDumps(t, s.db, "fiberkit_csrf")
	for tbl, dump := range before {
		if after[tbl] != dump {
			t.Errorf("table %s changed after forged POSTs:\nbefore %s\nafter  %s", tbl, dump, after[tbl])
		}
	}
	if v := settingValue(t, s, "tm", "greeting"); v.Value != "hi" {
		t.Fatalf("greeting became %q after forged POSTs", v.Value)
	}

	// The session's own token: the settings form saves…
	code, _ := adminDo(t, a, "POST", settingsURL, url.Values{"_csrf": {tokA}, "enabled": {"true"}, "greeting": {"from-form"}, "mode": {"a"}})
	if code != http.StatusSeeOther || settingValue(t, s, "tm", "greeting").Value != "from-form" {
		t.Fatalf("settings form with the right token: %d, greeting %q", code, settingValue(t, s, "tm", "greeting").Value)
	}
	// …and so does the module's admin route (the module sets its own settings).
	code, body := adminDo(t, a, "POST", moduleURL, url.Values{"_csrf": {tokA}, "greeting": {"from-module"}})
	if code != 200 || settingValue(t, s, "tm", "greeting").Value != "from-module" {
		t.Fatalf("module admin route with the right token: %d %s, greeting %q", code, body, settingValue(t, s, "tm", "greeting").Value)
	}
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
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
		code, body := get(t, s.url+"/fiberkit/"+id+"/settings")
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
	eventually(t, "the module gets the form's secret as a verifying hash", verifies("tm", formPlain))
	if h := settingValue(t, s, "tm", "password").Value; h == "" || h == formPlain {
		t.Fatalf("stored form secret %q", h)
	}
	_, page = adminPage("GET", "/admin/fiberkit/modules/tm", nil)
	if !strings.Contains(page, "set — leave empty to keep") {
		t.Fatalf("the settings page does not say the secret is set")
	}

	// 2. The config file's ${TM2_PASSWORD}: locked, hashed in memory, never stored.
	eventually(t, "tm2 gets the config file's secret as a verifying hash", verifies("tm2", envPlain))
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
	eventually(t, "the module gets the SDK's secret as a verifying hash", verifies("tm", sdkPlain))
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

// A plugin killed with SIGKILL is restarted, and the admin pages show it: the status
// JSON that admin.js polls and the module list go through "restarting" with the
// restart counted, then back to "running" with "restarted 1×" and the reason.
func TestKilledPluginRestartShownInAdmin(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	st := s.waitState(t, "tm", host.StateRunning)
	c := adminClient(t)
	type row struct {
		ID       string `json:"id"`
		State    string `json:"state"`
		Restarts int    `json:"restarts"`
		Error    string `json:"error"`
	}
	statusJSON := func() row {
		t.Helper()
		code, body := adminDo(t, c, "GET", s.url+"/admin/fiberkit/modules.json", nil)
		if code != 200 {
			t.Fatalf("modules.json: %d %s", code, body)
		}
		var rows []row
		decodeJSON(t, body, &rows)
		for _, r := range rows {
			if r.ID == "tm" {
				return r
			}
		}
		t.Fatalf("tm not in modules.json: %s", body)
		return row{}
	}
	rowHTML := regexp.MustCompile(`(?s)<tr id="module-tm".*?</tr>`)
	listRow := func() string {
		t.Helper()
		code, page := adminDo(t, c, "GET", s.url+"/admin/fiberkit/", nil)
		if code != 200 {
			t.Fatalf("module list: %d", code)
		}
		return rowHTML.FindString(page)
	}
	if r := statusJSON(); r.State != "running" || r.Restarts != 0 {
		t.Fatalf("before the kill: %+v", r)
	}
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var sawJSON, sawHTML bool
	var during row
	eventually(t, "running again after the kill", func() bool {
		r := statusJSON()
		if r.State == "restarting" {
			if !sawJSON {
				during = r
			}
			sawJSON = true
			if strings.Contains(listRow(), `class="state state-restarting" data-field="state">restarting<`) {
				sawHTML = true
			}
		}
		now, _ := s.kit.Module("tm")
		return r.State == "running" && now.PID != st.PID && now.Restarts == st.Restarts+1
	})
	if !sawJSON || !sawHTML {
		t.Errorf("the restarting state was not shown: in modules.json %v, in the module list %v", sawJSON, sawHTML)
	}
	if sawJSON && (during.Restarts != 1 || during.Error == "") {
		t.Errorf("while restarting, modules.json said %+v, want 1 restart and the reason", during)
	}
	r := statusJSON()
	if r.State != "running" || r.Restarts != 1 || r.Error == "" {
		t.Fatalf("after the restart, modules.json says %+v, want running, 1 restart and the reason", r)
	}
	listed := listRow()
	if !strings.Contains(listed, `data-field="restarts">restarted 1×</span>`) || !strings.Contains(listed, `class="state state-running"`) {
		t.Fatalf("module list after the restart does not show it running and restarted once:\n%s", listed)
	}
	if !strings.Contains(listed, `data-field="error">`+html.EscapeString(r.Error)+`</small>`) {
		t.Fatalf("module list does not show the reason %q:\n%s", r.Error, listed)
	}
	t.Logf("restart reason shown: %q", r.Error)
	if code, body := get(t, s.url+"/fiberkit/tm/ping"); code != 200 || body != "pong" {
		t.Fatalf("after the restart: %d %q", code, body)
	}
}
