// Package urlguard vets the URLs this site connects out to (pulls, the Receive
// page, scheduled pulls, token notices): never to this site itself, and never to a
// non-public address unless internal URLs are allowed. Addresses are checked when
// dialled, after DNS resolution, so a name cannot be re-pointed between the check
// and the dial.
package urlguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Refusals (compare with errors.Is; Refused matches any of them).
var (
	// ErrNotURL refuses a target that is not a URL with a host.
	ErrNotURL = errors.New("not a URL")
	// ErrInternalURL refuses a private, loopback, link-local or otherwise
	// non-public address.
	ErrInternalURL = errors.New("internal address")
	// ErrSelfURL refuses a connection from this site to itself.
	ErrSelfURL = errors.New("that URL is this site")
)

// Refused reports whether err is (or wraps) one of the guard's refusals, before
// or while dialling.
func Refused(err error) bool {
	return errors.Is(err, ErrNotURL) || errors.Is(err, ErrInternalURL) || errors.Is(err, ErrSelfURL)
}

// Guard is what the checks know of this site.
type Guard struct {
	// Public is this site's public URL: what other sites, and this one, dial.
	Public string
	// AllowInternal lets connections reach non-public addresses (the
	// allow_internal_urls setting).
	AllowInternal bool
}

// Check vets target before it is dialled and returns the check of every address
// the connection dials (for client.Options.CheckAddr): no connection to this site
// itself, and none to a non-public address (see internalAddr) unless AllowInternal.
//
// "Itself" is the same host name and port (case and a trailing dot aside), or, when
// dialled, the same port on an address this site's public host resolves to. The
// address comparison applies when it cannot be another virtual host on a shared
// address: this site is on a loopback address, or either URL names an IP literal.
// Two different host names on one shared address and port (sites behind one proxy)
// stay distinct.
func (g Guard) Check(ctx context.Context, target string) (func(netip.Addr) error, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("sender URL %q is %w", target, ErrNotURL)
	}
	self, _ := url.Parse(g.Public)
	if self != nil && self.Host != "" && sameHost(self, u) {
		return nil, ErrSelfURL
	}
	selfAddrs := selfAddresses(ctx, self)
	samePort := self != nil && self.Host != "" && urlPort(u) == urlPort(self)
	byAddr := selfAddrs.loopback || isLiteral(u.Hostname()) || (self != nil && isLiteral(self.Hostname()))
	allowInternal := g.AllowInternal
	return func(ip netip.Addr) error {
		ip = ip.Unmap()
		if samePort && byAddr && selfAddrs.contains(ip) {
			return fmt.Errorf("%w (%s is this site's address)", ErrSelfURL, ip)
		}
		if allowInternal {
			return nil
		}
		if internalAddr(ip) {
			return fmt.Errorf("%w %s refused (turn on allow_internal_urls to pull from internal sites)", ErrInternalURL, ip)
		}
		return nil
	}, nil
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
func selfAddresses(ctx context.Context, self *url.URL) addrSet {
	var s addrSet
	if self == nil || self.Host == "" {
		return s
	}
	host := normHost(self.Hostname())
	if ip, err := netip.ParseAddr(host); err == nil {
		s.ips = []netip.Addr{ip.Unmap()}
	} else {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
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
