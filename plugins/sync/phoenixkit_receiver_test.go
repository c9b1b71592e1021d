package main_test

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"
	"testing"
	"time"
)

// pkReceiver drives a sender exactly as PhoenixKit's receiver
// (phoenix_kit_sync's WebSocketClient) does: [null, ref, topic, event, payload]
// frames, a join of {"receiver_info": …} alone, requests carrying their own "ref"
// in the payload, answers matched on the payload's "ref".
type pkReceiver struct {
	*rawClient
	topic string
	ref   int
}

func dialPhoenixKit(t *testing.T, s *site, code string) *pkReceiver {
	return &pkReceiver{rawClient: dialRaw(t, s, code), topic: "transfer:" + code}
}

func (r *pkReceiver) frame(ref, event string, payload map[string]any) {
	r.t.Helper()
	b, err := json.Marshal([]any{nil, ref, r.topic, event, payload})
	if err != nil {
		r.t.Fatal(err)
	}
	r.sendRaw(string(b))
}

// join sends PhoenixKit's join and returns the first frame that answers it.
func (r *pkReceiver) join() []json.RawMessage {
	r.t.Helper()
	r.ref++
	r.frame(strconv.Itoa(r.ref), "phx_join", map[string]any{"receiver_info": map[string]any{"site_url": "https://pk.example", "project_title": "PK"}})
	for {
		if f := r.next(); str(f[3]) == "phx_reply" {
			return f
		}
	}
}

// request sends event with the payload ref PhoenixKit adds and returns the answer
// whose payload carries that ref, and the whole frame.
func (r *pkReceiver) request(event string, payload map[string]any) (string, map[string]json.RawMessage, []json.RawMessage) {
	r.t.Helper()
	r.ref++
	ref := strconv.Itoa(r.ref)
	if payload == nil {
		payload = map[string]any{}
	}
	payload["ref"] = ref
	r.frame(ref, event, payload)
	for {
		f := r.next()
		var p map[string]json.RawMessage
		if err := json.Unmarshal(f[4], &p); err != nil {
			r.t.Fatalf("payload %s: %v", f[4], err)
		}
		if str(p["ref"]) == ref {
			return str(f[3]), p, f
		}
	}
}

// TestPhoenixKitReceiverPullsFromOurSender: issue 10 §1 — every answer our sender
// gives a PhoenixKit receiver has the shape and the values that receiver reads.
func TestPhoenixKitReceiverPullsFromOurSender(t *testing.T) {
	a := startSite(t, siteOptions{})
	a.exec(t, `CREATE TABLE pk_types (id bigint PRIMARY KEY, i integer, f double precision, b boolean, n numeric(10,2),
			u uuid, ts timestamptz, d date, j jsonb, arr integer[], tarr text[], bin bytea, t text);
		INSERT INTO pk_types VALUES
			(1, 42, 1.5, true, 12.30, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2025-12-15 18:56:59.387453+00', '2025-12-15',
			 '{"a": {"b": [1, "x"]}}', '{1,2,3}', '{"x","y z"}', '\x00016869', 'plain'),
			(2, NULL, NULL, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
		INSERT INTO pk_types SELECT g, g FROM generate_series(3, 1502) g`)
	code := a.newCode(t).Code
	r := dialPhoenixKit(t, a, code)

	// The join reply is exactly PhoenixKit's: its receiver is joined only when
	// response is {}.
	f := r.join()
	var reply struct {
		Status   string                     `json:"status"`
		Response map[string]json.RawMessage `json:"response"`
	}
	if err := json.Unmarshal(f[4], &reply); err != nil || reply.Status != "ok" || reply.Response == nil || len(reply.Response) != 0 || string(f[0]) != "null" || str(f[1]) != "1" {
		t.Fatalf("join reply %s", f)
	}

	event, p, _ := r.request("request:capabilities", nil)
	var caps struct {
		Version      string   `json:"version"`
		Features     []string `json:"features"`
		Capabilities struct {
			Version           string   `json:"version"`
			PhoenixKitVersion string   `json:"phoenix_kit_version"`
			Features          []string `json:"features"`
		} `json:"capabilities"`
	}
	whole, _ := json.Marshal(p)
	_ = json.Unmarshal(whole, &caps)
	if event != "response:capabilities" || caps.Capabilities.Version != "1.0.0" || caps.Capabilities.PhoenixKitVersion == "" ||
		len(caps.Capabilities.Features) != 3 || caps.Capabilities.Features[2] != "fetch_records" || caps.Version != "2.0.0" || !slices.Contains(caps.Features, "stream.v1") || !slices.Contains(caps.Features, "records.v1") {
		t.Fatalf("capabilities %s %s", event, whole)
	}

	event, p, _ = r.request("request:tables", nil)
	var tables []struct {
		Name           string `json:"name"`
		EstimatedCount int64  `json:"estimated_count"`
	}
	_ = json.Unmarshal(p["tables"], &tables)
	if event != "response:tables" || len(tables) != 1 || tables[0].Name != "pk_types" || tables[0].EstimatedCount != 1502 {
		t.Fatalf("tables %s %s", event, p["tables"])
	}

	event, p, _ = r.request("request:schema", map[string]any{"table": "pk_types"})
	var sch struct {
		Columns []struct {
			Name string `json:"name"`
		} `json:"columns"`
	}
	if _ = json.Unmarshal(p["schema"], &sch); event != "response:schema" || len(sch.Columns) != 13 {
		t.Fatalf("schema %s %s", event, p["schema"])
	}

	event, p, _ = r.request("request:count", map[string]any{"table": "pk_types"})
	if event != "response:count" || string(p["count"]) != "1502" {
		t.Fatalf("count %s %v", event, p)
	}

	// More than PhoenixKit's own 1000 is served; values are JSON-typed.
	event, p, _ = r.request("request:records", map[string]any{"table": "pk_types", "offset": 0, "limit": 1200})
	var records []map[string]json.RawMessage
	if err := json.Unmarshal(p["records"], &records); err != nil || event != "response:records" || len(records) != 1200 ||
		string(p["offset"]) != "0" || string(p["has_more"]) != "true" {
		t.Fatalf("records %s: %d records, offset %s, has_more %s, %v", event, len(records), p["offset"], p["has_more"], err)
	}
	bin := base64.StdEncoding.EncodeToString([]byte("\x00\x01hi"))
	want := map[string]string{
		"id": `1`, "i": `42`, "f": `1.5`, "b": `true`, "n": `"12.30"`, "u": `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`,
		"ts": `"2025-12-15T18:56:59.387453Z"`, "d": `"2025-12-15"`, "j": `{"a":{"b":[1,"x"]}}`, "arr": `[1,2,3]`,
		"tarr": `["x","y z"]`, "bin": `{"__phoenix_kit_binary__":"` + bin + `"}`, "t": `"plain"`,
	}
	for col, w := range want {
		if got := compact(t, records[0][col]); got != w {
			t.Errorf("%s: %s, want %s", col, got, w)
		}
	}
	for col, v := range records[1] {
		if w := map[string]string{"id": "2", "b": "false"}[col]; w == "" && string(v) != "null" || w != "" && string(v) != w {
			t.Errorf("row 2 %s: %s", col, v)
		}
	}
	event, p, _ = r.request("request:records", map[string]any{"table": "pk_types", "offset": 1200, "limit": 1000})
	_ = json.Unmarshal(p["records"], &records)
	if event != "response:records" || len(records) != 302 || string(p["has_more"]) != "false" || string(p["offset"]) != "1200" {
		t.Fatalf("last page %s: %d records, has_more %s", event, len(records), p["has_more"])
	}

	// Errors echo the payload ref too (and the frame keeps its ref).
	event, p, f = r.request("request:records", map[string]any{"table": "no_such_table", "offset": 0, "limit": 10})
	if event != "response:error" || str(p["error"]) != "unknown_table" || str(f[1]) != str(p["ref"]) {
		t.Fatalf("error %s %s", event, f[4])
	}
	event, p, _ = r.request("request:schema", map[string]any{"table": "a\x00b"})
	if event != "response:error" || str(p["error"]) != "bad_request" {
		t.Fatalf("NUL table %s %v", event, p)
	}
}

// TestPhoenixKitReceiverWaitsForApproval: in require_approval mode a PhoenixKit
// receiver (which reads any join reply but {} as a refusal) gets its join reply
// once an admin approves.
func TestPhoenixKitReceiverWaitsForApproval(t *testing.T) {
	a := seeded(t, siteOptions{mode: "require_approval"})
	r := dialPhoenixKit(t, a, a.newCode(t).Code)
	r.ref++
	r.frame("1", "phx_join", map[string]any{"receiver_info": map[string]any{"site_url": "https://pk.example"}})
	var pending []struct {
		ID string `json:"id"`
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(pending) == 0 && time.Now().Before(deadline) {
		if err := a.call(t, "pending_approvals", struct{}{}, &pending); err != nil {
			t.Fatal(err)
		}
	}
	if len(pending) != 1 {
		t.Fatalf("pending %+v", pending)
	}
	if f := r.next(); str(f[3]) != "awaiting_approval" {
		t.Fatalf("before the decision: %s", f)
	}
	if err := a.call(t, "approve", map[string]string{"id": pending[0].ID}, nil); err != nil {
		t.Fatal(err)
	}
	f := r.next()
	if str(f[3]) != "phx_reply" || str(f[1]) != "1" || compact(t, f[4]) != `{"response":{},"status":"ok"}` {
		t.Fatalf("join reply after approval %s", f)
	}
	if event, p, _ := r.request("request:count", map[string]any{"table": "customers"}); event != "response:count" || string(p["count"]) != "2000" {
		t.Fatalf("count after approval %s %v", event, p)
	}
}

// compact re-encodes a JSON value with its object keys sorted and no spaces.
func compact(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}
