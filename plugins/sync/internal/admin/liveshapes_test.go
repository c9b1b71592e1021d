package admin

import "testing"

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB",
		3 << 30: "3.0 GiB", 2048 << 40: "2048.0 TiB", -2048: "-2.0 KiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestPluralAndQuoteList(t *testing.T) {
	if got := plural(int64(1), "entry", "entries"); got != "1 entry" {
		t.Error(got)
	}
	if got := plural(0, "shape", "shapes"); got != "0 shapes" {
		t.Error(got)
	}
	if got := quoteList([]string{"a, b", ""}); got != `"a, b", ""` {
		t.Error(got)
	}
}
