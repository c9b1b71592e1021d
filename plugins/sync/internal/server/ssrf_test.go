package server

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/sdk"
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

func TestOutgoingGuard(t *testing.T) {
	guarded := &state{settings: sdk.Settings{"allow_internal_urls": "false"}, public: "https://Prod.Example.com./"}
	open := &state{settings: sdk.Settings{"allow_internal_urls": "true"}, public: "http://127.0.0.1:8080"}
	for _, c := range []struct {
		name   string
		st     *state
		target string
		dial   string // the address dialled ("" = no dial check)
		want   error  // nil, errSelfURL or errInternalURL
	}{
		{"public", guarded, "https://dev.example.com", "8.8.8.8", nil},
		{"same name", guarded, "https://prod.example.com", "", errSelfURL},
		{"same name, other case, trailing dot", guarded, "wss://PROD.example.COM.:443/x", "", errSelfURL},
		{"same name, other port", guarded, "https://prod.example.com:8443", "8.8.8.8", nil},
		{"metadata", guarded, "http://metadata.internal", "100.100.100.200", errInternalURL},
		{"cgnat", guarded, "http://x.example", "100.64.1.1", errInternalURL},
		{"nat64 private", guarded, "http://x.example", "64:ff9b::a00:1", errInternalURL},
		{"6to4 loopback", guarded, "http://x.example", "2002:7f00:1::", errInternalURL},
		{"teredo", guarded, "http://x.example", "2001:0:4136:e378::1", errInternalURL},
		{"mapped loopback", guarded, "http://x.example", "::ffff:127.0.0.1", errInternalURL},
		{"allowed internal", open, "http://127.0.0.1:9090", "127.0.0.1", nil},
		{"self by literal", open, "http://127.0.0.1:8080/", "", errSelfURL},
		{"self by other spelling", open, "http://localhost:8080", "127.0.0.1", errSelfURL},
		{"self by another loopback", open, "http://127.0.0.2:8080", "127.0.0.2", errSelfURL},
		{"self by v6 loopback", open, "http://[::1]:8080", "::1", errSelfURL},
		{"other port on loopback", open, "http://localhost:8081", "127.0.0.1", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			o, err := c.st.outgoing(c.target, client.Options{})
			if err == nil && c.dial != "" {
				err = o.CheckAddr(netip.MustParseAddr(c.dial))
			}
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("outgoing(%s) dialling %s: %v, want %v", c.target, c.dial, err, c.want)
			}
		})
	}
	// A site whose public URL is an IP literal recognises a name that resolves to it.
	st := &state{settings: sdk.Settings{}, public: "http://8.8.4.4"}
	o, err := st.outgoing("http://other.example", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.CheckAddr(netip.MustParseAddr("8.8.4.4")); !errors.Is(err, errSelfURL) {
		t.Fatalf("literal self address: %v", err)
	}
}
