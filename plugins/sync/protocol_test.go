package main_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// rawClient speaks the documented JSON-array frames and nothing else, like a
// PhoenixKit receiver would.
type rawClient struct {
	t    *testing.T
	conn *websocket.Conn
}

func dialRaw(t *testing.T, s *site, code string) *rawClient {
	t.Helper()
	u := "ws" + strings.TrimPrefix(s.url, "http") + "/fiberkit/sync/websocket?code=" + code + "&vsn=2.0.0"
	conn, resp, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (HTTP %d)", err, status)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn}
}

func (r *rawClient) sendRaw(s string) {
	r.t.Helper()
	if err := r.conn.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

// next reads frames until one that is not a push, and returns it as [join_ref, ref, topic, event, payload].
func (r *rawClient) next() []json.RawMessage {
	r.t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := r.conn.ReadMessage()
	if err != nil {
		r.t.Fatal(err)
	}
	var f []json.RawMessage
	if err := json.Unmarshal(data, &f); err != nil || len(f) != 5 {
		r.t.Fatalf("frame %s is not a 5-element array", data)
	}
	return f
}

func str(raw json.RawMessage) string {
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

func TestPhoenixKitStyleClientListsTablesAndFetchesRecords(t *testing.T) {
	a := seeded(t, siteOptions{})
	code := a.newCode(t).Code
	r := dialRaw(t, a, code)
	topic := `"transfer:` + code + `"`
	r.sendRaw(`["1","1",` + topic + `,"phx_join",{"receiver_info":{"app":"phoenix_kit","version":"1.7.63"}}]`)
	f := r.next()
	if str(f[3]) != "phx_reply" || str(f[1]) != "1" || !strings.Contains(string(f[4]), `"status":"ok"`) {
		t.Fatalf("join reply %s", f)
	}
	r.sendRaw(`["1","2",` + topic + `,"request:tables",{}]`)
	f = r.next()
	if str(f[3]) != "response:tables" || str(f[1]) != "2" {
		t.Fatalf("tables reply %s", f)
	}
	var tables struct {
		Tables []struct {
			Name           string `json:"name"`
			Rows           int64  `json:"rows"`
			EstimatedCount int64  `json:"estimated_count"` // PhoenixKit's field
		} `json:"tables"`
	}
	_ = json.Unmarshal(f[4], &tables)
	names := map[string]int64{}
	for _, tb := range tables.Tables {
		names[tb.Name] = tb.Rows
		if tb.EstimatedCount != tb.Rows {
			t.Fatalf("%s: estimated_count %d, rows %d", tb.Name, tb.EstimatedCount, tb.Rows)
		}
		if strings.HasPrefix(tb.Name, "fiberkit_") {
			t.Fatalf("the kit's own table %s is offered", tb.Name)
		}
	}
	if names["customers"] != 2000 || names["order_items"] != 15000 {
		t.Fatalf("tables %v", names)
	}
	r.sendRaw(`["1","3",` + topic + `,"request:records",{"table":"customers","offset":1990,"limit":100}]`)
	f = r.next()
	var page struct {
		Records []map[string]any `json:"records"` // JSON-typed: no encoding asked for
		Offset  int              `json:"offset"`
		HasMore bool             `json:"has_more"`
	}
	if err := json.Unmarshal(f[4], &page); err != nil || str(f[3]) != "response:records" {
		t.Fatalf("records reply %s", f)
	}
	if len(page.Records) != 10 || page.Offset != 1990 || page.HasMore || page.Records[0]["email"] != "customer1991@example.com" {
		t.Fatalf("page: %d records, offset %d, has_more %v, first email %v", len(page.Records), page.Offset, page.HasMore, page.Records[0]["email"])
	}
	// An unknown or hostile table is an error reply echoing the ref, not a crash.
	r.sendRaw(`["1","4",` + topic + `,"request:count",{"table":"customers; DROP TABLE customers"}]`)
	f = r.next()
	if str(f[3]) != "response:error" || str(f[1]) != "4" || !strings.Contains(string(f[4]), "unknown_table") {
		t.Fatalf("hostile table reply %s", f)
	}
	r.sendRaw(`["1","5",` + topic + `,"request:schema",{"table":"fiberkit_settings"}]`)
	if f = r.next(); !strings.Contains(string(f[4]), "unknown_table") {
		t.Fatalf("secret table reply %s", f)
	}
	// Heartbeats on topic phoenix.
	r.sendRaw(`[null,"6","phoenix","heartbeat",{}]`)
	if f = r.next(); str(f[3]) != "phx_reply" || str(f[1]) != "6" {
		t.Fatalf("heartbeat reply %s", f)
	}
}

func TestMalformedAndOversizedFramesGetErrorReplies(t *testing.T) {
	a := seeded(t, siteOptions{})
	code := a.newCode(t).Code
	r := dialRaw(t, a, code)
	topic := `"transfer:` + code + `"`
	for _, bad := range []string{`garbage`, `{"not":"an array"}`, `[1,2,3]`, `[null,null,"t","e","payload"]`} {
		r.sendRaw(bad)
		if f := r.next(); str(f[3]) != "response:error" || !strings.Contains(string(f[4]), "malformed_frame") {
			t.Fatalf("%s: reply %s", bad, f)
		}
	}
	r.sendRaw(`["1","1",` + topic + `,"phx_join",{"padding":"` + strings.Repeat("x", 2<<20) + `"}]`)
	if f := r.next(); !strings.Contains(string(f[4]), "frame_too_large") {
		t.Fatalf("oversized frame reply %s", f)
	}
	// Requests before joining are refused.
	r.sendRaw(`["1","2",` + topic + `,"request:tables",{}]`)
	if f := r.next(); !strings.Contains(string(f[4]), "not_joined") {
		t.Fatalf("request before join: %s", f)
	}
	// The connection still works.
	r.sendRaw(`["1","3",` + topic + `,"phx_join",{}]`)
	if f := r.next(); str(f[3]) != "phx_reply" {
		t.Fatalf("join after errors: %s", f)
	}
	r.sendRaw(`["1","4",` + topic + `,"stream:start",{"stream":1,"table":"customers","batch_rows":99999999}]`)
	if f := r.next(); !strings.Contains(string(f[4]), "bad_request") {
		t.Fatalf("absurd batch size: %s", f)
	}
}

func TestRefusalsAtUpgradeArePlainHTTP(t *testing.T) {
	a := startSite(t, siteOptions{})
	u := "ws" + strings.TrimPrefix(a.url, "http") + "/fiberkit/sync/websocket?code=NOPE2345&vsn=2.0.0"
	_, resp, err := websocket.DefaultDialer.Dial(u, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bad code: err %v resp %v", err, resp)
	}
	buf := make([]byte, 64)
	n, _ := resp.Body.Read(buf)
	if string(buf[:n]) != "invalid_code" {
		t.Fatalf("reason %q", buf[:n])
	}
}
