package main_test

import (
	"testing"
)

// TestBadRequestsDoNotBreakTheConnection: issue 11 §8 — malformed input is
// bad_request before any SQL, and a request that fails in SQL leaves the
// connection's snapshot usable: the same connection answers good requests after.
func TestBadRequestsDoNotBreakTheConnection(t *testing.T) {
	a := seeded(t, siteOptions{})
	r := dialPhoenixKit(t, a, a.newCode(t).Code)
	r.join()
	good := func(when string) {
		t.Helper()
		if event, p, _ := r.request("request:count", map[string]any{"table": "customers"}); event != "response:count" || string(p["count"]) != "2000" {
			t.Fatalf("after %s: %s %v", when, event, p)
		}
		if event, _, _ := r.request("request:records", map[string]any{"table": "orders", "offset": 0, "limit": 5, "encoding": "text"}); event != "response:records" {
			t.Fatalf("records after %s: %s", when, event)
		}
	}
	good("nothing")
	for _, c := range []struct {
		event   string
		payload map[string]any
		code    string
	}{
		{"request:count", map[string]any{"table": "customers\x00"}, "bad_request"},
		{"request:schema", map[string]any{"table": ""}, "bad_request"},
		{"request:records", map[string]any{"table": "customers", "offset": -1}, "bad_request"},
		{"request:records", map[string]any{"table": "customers", "encoding": "binary"}, "bad_request"},
		{"request:records", map[string]any{"table": "customers", "limit": "many"}, "bad_request"},
		{"stream:start", map[string]any{"stream": 1, "table": "customers", "after_key": []string{"1\x00"}}, "bad_request"},
		// Well-formed, but the key does not cast: fails in SQL, inside its savepoint.
		{"stream:start", map[string]any{"stream": 2, "table": "customers", "after_key": []string{"1') OR true --"}}, ""},
		{"request:count", map[string]any{"table": "customers; DROP TABLE customers"}, "unknown_table"},
	} {
		event, p, _ := r.request(c.event, c.payload)
		switch {
		case c.code != "" && (event != "response:error" || str(p["error"]) != c.code):
			t.Fatalf("%s %v: %s %v", c.event, c.payload, event, p)
		case c.code == "" && c.event == "stream:start":
			// The stream starts, then fails with a stream:error; wait for it.
			for {
				f := r.next()
				if str(f[3]) == "stream:error" {
					break
				}
			}
		}
		good(c.event)
	}
}
