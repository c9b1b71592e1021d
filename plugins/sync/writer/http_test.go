package writer_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/fiberkit/fiberkit/plugins/sync/writer"
)

func TestHandler(t *testing.T) {
	pool, w := setup(t)
	exec(t, pool, `INSERT INTO todos VALUES (20, 2, 'theirs', false)`)
	// The caller is the X-User header (a session or token in an app).
	caller := func(r *http.Request) (context.Context, error) {
		id, err := strconv.Atoi(r.Header.Get("X-User"))
		if err != nil {
			return nil, errors.New("who are you?")
		}
		return context.WithValue(r.Context(), userKey{}, id), nil
	}
	srv := httptest.NewServer(writer.Handler(w, caller))
	defer srv.Close()

	post := func(method, ctype, user, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if user != "" {
			req.Header.Set("X-User", user)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %s: Content-Type %q", method, body, ct)
		}
		var out map[string]any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s: not JSON: %s", body, raw)
		}
		return resp.StatusCode, out
	}

	// Success: {"txid": <number>}, the transaction's id.
	status, out := post("POST", "application/json", "1", `[{"type":"insert","modified":{"id":1,"owner":1,"title":"a"},"syncMetadata":{"relation":["public","todos"]}}]`)
	txid, isNumber := out["txid"].(float64)
	if status != 200 || !isNumber || txid <= 0 || len(out) != 1 {
		t.Fatalf("insert: %d %v", status, out)
	}
	var xmin int64
	if err := pool.QueryRow(context.Background(), `SELECT xmin::text::bigint FROM todos WHERE id = 1`).Scan(&xmin); err != nil || xmin != int64(txid) {
		t.Fatalf("the row was written by transaction %d (%v), the answer says %v", xmin, err, txid)
	}

	longTitle := strings.Repeat("x", writer.MaxBody)
	for _, c := range []struct {
		name, method, ctype, user, body string
		status                          int
		code                            string
		index                           float64
	}{
		{"invalid JSON", "POST", "application/json", "1", `[{`, 400, "invalid", -1},
		{"an unknown column, in the 2nd mutation", "POST", "application/json", "1",
			`[{"type":"insert","modified":{"id":2,"owner":1,"title":"b"},"relation":"todos"},{"type":"insert","modified":{"id":3,"nope":1},"relation":"todos"}]`, 400, "invalid", 1},
		{"another user's row", "POST", "application/json", "1", `[{"type":"update","original":{"id":20},"changes":{"title":"x"},"relation":"todos"}]`, 403, "forbidden", 0},
		{"a table not allowed", "POST", "application/json", "1", `[{"type":"insert","modified":{"id":1},"relation":"pg_authid"}]`, 403, "forbidden", 0},
		{"a missing row", "POST", "application/json", "1", `[{"type":"delete","original":{"id":404},"relation":"todos"}]`, 409, "conflict", 0},
		{"a duplicate key", "POST", "application/json", "1", `[{"type":"insert","modified":{"id":1,"owner":1,"title":"a"},"relation":"todos"}]`, 409, "conflict", 0},
		{"no caller", "POST", "application/json", "", `[]`, 401, "unauthenticated", -1},
		{"GET", "GET", "application/json", "1", ``, 405, "method_not_allowed", -1},
		{"not JSON", "POST", "text/plain", "1", `[]`, 415, "unsupported_media_type", -1},
		{"too large", "POST", "application/json; charset=utf-8", "1", `[{"type":"insert","modified":{"id":5,"owner":1,"title":"` + longTitle + `"},"relation":"todos"}]`, 413, "too_large", -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, out := post(c.method, c.ctype, c.user, c.body)
			if status != c.status || out["error"] != c.code || out["message"] == "" {
				t.Fatalf("%d %v, want %d %s", status, out, c.status, c.code)
			}
			m, _ := out["mutation"].(map[string]any)
			switch {
			case c.index < 0 && m != nil:
				t.Fatalf("names a mutation: %v", out)
			case c.index >= 0 && (m == nil || m["index"] != c.index || m["table"] != "public.todos" && c.code != "forbidden"):
				t.Fatalf("mutation %v, want index %v", m, c.index)
			}
		})
	}
	_, out = post("POST", "application/json", "1", `[{"type":"update","original":{"id":20},"changes":{"title":"x"},"relation":"todos"}]`)
	if m := out["mutation"].(map[string]any); m["type"] != "update" || m["key"].(map[string]any)["id"] != float64(20) {
		t.Fatalf("the refused mutation: %v", out)
	}
	if got := todos(t, pool); got != "1:1:a:false 20:2:theirs:false" {
		t.Fatalf("table %q", got)
	}
}
