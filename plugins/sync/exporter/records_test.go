package exporter_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/exporter"
)

// TestRecordsJSONTypedAsPhoenixKit checks the JSON-typed values a PhoenixKit
// receiver binds through Postgrex: numbers, booleans, numeric as a string, ISO 8601
// times, documents, lists and the base64 bytea wrapper.
func TestRecordsJSONTypedAsPhoenixKit(t *testing.T) {
	ctx := context.Background()
	pool, _ := newDB(t)
	if _, err := pool.Exec(ctx, `CREATE DOMAIN price AS numeric(12,2);
		CREATE TABLE typed (id bigint PRIMARY KEY, n int, f double precision, p price, ok boolean, s text, u uuid,
			d date, ts timestamp, tz timestamptz, j jsonb, tags text[], b bytea, none text);
		INSERT INTO typed VALUES (1, 42, 0.5, 1234.50, true, 'é"x', '6f1c8c3e-8f0e-4d55-9f43-2b1e0c1d2a3b', '2025-12-15',
			'2025-12-15 18:56:59.387453', '2025-12-15 19:56:59.387453+01', '{"a":[1,"x"]}', ARRAY['a b',NULL], '\x0001ff', NULL)`); err != nil {
		t.Fatal(err)
	}
	snap, err := exporter.Begin(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	sch, err := catalog.GetSchema(ctx, snap.Querier(), "typed")
	if err != nil {
		t.Fatal(err)
	}
	page, err := snap.RecordsJSON(ctx, sch, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 1 || page.HasMore {
		t.Fatalf("page %+v", page)
	}
	var got map[string]any
	if err := json.Unmarshal(page.Records[0], &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"id": 1.0, "n": 42.0, "f": 0.5, "p": "1234.50", "ok": true, "s": `é"x`, "u": "6f1c8c3e-8f0e-4d55-9f43-2b1e0c1d2a3b",
		"d": "2025-12-15", "ts": "2025-12-15T18:56:59.387453", "tz": "2025-12-15T18:56:59.387453Z",
		"j": map[string]any{"a": []any{1.0, "x"}}, "tags": []any{"a b", nil},
		"b": map[string]any{"__phoenix_kit_binary__": "AAH/"}, "none": nil,
	}
	for k, w := range want {
		if g, _ := json.Marshal(got[k]); string(g) != mustJSON(w) {
			t.Errorf("%s: got %s, want %s", k, g, mustJSON(w))
		}
	}
	if len(got) != len(want) {
		t.Errorf("record has %d fields, want %d: %v", len(got), len(want), got)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestRecordsPageBytes checks a page of large rows stops at the byte budget with
// has_more, in both encodings, and that paging on from there misses nothing.
func TestRecordsPageBytes(t *testing.T) {
	ctx := context.Background()
	pool, _ := newDB(t)
	if _, err := pool.Exec(ctx, `CREATE TABLE big (id int PRIMARY KEY, v text);
		INSERT INTO big SELECT g, repeat('x', 256*1024) FROM generate_series(1, 40) g`); err != nil {
		t.Fatal(err)
	}
	snap, err := exporter.Begin(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	snap.PageBytes = 1 << 20
	sch, err := catalog.GetSchema(ctx, snap.Querier(), "big")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for offset := 0; ; {
		p, err := snap.Records(ctx, sch, offset, 400)
		if err != nil {
			t.Fatal(err)
		}
		size := 0
		for _, r := range p.Records {
			size += len(*r["v"])
		}
		if size > 1<<20+256*1024+64 {
			t.Fatalf("text page of %d bytes over a 1 MiB budget", size)
		}
		seen += len(p.Records)
		offset += len(p.Records)
		if !p.HasMore {
			break
		}
	}
	if seen != 40 {
		t.Errorf("text pages held %d rows, want 40", seen)
	}
	jp, err := snap.RecordsJSON(ctx, sch, 0, 400)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, r := range jp.Records {
		total += len(r)
	}
	if !jp.HasMore || len(jp.Records) >= 40 || total > 1<<20+300*1024 || !strings.Contains(string(jp.Records[0]), `"id": 1`) {
		t.Errorf("JSON page: %d rows, %d bytes, has_more %v", len(jp.Records), total, jp.HasMore)
	}
}
