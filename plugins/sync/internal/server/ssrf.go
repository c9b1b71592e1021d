package server

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"

	"github.com/fiberkit/fiberkit/sdk/syncclient"
)

// errInternalURL refuses a pull from a private, loopback or link-local address.
var errInternalURL = errors.New("internal address")

// outgoing returns the client options that guard this site's outgoing connections
// (pull, the Receive page, scheduled pulls): no connection to itself, and none to a
// private, loopback or link-local address unless the allow_internal_urls setting is
// on. Addresses are checked when dialled, after DNS resolution.
func (st *state) outgoing(target string, o syncclient.Options) (syncclient.Options, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return o, fmt.Errorf("sender URL %q is not a URL", target)
	}
	if self, err := url.Parse(st.public); err == nil && self.Host != "" && sameHost(self, u) {
		return o, errors.New("that URL is this site")
	}
	if st.settings.Bool("allow_internal_urls") {
		return o, nil
	}
	o.CheckAddr = func(ip netip.Addr) error {
		if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsUnspecified() || ip.IsMulticast() {
			return fmt.Errorf("%w %s refused (turn on allow_internal_urls to pull from internal sites)", errInternalURL, ip)
		}
		return nil
	}
	return o, nil
}

func sameHost(a, b *url.URL) bool {
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		if u.Scheme == "https" || u.Scheme == "wss" {
			return "443"
		}
		return "80"
	}
	return strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b) ||
		net.JoinHostPort(a.Hostname(), port(a)) == net.JoinHostPort(b.Hostname(), port(b))
}
