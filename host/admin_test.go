package host_test

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/host/browsertest"
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
	if code, _ := get(t, s.url+"/admin/fiberkit/"); code != http.StatusUnauthorized {
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
	if code, _ := get(t, s.url+"/admin/fiberkit/tm/admin-page"); code != http.StatusUnauthorized {
		t.Fatalf("module admin route without auth: %d", code)
	}
	code, body := adminDo(t, c, "GET", s.url+"/admin/fiberkit/tm/admin-page", nil)
	if code != 200 || !strings.Contains(body, `"user":"admin"`) || !strings.Contains(body, `"admin":true`) {
		t.Fatalf("module admin route: %d %s", code, body)
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
	eventually(t, "plugin sees the new greeting", func() bool {
		_, v := pluginSettings(t, s, "tm")
		return v["greeting"] == "bonjour" && v["mode"] == "b"
	})
}

func TestCSRFTokenWorksAcrossReplicas(t *testing.T) {
	a := startSite(t, kitOptions{})
	b := startSite(t, kitOptions{db: a.db}) // a second replica on the same database
	c := adminClient(t)                     // cookies are per host, so both replicas see them
	_, page := adminDo(t, c, "GET", a.url+"/admin/fiberkit/", nil)
	tok := csrfInput.FindStringSubmatch(page)[1]
	code, _ := adminDo(t, c, "POST", b.url+"/admin/fiberkit/modules/tm/toggle", url.Values{"enabled": {"true"}, "_csrf": {tok}})
	if code != http.StatusSeeOther {
		t.Fatalf("a token from replica A posted to replica B: %d", code)
	}
	b.waitState(t, "tm", host.StateRunning)
}
