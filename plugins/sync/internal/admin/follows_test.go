package admin

import (
	"io"
	"log/slog"
	"testing"
)

func TestLagText(t *testing.T) {
	for _, c := range []struct {
		s    float64
		b    int64
		want string
	}{
		{0, 0, "caught up"},
		{1.5, 2048, "1.5s, 2.0 KiB"},
		{0, 100, "0s, 100 B"},
	} {
		if got := lagText(c.s, c.b); got != c.want {
			t.Errorf("lagText(%v, %v) = %q, want %q", c.s, c.b, got, c.want)
		}
	}
}

// TestPagesParse: every page template parses with the functions the pages use
// (New panics otherwise).
func TestPagesParse(t *testing.T) {
	a := New(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	for _, name := range []string{"overview.html", "connection.html", "connections.html"} {
		if a.tmpl.Lookup(name) == nil {
			t.Errorf("template %s missing", name)
		}
	}
}
