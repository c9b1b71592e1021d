package host_test

import (
	"context"
	"encoding/base64"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/host/browsertest"
	"github.com/fiberkit/fiberkit/internal/testsupport"
)

const adminAuthHeader = "Basic " + "YWRtaW46c2VjcmV0LWFkbWluLXB3" // admin:secret-admin-pw

func init() {
	if base64.StdEncoding.EncodeToString([]byte("admin:secret-admin-pw")) != strings.TrimPrefix(adminAuthHeader, "Basic ") {
		panic("adminAuthHeader out of date")
	}
}

// adminClient is an HTTP client signed in as the admin, keeping cookies (CSRF).
func adminClient(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func adminDo(t *testing.T, c *http.Client, method, u string, form url.Values) (int, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, u, body)
	req.Header.Set("Authorization", adminAuthHeader)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func adminGet(t *testing.T, s *site, path string) (int, string) {
	return adminDo(t, adminClient(t), "GET", s.url+path, nil)
}

var csrfInput = regexp.MustCompile(`name="_csrf" value="([^"]+)"`)

func TestAdminRequiresAuthAndCSRF(t *testing.T) {
	s := startSite(t, kitOptions{})
	// No credentials.
	if code, _ := testsupport.Get(t, s.url+"/admin/fiberkit/"); code != http.StatusUnauthorized {
		t.Fatalf("admin page without auth: %d", code)
	}
	c := adminClient(t)
	code, page := adminDo(t, c, "GET", s.url+"/admin/fiberkit/", nil)
	if code != 200 || !strings.Contains(page, "Test module tm") {
		t.Fatalf("admin page: %d", code)
	}
	m := csrfInput.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token in the form")
	}
	// A forged POST (no token, or a wrong one) is refused and changes nothing.
	for _, tok := range []string{"", "forged-token"} {
		form := url.Values{"enabled": {"true"}}
		if tok != "" {
			form.Set("_csrf", tok)
		}
		code, _ = adminDo(t, c, "POST", s.url+"/admin/fiberkit/modules/tm/toggle", form)
		if code != http.StatusForbidden {
			t.Fatalf("forged toggle (token %q): %d, want 403", tok, code)
		}
	}
	if st, _ := s.kit.Module("tm"); st.Enabled {
		t.Fatal("a forged POST enabled the module")
	}
	// The real token works.
	code, _ = adminDo(t, c, "POST", s.url+"/admin/fiberkit/modules/tm/toggle", url.Values{"enabled": {"true"}, "_csrf": {m[1]}})
	if code != http.StatusSeeOther {
		t.Fatalf("toggle with token: %d", code)
	}
	s.waitState(t, "tm", host.StateRunning)

	// A module's admin route sits behind the same auth, and the module sees the user.
	if code, _ := testsupport.Get(t, s.url+"/admin/fiberkit/tm/admin-page"); code != http.StatusUnauthorized {
		t.Fatalf("module admin route without auth: %d", code)
	}
	code, body := adminDo(t, c, "GET", s.url+"/admin/fiberkit/tm/admin-page", nil)
	if code != 200 || !strings.Contains(body, `"user":"admin"`) || !strings.Contains(body, `"admin":true`) {
		t.Fatalf("module admin route: %d %s", code, body)
	}
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

func TestAdminSettingsValidationAndLockedFields(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "fiberkit.yaml")
	writeConfig(t, cfg, "modules:\n  tm:\n    settings:\n      greeting: locked-hello\n")
	s := startSite(t, kitOptions{configFile: cfg})
	c := adminClient(t)
	code, page := adminDo(t, c, "GET", s.url+"/admin/fiberkit/modules/tm", nil)
	if code != 200 {
		t.Fatalf("settings page: %d", code)
	}
	if !regexp.MustCompile(`name="greeting" value="locked-hello" readonly`).MatchString(page) || !strings.Contains(page, "Set by the config file") {
		t.Fatalf("locked field not shown read-only")
	}
	tok := csrfInput.FindStringSubmatch(page)[1]
	// A posted change to the locked field is refused, nothing else is saved.
	code, page = adminDo(t, c, "POST", s.url+"/admin/fiberkit/modules/tm", url.Values{"_csrf": {tok}, "greeting": {"sneaky"}, "mode": {"b"}})
	if code != http.StatusUnprocessableEntity || !strings.Contains(page, "config file") {
		t.Fatalf("posting a locked field: %d", code)
	}
	snap, err := s.kit.Settings().Snapshot(context.Background(), "tm")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := snap.Get("greeting"); v.Value != "locked-hello" {
		t.Fatalf("locked greeting became %q", v.Value)
	}
	if v, _ := snap.Get("mode"); v.Value != "a" {
		t.Fatalf("a refused form still saved mode = %q", v.Value)
	}
	// An invalid enum value gets its message next to the field.
	code, page = adminDo(t, c, "POST", s.url+"/admin/fiberkit/modules/tm", url.Values{"_csrf": {tok}, "mode": {"not-an-option"}})
	if code != http.StatusUnprocessableEntity {
		t.Fatalf("invalid enum: %d", code)
	}
	if !regexp.MustCompile(`(?s)id="field-mode".*?class="field-error"`).MatchString(page) {
		t.Fatalf("no error next to the mode field")
	}
}

func TestAdminPagesInBrowser(t *testing.T) {
	s := startSite(t, kitOptions{})
	ctx := browsertest.New(t, map[string]any{"Authorization": adminAuthHeader})
	var state string
	err := chromedp.Run(ctx,
		chromedp.Navigate(s.url+"/admin/fiberkit/"),
		chromedp.WaitVisible(`#module-tm`, chromedp.ByQuery),
		chromedp.Text(`#module-tm [data-field=state]`, &state, chromedp.ByQuery),
	)
	if err != nil {
		t.Fatal(err)
	}
	if state != "disabled" {
		t.Fatalf("initial state shown %q", state)
	}
	browsertest.Screenshot(t, ctx, "admin-modules.png")
	// Toggle on.
	err = chromedp.Run(ctx,
		chromedp.Click(`#toggle-tm`, chromedp.ByQuery),
		chromedp.WaitVisible(`#module-tm .state-running`, chromedp.ByQuery),
	)
	if err != nil {
		t.Fatalf("toggle in browser: %v", err)
	}
	s.waitState(t, "tm", host.StateRunning)
	// Save a setting.
	var flash string
	err = chromedp.Run(ctx,
		chromedp.Navigate(s.url+"/admin/fiberkit/modules/tm"),
		chromedp.WaitVisible(`#in-greeting`, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelector('#in-greeting').value = ''`, nil),
		chromedp.SendKeys(`#in-greeting`, "bonjour", chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelector('#in-mode').value = 'b'`, nil),
		chromedp.Submit(`form.settings`, chromedp.ByQuery),
		chromedp.WaitVisible(`.flash`, chromedp.ByQuery),
		chromedp.Text(`.flash`, &flash, chromedp.ByQuery),
	)
	if err != nil {
		t.Fatalf("save settings in browser: %v", err)
	}
	if flash != "Saved" {
		t.Fatalf("flash %q", flash)
	}
	browsertest.Screenshot(t, ctx, "admin-settings.png")
	testsupport.Eventually(t, "plugin sees the new greeting", func() bool {
		_, v := pluginSettings(t, s, "tm")
		return v["greeting"] == "bonjour" && v["mode"] == "b"
	})
}

// The module list stays live without a reload: the state, the restart count, the
// toggle button (label and the value it posts) and "locked by config" all follow the
// module's status.
func TestAdminModuleListLiveStatusInBrowser(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "fiberkit.yaml")
	writeConfig(t, cfg, "modules:\n  tm:\n    settings:\n      mode: a\n")
	s := startSite(t, kitOptions{configFile: cfg})
	ctx := browsertest.New(t, map[string]any{"Authorization": adminAuthHeader})
	waitFor := func(what, js string) {
		t.Helper()
		var ok bool
		if err := chromedp.Run(ctx, chromedp.Poll(js, &ok, chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil || !ok {
			var html string
			_ = chromedp.Run(ctx, chromedp.OuterHTML(`#module-tm`, &html, chromedp.ByQuery))
			t.Fatalf("page never showed %s: %v\n%s", what, err, html)
		}
	}
	if err := chromedp.Run(ctx, chromedp.Navigate(s.url+"/admin/fiberkit/"), chromedp.WaitVisible(`#toggle-tm`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitFor("the Enable button", `document.querySelector('#toggle-tm').textContent === 'Enable'`)

	// Enabled from elsewhere (code, another admin, another replica).
	if err := s.kit.SetEnabled(context.Background(), "tm", true, "test"); err != nil {
		t.Fatal(err)
	}
	waitFor("running with a Disable button", `(() => {
		const tr = document.querySelector('#module-tm');
		const b = tr.querySelector('#toggle-tm');
		return tr.querySelector('.state-running') !== null && b.textContent === 'Disable' &&
			b.getAttribute('aria-pressed') === 'true' &&
			tr.querySelector('form[data-field=toggle] input[name=enabled]').value === 'false' &&
			!tr.querySelector('[data-field=open]').hidden;
	})()`)

	// The plugin dies and is restarted.
	st := s.waitState(t, "tm", host.StateRunning)
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor("the restart count", `(() => {
		const r = document.querySelector('#module-tm [data-field=restarts]');
		return !r.hidden && r.textContent === 'restarted 1×';
	})()`)

	// The config file takes over the enabled flag.
	writeConfig(t, cfg, "modules:\n  tm:\n    enabled: false\n")
	waitFor("locked by config, without a toggle", `(() => {
		const tr = document.querySelector('#module-tm');
		const l = tr.querySelector('[data-field=locked]');
		return !l.hidden && l.textContent.includes('off') && l.textContent.includes('locked by config') &&
			tr.querySelector('form[data-field=toggle]').hidden && tr.querySelector('[data-field=open]').hidden &&
			tr.querySelector('[data-field=state]').textContent === 'disabled';
	})()`)
	browsertest.Screenshot(t, ctx, "admin-modules-locked.png")

	// And released again.
	writeConfig(t, cfg, "modules:\n  tm:\n    settings:\n      mode: a\n")
	waitFor("the toggle back", `(() => {
		const tr = document.querySelector('#module-tm');
		return tr.querySelector('[data-field=locked]').hidden && !tr.querySelector('form[data-field=toggle]').hidden;
	})()`)
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
	testsupport.Eventually(t, "running again after the kill", func() bool {
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
	if code, body := testsupport.Get(t, s.url+"/fiberkit/tm/ping"); code != 200 || body != "pong" {
		t.Fatalf("after the restart: %d %q", code, body)
	}
}
