package urlguard

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
)

func TestInternalAddresses(t *testing.T) {
	for _, c := range []struct {
		ip       string
		internal bool
	}{
		{"8.8.8.8", false},
		{"1.1.1.1", false},
		{"2606:4700:4700::1111", false},
		{"127.0.0.1", true},
		{"127.255.0.9", true},
		{"10.1.2.3", true},
		{"172.16.0.1", true},
		{"192.168.1.1", true},
		{"169.254.169.254", true},
		{"0.0.0.0", true},
		{"0.1.2.3", true},
		{"100.64.0.1", true},
		{"100.100.100.200", true},
		{"100.127.255.255", true},
		{"100.128.0.1", false},
		{"192.0.0.8", true},
		{"198.18.0.1", true},
		{"198.19.255.255", true},
		{"198.20.0.1", false},
		{"240.0.0.1", true},
		{"255.255.255.255", true},
		{"224.0.0.1", true},
		{"::", true},
		{"::1", true},
		{"::ffff:127.0.0.1", true},
		{"::ffff:8.8.8.8", false},
		{"fe80::1", true},
		{"fc00::1", true},
		{"fd12:3456::1", true},
		{"fec0::1", true},
		{"ff02::1", true},
		{"64:ff9b::a00:1", true},      // NAT64 of 10.0.0.1
		{"64:ff9b::7f00:1", true},     // NAT64 of 127.0.0.1
		{"64:ff9b::a9fe:a9fe", true},  // NAT64 of 169.254.169.254
		{"64:ff9b::808:808", false},   // NAT64 of 8.8.8.8
		{"2002:a00:1::1", true},       // 6to4 of 10.0.0.1
		{"2002:7f00:1::", true},       // 6to4 of 127.0.0.1
		{"2002:808:808::1", false},    // 6to4 of 8.8.8.8
		{"2001:0:4136:e378::1", true}, // Teredo
		{"2001:db8::1", true},
		{"::7f00:1", true}, // IPv4-compatible 127.0.0.1
	} {
		if got := internalAddr(netip.MustParseAddr(c.ip)); got != c.internal {
			t.Errorf("internalAddr(%s) = %v, want %v", c.ip, got, c.internal)
		}
	}
}

func TestGuard(t *testing.T) {
	guarded := Guard{Public: "https://Prod.Example.com./"}
	open := Guard{Public: "http://127.0.0.1:8080", AllowInternal: true}
	for _, c := range []struct {
		name   string
		g      Guard
		target string
		dial   string // the address dialled ("" = no dial check)
		want   error  // nil, ErrSelfURL, ErrInternalURL or ErrNotURL
	}{
		{"public", guarded, "https://dev.example.com", "8.8.8.8", nil},
		{"not a URL", guarded, "dev.example.com", "", ErrNotURL},
		{"same name", guarded, "https://prod.example.com", "", ErrSelfURL},
		{"same name, other case, trailing dot", guarded, "wss://PROD.example.COM.:443/x", "", ErrSelfURL},
		{"same name, other port", guarded, "https://prod.example.com:8443", "8.8.8.8", nil},
		{"metadata", guarded, "http://metadata.internal", "100.100.100.200", ErrInternalURL},
		{"cgnat", guarded, "http://x.example", "100.64.1.1", ErrInternalURL},
		{"nat64 private", guarded, "http://x.example", "64:ff9b::a00:1", ErrInternalURL},
		{"6to4 loopback", guarded, "http://x.example", "2002:7f00:1::", ErrInternalURL},
		{"teredo", guarded, "http://x.example", "2001:0:4136:e378::1", ErrInternalURL},
		{"mapped loopback", guarded, "http://x.example", "::ffff:127.0.0.1", ErrInternalURL},
		{"allowed internal", open, "http://127.0.0.1:9090", "127.0.0.1", nil},
		{"self by literal", open, "http://127.0.0.1:8080/", "", ErrSelfURL},
		{"self by other spelling", open, "http://localhost:8080", "127.0.0.1", ErrSelfURL},
		{"self by another loopback", open, "http://127.0.0.2:8080", "127.0.0.2", ErrSelfURL},
		{"self by v6 loopback", open, "http://[::1]:8080", "::1", ErrSelfURL},
		{"other port on loopback", open, "http://localhost:8081", "127.0.0.1", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			check, err := c.g.Check(context.Background(), c.target)
			if err == nil && c.dial != "" {
				err = check(netip.MustParseAddr(c.dial))
			}
			if c.want == nil && err != nil || c.want != nil && (!errors.Is(err, c.want) || !Refused(err)) {
				t.Fatalf("Check(%s) dialling %s: %v, want %v", c.target, c.dial, err, c.want)
			}
		})
	}
	// A site whose public URL is an IP literal recognises a name that resolves to it.
	check, err := Guard{Public: "http://8.8.4.4"}.Check(context.Background(), "http://other.example")
	if err != nil {
		t.Fatal(err)
	}
	if err := check(netip.MustParseAddr("8.8.4.4")); !errors.Is(err, ErrSelfURL) {
		t.Fatalf("literal self address: %v", err)
	}
}

// A refusal at dial time reaches the caller of client.Connect through the
// WebSocket dialer's wrapping, so errors.Is finds it.
func TestRefusalSurvivesTheDialer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		g    Guard
		want error
	}{
		{Guard{Public: "http://localhost:" + u.Port(), AllowInternal: true}, ErrSelfURL},
		{Guard{Public: "https://prod.example.com"}, ErrInternalURL},
	} {
		check, err := c.g.Check(context.Background(), srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		_, err = client.Connect(context.Background(), srv.URL, "ABCD2345", client.Options{CheckAddr: check, Timeout: 5 * time.Second})
		if !errors.Is(err, c.want) || !Refused(err) {
			t.Errorf("public %s: Connect: %v, want %v", c.g.Public, err, c.want)
		}
	}
}
