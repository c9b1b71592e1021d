package host

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
)

// csrfExpiration is how long a CSRF token lives after its last use.
const csrfExpiration = 4 * time.Hour

var (
	errTokenNotInHeader = errors.New("missing CSRF token")
	errTokenInvalid     = errors.New("invalid CSRF token")
	errBadReferer       = errors.New("referer does not match the host")
)

// csrfOwner is what a token is stored with: the admin AdminAuth signed in
// (Locals(UserLocal)), so one admin's token is refused for another.
func csrfOwner(c *fiber.Ctx) []byte {
	user, _ := c.Locals(UserLocal).(string)
	return []byte("user:" + user)
}

// checkCSRF guards the admin pages and the modules' admin routes. A safe request
// gets a token — the one in its cookie if that belongs to the same admin, a new one
// otherwise — in the fiberkit_csrf cookie (Secure when the request came over HTTPS,
// as Fiber reports the protocol: directly, or X-Forwarded-Proto from a proxy its
// trusted-proxy settings accept) and in Locals(csrfLocal) for the forms. An unsafe
// request must carry its cookie's token (csrfToken says where), and the token must
// have been issued to the admin making the request. Tokens are kept in PostgreSQL
// (csrfStore), so replicas accept each other's forms.
func (a *admin) checkCSRF(c *fiber.Ctx) error {
	owner := csrfOwner(c)
	cookie := c.Cookies(csrfCookie)
	var token string
	switch c.Method() {
	case fiber.MethodGet, fiber.MethodHead, fiber.MethodOptions, fiber.MethodTrace:
		if cookie != "" {
			v, err := a.tokens.Get(cookie)
			if err != nil {
				return fmt.Errorf("read CSRF token: %w", err)
			}
			if bytes.Equal(v, owner) {
				token = cookie
			}
		}
		if token == "" {
			token = randomToken()
		}
	default:
		if c.Protocol() == "https" {
			if err := refererMatchesHost(c); err != nil {
				return refuseCSRF(c, err)
			}
		}
		t, err := csrfToken(c)
		if err != nil {
			return refuseCSRF(c, err)
		}
		if cookie == "" || subtle.ConstantTimeCompare([]byte(t), []byte(cookie)) != 1 {
			return refuseCSRF(c, errTokenInvalid)
		}
		v, err := a.tokens.Get(t)
		if err != nil {
			discardBody(c)
			return fmt.Errorf("read CSRF token: %w", err)
		}
		if !bytes.Equal(v, owner) {
			return refuseCSRF(c, errTokenInvalid)
		}
		token = t
	}
	// Create the token, or extend its life.
	if err := a.tokens.Set(token, owner, csrfExpiration); err != nil {
		discardBody(c)
		return fmt.Errorf("store CSRF token: %w", err)
	}
	c.Cookie(&fiber.Cookie{
		Name: csrfCookie, Value: token, Path: "/", Expires: time.Now().Add(csrfExpiration),
		Secure: c.Protocol() == "https", HTTPOnly: true, SameSite: fiber.CookieSameSiteStrictMode,
	})
	c.Vary(fiber.HeaderCookie)
	c.Locals(csrfLocal, token)
	return c.Next()
}

// refuseCSRF answers 403, saying where the token must be when it was not found.
func refuseCSRF(c *fiber.Ctx, err error) error {
	discardBody(c)
	if errors.Is(err, errTokenNotInHeader) {
		return c.Status(fiber.StatusForbidden).SendString("forbidden: missing CSRF token (send it in the X-Csrf-Token header; " +
			"the _csrf form field is read only from small application/x-www-form-urlencoded bodies)")
	}
	return c.Status(fiber.StatusForbidden).SendString("forbidden: invalid or missing CSRF token")
}

// refererMatchesHost requires an HTTPS request's Referer to name this host: a
// man-in-the-middle on plain HTTP can plant a cookie, but cannot make a page of
// this HTTPS origin post.
func refererMatchesHost(c *fiber.Ctx) error {
	r, err := url.Parse(strings.ToLower(c.Get(fiber.HeaderReferer)))
	if err != nil || r.Scheme != c.Protocol() || r.Host != c.Hostname() {
		return errBadReferer
	}
	return nil
}
