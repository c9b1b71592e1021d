package host_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/fiberkit/fiberkit/host"
)

// twoAdmins signs in alice or bob (Basic auth) and names them in UserLocal.
func twoAdmins(c *fiber.Ctx) error {
	u, p, ok := parseBasic(c.Get(fiber.HeaderAuthorization))
	if !ok || !((u == "alice" && p == "pw-a") || (u == "bob" && p == "pw-b")) {
		return c.SendStatus(fiber.StatusUnauthorized)
	}
	c.Locals(host.UserLocal, u)
	return c.Next()
}

// as sends a request signed in as user, with the client's cookies.
func as(t *testing.T, c *http.Client, user, pass, method, u string, form url.Values, header http.Header) *http.Response {
	t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req, _ := http.NewRequest(method, u, body)
	req.SetBasicAuth(user, pass)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	resp.Body.Close()
	return resp
}

// A CSRF token belongs to the admin it was issued to: bob, signed in on a browser
// that holds alice's cookie and form (a shared machine, a session switched), cannot
// post with her token; a page bob loads gives him his own token, which works.
func TestCSRFTokenTiedToTheAdmin(t *testing.T) {
	s := startSite(t, kitOptions{auth: twoAdmins, enabled: []string{"tm"}})
	c := adminClient(t)
	toggle := s.url + "/admin/fiberkit/modules/tm/toggle"
	moduleURL := s.url + "/admin/fiberkit/tm/admin-set"
	tokenOf := func(user, pass string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", s.url+"/admin/fiberkit/", nil)
		req.SetBasicAuth(user, pass)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		m := csrfInput.FindStringSubmatch(string(b))
		if m == nil {
			t.Fatalf("no CSRF token on %s's page", user)
		}
		return m[1]
	}
	alice := tokenOf("alice", "pw-a")
	for _, target := range []string{toggle, moduleURL} {
		if r := as(t, c, "bob", "pw-b", "POST", target, url.Values{"_csrf": {alice}, "enabled": {"false"}, "greeting": {"bob"}}, nil); r.StatusCode != http.StatusForbidden {
			t.Errorf("bob posting alice's token to %s: %d, want 403", target, r.StatusCode)
		}
		if r := as(t, c, "bob", "pw-b", "POST", target, url.Values{"enabled": {"false"}, "greeting": {"bob"}}, http.Header{"X-Csrf-Token": {alice}}); r.StatusCode != http.StatusForbidden {
			t.Errorf("bob sending alice's token in the header to %s: %d, want 403", target, r.StatusCode)
		}
	}
	if st, _ := s.kit.Module("tm"); !st.Enabled {
		t.Fatal("bob's forged toggle disabled the module")
	}
	if v := settingValue(t, s, "tm", "greeting"); v.Value != "hi" {
		t.Fatalf("greeting became %q", v.Value)
	}
	// Bob's own page replaces the cookie with his token, which works for him…
	bob := tokenOf("bob", "pw-b")
	if bob == alice {
		t.Fatal("bob was handed alice's token")
	}
	if r := as(t, c, "bob", "pw-b", "POST", moduleURL, url.Values{"_csrf": {bob}, "greeting": {"bob"}}, nil); r.StatusCode != 200 {
		t.Fatalf("bob with his own token: %d", r.StatusCode)
	}
	// …and not for alice.
	if r := as(t, c, "alice", "pw-a", "POST", moduleURL, url.Values{"_csrf": {bob}, "greeting": {"alice"}}, nil); r.StatusCode != http.StatusForbidden {
		t.Fatalf("alice posting bob's token: %d, want 403", r.StatusCode)
	}
}

// The token in the query string is not accepted on an unsafe request, on the kit's
// forms or a module's admin route.
func TestCSRFTokenNotTakenFromTheQuery(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	c := adminClient(t)
	_, page := adminDo(t, c, "GET", s.url+"/admin/fiberkit/", nil)
	tok := csrfInput.FindStringSubmatch(page)[1]
	for _, target := range []string{"/admin/fiberkit/modules/tm/toggle", "/admin/fiberkit/tm/admin-set"} {
		u := s.url + target + "?_csrf=" + url.QueryEscape(tok)
		if code, _ := adminDo(t, c, "POST", u, url.Values{"enabled": {"false"}, "greeting": {"q"}}); code != http.StatusForbidden {
			t.Errorf("token in the query of %s: %d, want 403", target, code)
		}
	}
	if st, _ := s.kit.Module("tm"); !st.Enabled {
		t.Fatal("a token in the query disabled the module")
	}
	if code, body := adminDo(t, c, "POST", s.url+"/admin/fiberkit/tm/admin-set", url.Values{"_csrf": {tok}, "greeting": {"form"}}); code != 200 {
		t.Fatalf("the same token in the form: %d %s", code, body)
	}
}

// The CSRF cookie is Secure when the request came over HTTPS — here through a proxy
// that says so in X-Forwarded-Proto — and only when Fiber trusts that proxy.
func TestCSRFCookieSecureBehindHTTPS(t *testing.T) {
	s := startSite(t, kitOptions{})
	cookie := func(base string, header http.Header) *http.Cookie {
		t.Helper()
		r := as(t, &http.Client{}, "admin", "secret-admin-pw", "GET", base+"/admin/fiberkit/", nil, header)
		for _, ck := range r.Cookies() {
			if ck.Name == "fiberkit_csrf" {
				return ck
			}
		}
		t.Fatalf("no fiberkit_csrf cookie set (%d)", r.StatusCode)
		return nil
	}
	https := http.Header{"X-Forwarded-Proto": {"https"}}
	if ck := cookie(s.url, nil); ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Errorf("over plain HTTP: Secure %v HttpOnly %v SameSite %v, want false, true, Strict", ck.Secure, ck.HttpOnly, ck.SameSite)
	}
	if ck := cookie(s.url, https); !ck.Secure {
		t.Error("behind a proxy saying https: cookie not Secure")
	}
	cfg := host.FiberConfig()
	cfg.EnableTrustedProxyCheck = true
	cfg.TrustedProxies = []string{"10.9.8.7"}
	untrusted := serveOn(t, s, cfg)
	if ck := cookie(untrusted, https); ck.Secure {
		t.Error("X-Forwarded-Proto from an untrusted client made the cookie Secure")
	}
}
