package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// TokenChange is what a sending site tells a receiving site when it regenerates the
// token of their permanent connection: the SHA-256 of the old token (hex), which
// identifies the receiver's remote without revealing it, and the new token.
type TokenChange struct {
	OldHash  string `json:"old_hash"`
	NewToken string `json:"new_token"`
}

// errRedirect refuses the redirects of a token notice.
var errRedirect = errors.New("the site answered with a redirect (not followed: the new token goes only to the URL given)")

// NotifyTokenChange tells the site at siteURL (its base URL, or its Sync mount)
// that a token changed. checkAddr, when set, vets the address dialled. Redirects are
// not followed: the new token is sent to siteURL's host and nowhere else.
func NotifyTokenChange(ctx context.Context, siteURL string, change TokenChange, checkAddr func(netip.Addr) error) error {
	u, err := url.Parse(strings.TrimSpace(siteURL))
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("site URL %q: want http(s)://host[/prefix]", siteURL)
	}
	p := strings.TrimRight(u.Path, "/")
	switch {
	case p == "":
		p = "/fiberkit/sync"
	case !strings.HasSuffix(p, "/sync"):
		p += "/sync"
	}
	u.Path = p + "/api/remote-token"
	body, _ := json.Marshal(change)
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	if checkAddr != nil {
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return err
			}
			return checkAddr(ap.Addr().Unmap())
		}
	}
	client := &http.Client{
		Timeout:       15 * time.Second,
		Transport:     &http.Transport{DialContext: dialer.DialContext},
		CheckRedirect: func(*http.Request, []*http.Request) error { return errRedirect },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("tell %s: %w", u.Host, err)
	}
	defer client.CloseIdleConnections()
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("tell %s: HTTP %d %s", u.Host, resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	return nil
}
