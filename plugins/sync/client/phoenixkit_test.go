package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// phoenixKitSender speaks the wire as PhoenixKit's sender (phoenix_kit_sync,
// web/sync_websock.ex) does: join reply {"status":"ok","response":{}}; requests
// answered only when their payload carries a "ref", as pushes
// [null, null, topic, "response:…", {…, "ref": ref}]; capabilities nested under
// "capabilities"; information_schema-shaped schemas; JSON-typed values; records
// capped at 1000 with has_more = (len == limit). It serves one table from memory.
type phoenixKitSender struct {
	srv    *httptest.Server
	schema map[string]any
	rows   []map[string]any

	mu     sync.Mutex
	limits []int // the limit of every request:records
}

func newPhoenixKitSender(t *testing.T, schema map[string]any, rows []map[string]any) *phoenixKitSender {
	s := &phoenixKitSender{schema: schema, rows: rows}
	up := websocket.Upgrader{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := r.URL.Query().Get("code")
		if code != "PKCODE22" {
			http.Error(w, "invalid_code", http.StatusForbidden)
			return
		}
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		topic := "transfer:" + code
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				return
			}
			var msg []json.RawMessage
			if json.Unmarshal(data, &msg) != nil || len(msg) != 5 {
				continue
			}
			var ref, event string
			_ = json.Unmarshal(msg[1], &ref)
			_ = json.Unmarshal(msg[3], &event)
			var payload map[string]any
			_ = json.Unmarshal(msg[4], &payload)
			if reply := s.answer(topic, ref, event, payload); reply != nil {
				b, _ := json.Marshal(reply)
				if conn.WriteMessage(websocket.TextMessage, b) != nil {
					return
				}
			}
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *phoenixKitSender) answer(topic, ref, event string, p map[string]any) []any {
	switch event {
	case "phx_join":
		return []any{nil, ref, topic, "phx_reply", map[string]any{"status": "ok", "response": map[string]any{}}}
	case "heartbeat":
		return []any{nil, ref, "phoenix", "phx_reply", map[string]any{"status": "ok", "response": map[string]any{}}}
	}
	clientRef, ok := p["ref"].(string)
	if !ok {
		return nil // PhoenixKit ignores a request without a payload ref
	}
	push := func(ev string, body map[string]any) []any {
		body["ref"] = clientRef
		return []any{nil, nil, topic, ev, body}
	}
	table := s.schema["table"]
	switch event {
	case "request:capabilities":
		return push("response:capabilities", map[string]any{"capabilities": map[string]any{
			"version": "1.0.0", "phoenix_kit_version": "1.7.0", "features": []string{"list_tables", "get_schema", "fetch_records"}}})
	case "request:tables":
		return push("response:tables", map[string]any{"tables": []any{map[string]any{"name": table, "estimated_count": len(s.rows)}}})
	case "request:schema", "request:count":
		if p["table"] != table {
			return push("response:error", map[string]any{"error": "Table not found: " + p["table"].(string)})
		}
		if event == "request:count" {
			return push("response:count", map[string]any{"count": len(s.rows)})
		}
		return push("response:schema", map[string]any{"schema": s.schema})
	case "request:records":
		offset, limit := int(num(p["offset"], 0)), int(num(p["limit"], 100))
		limit = max(1, min(limit, 1000))
		s.mu.Lock()
		s.limits = append(s.limits, limit)
		s.mu.Unlock()
		page := []map[string]any{}
		if offset < len(s.rows) {
			page = s.rows[offset:min(len(s.rows), offset+limit)]
		}
		return push("response:records", map[string]any{"records": page, "offset": offset, "has_more": len(page) == limit})
	}
	return nil
}

func num(v any, def float64) float64 {
	if f, ok := v.(float64); ok {
		return f
	}
	return def
}

// phoenixKitTable is a table as PhoenixKit's SchemaInspector describes it, and
// rows as its DataExporter serializes them.
func phoenixKitTable(n int) (map[string]any, []map[string]any) {
	col := func(name, typ string, extra ...any) map[string]any {
		c := map[string]any{"name": name, "type": typ, "nullable": true, "primary_key": false,
			"default": nil, "element_type": nil, "max_length": nil, "precision": nil, "scale": nil}
		for i := 0; i+1 < len(extra); i += 2 {
			c[extra[i].(string)] = extra[i+1]
		}
		return c
	}
	schema := map[string]any{
		"table": "pk_items", "schema": "public", "primary_key": []string{"id"},
		"columns": []any{
			col("id", "bigint", "nullable", false, "primary_key", true, "default", "nextval('pk_items_id_seq'::regclass)"),
			col("qty", "integer"),
			col("ratio", "double precision"),
			col("price", "numeric", "precision", 12, "scale", 2),
			col("active", "boolean"),
			col("name", "character varying", "max_length", 40),
			col("note", "text"),
			col("ext_id", "uuid"),
			col("born", "date"),
			col("seen_at", "timestamp without time zone"),
			col("paid_at", "timestamp with time zone"),
			col("opens", "time without time zone"),
			col("meta", "jsonb"),
			col("label", "jsonb"),
			col("tags", "ARRAY", "element_type", "text"),
			col("grid", "ARRAY", "element_type", "integer"),
			col("blob", "bytea"),
		},
	}
	rows := make([]map[string]any, n)
	for i := range rows {
		rows[i] = map[string]any{
			"id": i + 1, "qty": i * 3, "ratio": 0.1 + float64(i), "price": "1234.50", "active": i%2 == 0,
			"name": "item " + strings.Repeat("é", i%3), "note": nil, "ext_id": "6f1c8c3e-8f0e-4d55-9f43-2b1e0c1d2a3b",
			"born": "2025-12-15", "seen_at": "2025-12-15T18:56:59.387453", "paid_at": "2025-12-15T18:56:59.387453Z",
			"opens": "09:30:00", "meta": map[string]any{"a": []any{1, "x"}, "b": nil}, "label": "just a string",
			"tags": []any{"a b", `q"uote`, nil, "NULL", ""}, "grid": []any{[]any{1, 2}, []any{3, 4}},
			"blob": map[string]any{"__phoenix_kit_binary__": base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 0xff})},
		}
	}
	return schema, rows
}

// TestPullFromPhoenixKitSender pulls a table of every common type from a sender
// that speaks PhoenixKit's wire exactly (no stream.v1): the client finds the paged
// records API through capabilities, creates the table from PhoenixKit's schema
// shape, converts the JSON-typed values to exact PostgreSQL text, and imports with
// every strategy.
func TestPullFromPhoenixKitSender(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	schema, rows := phoenixKitTable(2345) // three pages of 1000
	pk := newPhoenixKitSender(t, schema, rows)
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	c, err := Connect(ctx, pk.srv.URL+"/sync/websocket", "pkcode22", Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	caps, err := c.Capabilities(ctx)
	if err != nil || caps.Stream() || caps.Version != "1.0.0" {
		t.Fatalf("capabilities %+v, %v: want PhoenixKit's 1.0.0 without stream.v1", caps, err)
	}
	tables, err := c.ListTables(ctx)
	if err != nil || len(tables) != 1 || tables[0].Name != "pk_items" || tables[0].Rows != 2345 {
		t.Fatalf("tables %+v, %v", tables, err)
	}

	res, err := c.Transfer(ctx, pool, "pk_items", TransferOptions{Strategy: syncapi.Skip, CreateMissing: true})
	if err != nil {
		t.Fatalf("transfer: %v (%+v)", err, res)
	}
	if !res.TableCreated || res.Created != 2345 || res.Rows != 2345 || res.Failed != 0 {
		t.Fatalf("result %+v", res)
	}
	pk.mu.Lock()
	for _, l := range pk.limits {
		if l > 1000 {
			t.Errorf("asked for %d records in one page (PhoenixKit caps at 1000)", l)
		}
	}
	pk.mu.Unlock()

	// The created types are the sender's, not information_schema's words.
	var types string
	if err := pool.QueryRow(ctx, `SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum) FROM pg_attribute
		WHERE attrelid = 'public.pk_items'::regclass AND attnum > 0`).Scan(&types); err != nil {
		t.Fatal(err)
	}
	want := "bigint,integer,double precision,numeric(12,2),boolean,character varying(40),text,uuid,date," +
		"timestamp without time zone,timestamp with time zone,time without time zone,jsonb,jsonb,text[],integer[],bytea"
	if types != want {
		t.Errorf("created types\n %s\nwant\n %s", types, want)
	}

	// Every value reads back exactly.
	var got struct {
		qty                                       int
		ratio                                     float64
		price, name, ext, born, seen, paid, opens string
		meta, label, tags, grid, blob             string
		active                                    bool
		note                                      *string
	}
	if err := pool.QueryRow(ctx, `SELECT qty, ratio, price::text, active, name, note, ext_id::text, born::text, seen_at::text,
		(paid_at AT TIME ZONE 'UTC')::text, opens::text, meta::text, label::text, tags::text, grid::text, encode(blob, 'hex')
		FROM pk_items WHERE id = 3`).Scan(&got.qty, &got.ratio, &got.price, &got.active, &got.name, &got.note, &got.ext,
		&got.born, &got.seen, &got.paid, &got.opens, &got.meta, &got.label, &got.tags, &got.grid, &got.blob); err != nil {
		t.Fatal(err)
	}
	checks := []struct{ what, got, want string }{
		{"price", got.price, "1234.50"},
		{"name", got.name, "item éé"},
		{"uuid", got.ext, "6f1c8c3e-8f0e-4d55-9f43-2b1e0c1d2a3b"},
		{"date", got.born, "2025-12-15"},
		{"timestamp", got.seen, "2025-12-15 18:56:59.387453"},
		{"timestamptz", got.paid, "2025-12-15 18:56:59.387453"},
		{"time", got.opens, "09:30:00"},
		{"jsonb object", got.meta, `{"a": [1, "x"], "b": null}`},
		{"jsonb string", got.label, `"just a string"`},
		{"text[]", got.tags, `{"a b","q\"uote",NULL,"NULL",""}`},
		{"integer[][]", got.grid, "{{1,2},{3,4}}"},
		{"bytea", got.blob, "000102ff"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %s, want %s", c.what, c.got, c.want)
		}
	}
	if got.qty != 6 || got.ratio != 2.1 || !got.active || got.note != nil {
		t.Errorf("qty %d ratio %v active %v note %v", got.qty, got.ratio, got.active, got.note)
	}

	// The other strategies into the table that now exists.
	if _, err := pool.Exec(ctx, `UPDATE pk_items SET qty = -1, note = 'local' WHERE id <= 10`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		strategy                  syncapi.Strategy
		created, updated, skipped int
		qty                       int // of row 1 afterwards
		note                      string
		count                     int
	}{
		{syncapi.Skip, 0, 0, 2345, -1, "local", 2345},
		{syncapi.Merge, 0, 2345, 0, 0, "local", 2345}, // merge keeps a local value where the incoming one is null
		{syncapi.Overwrite, 0, 2345, 0, 0, "", 4690 / 2},
		{syncapi.Append, 2345, 0, 0, 0, "", 4690},
	} {
		res, err := c.Transfer(ctx, pool, "pk_items", TransferOptions{Strategy: tc.strategy})
		if err != nil {
			t.Fatalf("%s: %v", tc.strategy, err)
		}
		if res.Created != tc.created || res.Updated != tc.updated || res.Skipped != tc.skipped || res.Failed != 0 {
			t.Errorf("%s: result %+v", tc.strategy, res)
		}
		var qty, count int
		var note *string
		if err := pool.QueryRow(ctx, `SELECT qty, note, (SELECT count(*) FROM pk_items) FROM pk_items WHERE id = 1`).Scan(&qty, &note, &count); err != nil {
			t.Fatal(err)
		}
		if n := deref(note); qty != tc.qty || n != tc.note || count != tc.count {
			t.Errorf("%s: row 1 qty %d note %q, %d rows; want %d %q %d", tc.strategy, qty, n, count, tc.qty, tc.note, tc.count)
		}
	}

	// Appended rows took fresh keys from the identity the nextval default became.
	var maxID int64
	if err := pool.QueryRow(ctx, `SELECT max(id) FROM pk_items`).Scan(&maxID); err != nil || maxID <= 2345 {
		t.Errorf("max id %d (%v): appended rows did not get fresh keys", maxID, err)
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// TestPhoenixKitValuesRefusedClearly checks values that cannot fit their column
// fail with the column named instead of landing as something else.
func TestPhoenixKitValuesRefusedClearly(t *testing.T) {
	for _, tc := range []struct{ raw, typ, want string }{
		{`{"a":1}`, "integer", "an object for a integer column"},
		{`[1,2]`, "text", "a list for a text column"},
		{`{"__phoenix_kit_binary__":"!!"}`, "bytea", "bad __phoenix_kit_binary__ value"},
	} {
		_, err := textRecord(map[string]json.RawMessage{"c": json.RawMessage(tc.raw)}, map[string]string{"c": tc.typ})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `column "c"`) {
			t.Errorf("%s as %s: %v, want %q", tc.raw, tc.typ, err, tc.want)
		}
	}
}
