package manifest

import (
	"strings"
	"testing"
)

// Optional parameters ("/:id?") are not implemented by the host's route matcher, so
// the manifest refuses them with a message saying what to do instead.
func TestOptionalRouteParametersAreRefused(t *testing.T) {
	dir := t.TempDir()
	writeExe(t, dir)
	for _, c := range []struct{ from, to, field string }{
		{"  - path: /records/:table\n    methods: [GET]", "  - path: /records/:table?\n    methods: [GET]", "routes[0].path"},
		{"  - path: /websocket", "  - path: /live/:room?", "websockets[0].path"},
	} {
		src := strings.Replace(good, c.from, c.to, 1)
		_, err := Parse([]byte(src), "module.yaml", dir, "0.1.0")
		if err == nil {
			t.Fatalf("%s: an optional parameter was accepted", c.field)
		}
		if !strings.Contains(err.Error(), c.field+": ") || !strings.Contains(err.Error(), "optional parameter") || !strings.Contains(err.Error(), "not supported") {
			t.Fatalf("%s: error %q does not name the problem", c.field, err)
		}
	}
}
