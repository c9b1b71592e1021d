package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
)

// errInternalURL refuses a pull from a private, loopback, link-local or otherwise
// non-public address.
var errInternalURL = errors.New("internal address")

// errSelfURL refuses a connection from this site to itself.
var errSelfURL = errors.New("that URL is this site")

// outgoing returns the client options that guard this site's outgoing connections
// (pull, the Receive page, scheduled pulls, token notices): no connection to itself,
// and none to a non-public address (see internalAddr) unless the allow_internal_urls
// setting is on. Addresses are checked when dialled, after DNS resolution.
//
// "Itself" is the same host name and port (case and a trailing dot aside), or, when
// dialled, the same port on an address this site's public host resolves to. The
// address comparison applies when it cannot be another virtual host on a shared
// address: this site is on a loopback address, or either URL names an IP literal.
// Two different host names on one shared address and port (sites behind one proxy)
// stay distinct.
func (st *state) outgoing(target string, o client.Options) (client.Options, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return o, fmt.Errorf("sender URL %q is not a URL", target)
	}
	self, _ := url.Parse(st.public)
	if self != nil && self.Host != "" && sameHost(self, u) {
		return o, errSelfURL
	}
	allowInternal := st.settings.Bool("allow_internal_urls")
	selfAddrs := selfAddresses(self)
	samePort := self != nil && self.Host != "" && urlPort(u) == urlPort(self)
	byAddr := selfAddrs.loopback || isLiteral(u.Hostname()) || (self != nil && isLiteral(self.Hostname()))
	o.CheckAddr = func(ip netip.Addr) error {
		ip = ip.Unmap()
		if samePort && byAddr && selfAddrs.contains(ip) {
			return fmt.Errorf("%w (%s is this site's address)", errSelfURL, ip)
		}
		if allowInternal {
			return nil
		}
		if internalAddr(ip) {
			return fmt.Errorf("%w %s refused (turn on allow_internal_urls to pull from internal sites)", errInternalURL, ip)
		}
		return nil
	}
	return o, nil
}

// addrSet is the addresses this site answers on.
type addrSet struct {
	ips []netip.Addr
	// loopback: the site is reached through a loopback address, so every loopback
	// address (127.0.0.0/8, ::1) and the unspecified address reach it too.
	loopback bool
}

func (s addrSet) contains(ip netip.Addr) bool {
	if s.loopback && (ip.IsLoopback() || ip.IsUnspecified()) {
		return true
	}
	for _, a := range s.ips {
		if a == ip {
			return true
		}
	}
	return false
}

// selfAddresses resolves this site's public host (a literal, or a name looked up
// with a short deadline). The plugin does not learn the host's listen address; the
// public URL is what other sites — and this one — dial.
func selfAddresses(self *url.URL) addrSet {
	var s addrSet
	if self == nil || self.Host == "" {
		return s
	}
	host := normHost(self.Hostname())
	if ip, err := netip.ParseAddr(host); err == nil {
		s.ips = []netip.Addr{ip.Unmap()}
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host); err == nil {
			for _, ip := range ips {
				s.ips = append(s.ips, ip.Unmap())
			}
		}
	}
	for _, ip := range s.ips {
		if ip.IsLoopback() || ip.IsUnspecified() {
			s.loopback = true
		}
	}
	return s
}

func isLiteral(host string) bool {
	_, err := netip.ParseAddr(normHost(host))
	return err == nil
}

// normHost is a host name as compared: lower case, without a trailing dot, IP
// literals in their canonical form.
func normHost(h string) string {
	h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip.Unmap().String()
	}
	return h
}

// urlPort is the port a URL dials (its explicit port, or its scheme's default).
func urlPort(u *url.URL) string {
	if u == nil {
		return ""
	}
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" || u.Scheme == "wss" {
		return "443"
	}
	return "80"
}

// sameHost reports whether two URLs name the same host and port (case, a trailing
// dot and the spelling of an IP literal aside).
func sameHost(a, b *url.URL) bool {
	return normHost(a.Hostname()) == normHost(b.Hostname()) && urlPort(a) == urlPort(b)
}

// refusedPrefixes are address ranges that are never a public site: besides what
// netip's predicates cover (loopback, private, link-local, multicast, unspecified).
var refusedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT (incl. 100.100.100.200, a cloud metadata address)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
	netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, incl. 255.255.255.255 broadcast
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated) and ::, ::1
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001::/32"),       // Teredo: tunnels to an address it hides
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96") // well-known NAT64: the IPv4 address is the last 32 bits
	sixToFour = netip.MustParsePrefix("2002::/16")    // 6to4: the IPv4 address is bits 16–47
)

// internalAddr reports whether ip is not a public unicast address: loopback,
// private, link-local, multicast, unspecified, one of refusedPrefixes, or a NAT64 or
// 6to4 address embedding such an IPv4 address.
func internalAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return true
	}
	for _, p := range refusedPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	b := ip.As16()
	switch {
	case nat64.Contains(ip):
		return internalAddr(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	case sixToFour.Contains(ip):
		return internalAddr(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
	}
	return false
}
