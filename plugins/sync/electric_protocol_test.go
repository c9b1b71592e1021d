package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/plugins/sync/syncweb"
)

// electricItems creates the table the Electric tests sync, with a value of every
// type the client's parser treats apart.
func electricItems(t *testing.T, s *site) {
	t.Helper()
	s.exec(t, `CREATE TABLE items (id int PRIMARY KEY, owner text NOT NULL, title text, n bigint, done bool,
		tags text[], price numeric(10,2), at timestamptz, meta jsonb, ratio float8);
		INSERT INTO items VALUES
		(1, 'ann', 'one', 9007199254740993, true, '{a,"b c"}', 1.50, '2024-01-02 03:04:05+00', '{"k": [1, 2]}', 0.25),
		(2, 'bob', 'two', 2, false, '{}', NULL, NULL, NULL, NULL),
		(3, 'ann', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`)
	s.exec(t, `CREATE TABLE api_keys (id int PRIMARY KEY, secret text)`)
}

// shapeApp serves the site's shapes from a Fiber app of the test's own, as a host
// app would (syncweb behind its auth), and a control endpoint the Node test drives
// the database and the plugin with. It returns the app's URL.
func shapeApp(t *testing.T, s *site, more ...func(*fiber.App)) string {
	t.Helper()
	app := fiber.New(host.FiberConfig())
	auth := func(c *fiber.Ctx) error {
		c.Locals(host.UserLocal, "tester")
		return c.Next()
	}
	app.Get("/shapes/items", auth, syncweb.Shape(s.kit, syncapi.ShapeSpec{Table: "items"}))
	app.Get("/shapes/mine", auth, syncweb.ShapeFunc(s.kit, func(c *fiber.Ctx) (syncapi.ShapeSpec, error) {
		owner := c.Get("X-Owner")
		if owner == "" {
			return syncapi.ShapeSpec{}, fiber.ErrUnauthorized
		}
		return syncapi.ShapeSpec{Table: "items", Where: "owner = $1", Params: []string{owner}}, nil
	}))
	app.Get("/shapes/any", auth, syncweb.ClientShapeFunc(s.kit, func(*fiber.Ctx) (syncapi.ShapeSpec, error) {
		return syncapi.ShapeSpec{Table: "items"}, nil
	}))
	app.Get("/shapes/secret", auth, syncweb.Shape(s.kit, syncapi.ShapeSpec{Table: "api_keys"}))
	// The Node test's controls: SQL, interrupt, a restart of the Sync plugin.
	app.Post("/ctl/sql", func(c *fiber.Ctx) error {
		if _, err := s.pool.Exec(c.Context(), string(c.Body())); err != nil {
			return c.Status(500).SendString(err.Error())
		}
		return c.SendString("ok")
	})
	app.Post("/ctl/interrupt", func(c *fiber.Ctx) error {
		var n int
		if err := s.call(t, syncapi.OpInterrupt, syncapi.ShapeMatch{Table: c.Query("table")}, &n); err != nil {
			return c.Status(500).SendString(err.Error())
		}
		return c.JSON(n)
	})
	app.Post("/ctl/restart", func(c *fiber.Ctx) error {
		st, _ := s.kit.Module("sync")
		if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
			return c.Status(500).SendString(err.Error())
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			now, _ := s.kit.Module("sync")
			var ls syncapi.LiveStatus
			if now.State == host.StateRunning && now.PID != st.PID && s.call(t, syncapi.OpLiveStatus, struct{}{}, &ls) == nil && ls.Capturing {
				return c.SendString("ok")
			}
			if time.Now().After(deadline) {
				return c.Status(500).SendString("the plugin did not come back")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	for _, m := range more {
		m(app)
	}
	return testsupport.Serve(t, app)
}

// shapeGet is one request of Electric's HTTP API.
type shapeResp struct {
	status int
	header http.Header
	body   string
	msgs   []map[string]any
}

func shapeGet(t *testing.T, base, path string, q url.Values, hdr map[string]string) shapeResp {
	t.Helper()
	req, err := http.NewRequest("GET", base+path+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := shapeResp{status: resp.StatusCode, header: resp.Header, body: string(b)}
	if resp.StatusCode == 200 || resp.StatusCode == 409 {
		if err := json.Unmarshal(b, &r.msgs); err != nil {
			t.Fatalf("%s: %v (%s)", path, err, b)
		}
	}
	return r
}

// rowKeys lists the operations and keys of row messages, and "up-to-date" /
// "must-refetch" for controls.
func rowKeys(msgs []map[string]any) []string {
	var out []string
	for _, m := range msgs {
		h, _ := m["headers"].(map[string]any)
		if c, ok := h["control"].(string); ok {
			out = append(out, c)
			continue
		}
		key, _ := m["key"].(string)
		out = append(out, h["operation"].(string)+" "+key[strings.LastIndexByte(key, '/')+1:])
	}
	return out
}

func query(kv ...string) url.Values {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return q
}

// The protocol as Electric's API defines it: the initial sync with its headers
// (handle, offset, schema, up-to-date, caching, ETag and 304), a live long-poll
// answered by a write, 400s for what a client may not ask, 403 for an excluded
// table, 409 with the new handle after an interrupt, and server-sent events.
func TestElectricProtocol(t *testing.T) {
	s := liveSite(t, siteOptions{})
	electricItems(t, s)
	base := shapeApp(t, s)

	first := shapeGet(t, base, "/shapes/items", query("offset", "-1"), nil)
	if first.status != 200 || strings.Join(rowKeys(first.msgs), ",") != `insert "1",insert "2",insert "3",up-to-date` {
		t.Fatalf("initial: %d %s", first.status, first.body)
	}
	h := first.header
	handle, offset := h.Get("electric-handle"), h.Get("electric-offset")
	if handle == "" || offset != "0_3" || h.Get("electric-up-to-date") == "" || h.Get("electric-cursor") != "" ||
		h.Get("Cache-Control") != "public, max-age=604800, s-maxage=3600, stale-while-revalidate=2629746" ||
		h.Get("ETag") != `"`+handle+`:-1:0_3"` || !strings.Contains(h.Get("Access-Control-Expose-Headers"), "electric-schema") {
		t.Fatalf("initial headers: %v", h)
	}
	var schema map[string]map[string]any
	if err := json.Unmarshal([]byte(h.Get("electric-schema")), &schema); err != nil {
		t.Fatalf("electric-schema %q: %v", h.Get("electric-schema"), err)
	}
	for col, want := range map[string]string{
		"id": `{"not_null":true,"pk_index":0,"type":"int4"}`, "owner": `{"not_null":true,"type":"text"}`,
		"title": `{"type":"text"}`, "n": `{"type":"int8"}`, "done": `{"type":"bool"}`, "tags": `{"dims":1,"type":"text"}`,
		"price": `{"precision":10,"scale":2,"type":"numeric"}`, "at": `{"type":"timestamptz"}`, "meta": `{"type":"jsonb"}`,
		"ratio": `{"type":"float8"}`,
	} {
		if got, _ := json.Marshal(schema[col]); string(got) != want {
			t.Errorf("schema of %s: %s, want %s", col, got, want)
		}
	}
	v := first.msgs[0]["value"].(map[string]any)
	if v["n"] != "9007199254740993" || v["done"] != "t" || v["tags"] != `{a,"b c"}` || v["price"] != "1.50" {
		t.Fatalf("values: %v", v)
	}

	// The same request with its ETag: 304.
	if r := shapeGet(t, base, "/shapes/items", query("offset", "-1"), map[string]string{"If-None-Match": h.Get("ETag")}); r.status != 304 {
		t.Fatalf("If-None-Match: %d %s", r.status, r.body)
	}
	// Caught up, not live: up-to-date at once.
	r := shapeGet(t, base, "/shapes/items", query("offset", offset, "handle", handle), nil)
	if r.status != 200 || strings.Join(rowKeys(r.msgs), ",") != "up-to-date" || r.header.Get("Cache-Control") != "public, max-age=60, stale-while-revalidate=300" {
		t.Fatalf("caught up: %d %s %v", r.status, r.body, r.header)
	}

	// Live: the long-poll waits, and a write answers it.
	done := make(chan shapeResp, 1)
	start := time.Now()
	go func() {
		done <- shapeGet(t, base, "/shapes/items", query("offset", offset, "handle", handle, "live", "true", "cursor", "1"), nil)
	}()
	time.Sleep(500 * time.Millisecond)
	s.exec(t, `UPDATE items SET title = 'uno' WHERE id = 1`)
	select {
	case r = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the live long-poll was not answered by the write")
	}
	if r.status != 200 || strings.Join(rowKeys(r.msgs), ",") != `update "1",up-to-date` || time.Since(start) < 400*time.Millisecond ||
		r.header.Get("electric-cursor") == "" || r.header.Get("electric-schema") != "" || r.header.Get("Cache-Control") != "public, max-age=5, stale-while-revalidate=5" {
		t.Fatalf("live: %d %s %v", r.status, r.body, r.header)
	}
	if v := r.msgs[0]["value"].(map[string]any); len(v) != 2 || v["title"] != "uno" {
		t.Fatalf("an update sends the key and changed columns: %v", v)
	}
	offset = r.header.Get("electric-offset")

	// What a client may not ask.
	for _, c := range []struct {
		path string
		q    url.Values
		hdr  map[string]string
		want int
		msg  string
	}{
		{"/shapes/items", query("offset", "abc"), nil, 400, "offset"},
		{"/shapes/items", query("offset", "5_1"), nil, 400, "handle"},
		{"/shapes/items", query("offset", "-1", "live", "maybe"), nil, 400, "live"},
		{"/shapes/items", query("offset", "-1", "where", "true"), nil, 400, "where"},
		{"/shapes/items", query("offset", "-1", "columns", "id"), nil, 400, "columns"},
		{"/shapes/items", query("offset", "-1", "table", "api_keys"), nil, 400, "table"},
		{"/shapes/mine", query("offset", "-1", "where", "owner = $1", "params[1]", "bob"), map[string]string{"X-Owner": "ann"}, 400, "params"},
		{"/shapes/mine", query("offset", "-1", "where", "true"), map[string]string{"X-Owner": "ann"}, 400, "where"},
		{"/shapes/mine", query("offset", "-1"), nil, 401, ""},
		{"/shapes/any", query("offset", "-1", "where", "pg_sleep(1) IS NULL"), nil, 400, "function"},
		{"/shapes/any", query("offset", "-1", "columns", "title"), nil, 400, "primary key"},
		{"/shapes/secret", query("offset", "-1"), nil, 403, "excluded"},
	} {
		r := shapeGet(t, base, c.path, c.q, c.hdr)
		if r.status != c.want || !strings.Contains(r.body, c.msg) {
			t.Errorf("%s?%s: %d %s, want %d with %q", c.path, c.q.Encode(), r.status, r.body, c.want, c.msg)
		}
	}
	// What it may: a user's own shape, restated; a client's shape where the
	// endpoint allows one.
	mine := shapeGet(t, base, "/shapes/mine", query("offset", "-1", "where", "owner = $1", "params[1]", "ann"), map[string]string{"X-Owner": "ann"})
	if mine.status != 200 || strings.Join(rowKeys(mine.msgs), ",") != `insert "1",insert "3",up-to-date` {
		t.Fatalf("mine: %d %s", mine.status, mine.body)
	}
	// A shape made per user is never for a shared cache: one URL, each user's rows.
	if cc := mine.header.Get("Cache-Control"); cc != "private, max-age=604800, stale-while-revalidate=2629746" {
		t.Fatalf("a per-user shape's Cache-Control: %q", cc)
	}
	cols := shapeGet(t, base, "/shapes/any", query("offset", "-1", "where", "owner = $1", "params[1]", "bob", "columns", `id,"title"`), nil)
	if cols.status != 200 || strings.Join(rowKeys(cols.msgs), ",") != `insert "2",up-to-date` || len(cols.msgs[0]["value"].(map[string]any)) != 2 ||
		!strings.Contains(cols.header.Get("electric-schema"), `"title"`) || strings.Contains(cols.header.Get("electric-schema"), `"owner"`) {
		t.Fatalf("client shape: %d %s %v", cols.status, cols.body, cols.header)
	}

	// Server-sent events: the head at once, up-to-date, then changes as they come.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/shapes/items?"+query("offset", offset, "handle", handle, "live", "true", "live_sse", "true").Encode(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("electric-offset") != offset ||
		resp.Header.Get("electric-cursor") == "" || resp.Header.Get("electric-handle") != handle {
		t.Fatalf("SSE head: %d %v", resp.StatusCode, resp.Header)
	}
	events := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				events <- d
			}
		}
		close(events)
	}()
	next := func() string {
		select {
		case e := <-events:
			return e
		case <-time.After(15 * time.Second):
			t.Fatal("no SSE event within 15 s")
			return ""
		}
	}
	if e := next(); !strings.Contains(e, `"up-to-date"`) || !strings.Contains(e, `"global_last_seen_lsn"`) {
		t.Fatalf("first SSE event: %s", e)
	}
	s.exec(t, `INSERT INTO items (id, owner) VALUES (4, 'cy')`)
	if e := next(); !strings.Contains(e, `"insert"`) || !strings.Contains(e, `"4"`) {
		t.Fatalf("SSE insert: %s", e)
	}
	if e := next(); !strings.Contains(e, `"up-to-date"`) {
		t.Fatalf("SSE after the insert: %s", e)
	}
	cancel()

	// An interrupt replaces the shape: the old handle gets 409 and the new one.
	var n int
	if err := s.call(t, syncapi.OpInterrupt, syncapi.ShapeMatch{Table: "items"}, &n); err != nil || n == 0 {
		t.Fatalf("interrupt: %d %v", n, err)
	}
	r = shapeGet(t, base, "/shapes/items", query("offset", offset, "handle", handle), nil)
	if r.status != 409 || r.header.Get("electric-handle") == "" || r.header.Get("electric-handle") == handle ||
		strings.Join(rowKeys(r.msgs), ",") != "must-refetch" {
		t.Fatalf("after an interrupt: %d %s %v", r.status, r.body, r.header)
	}
	again := shapeGet(t, base, "/shapes/items", query("offset", "-1", "handle", r.header.Get("electric-handle")), nil)
	if again.status != 200 || again.header.Get("electric-handle") != r.header.Get("electric-handle") || len(again.msgs) != 5 {
		t.Fatalf("refetch: %d %s %v", again.status, again.body, again.header)
	}
	testsupport.Eventually(t, "no shape_http left running", func() bool {
		var shapes []syncapi.ShapeInfo
		_ = s.call(t, syncapi.OpListShapes, struct{}{}, &shapes)
		for _, sh := range shapes {
			if sh.Subscribers > 0 {
				return false
			}
		}
		return true
	})
}
