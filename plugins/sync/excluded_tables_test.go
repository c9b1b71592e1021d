package main_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// TestExcludedTablesSettingHidesSecrets: issue 10 §4 — with the default
// excluded_tables, user_tokens is neither listed nor served (as unknown_table) on
// any path, to a code or a permanent connection, while orders is.
func TestExcludedTablesSettingHidesSecrets(t *testing.T) {
	a := seeded(t, siteOptions{})
	a.exec(t, `CREATE TABLE user_tokens (id bigint PRIMARY KEY, token text); INSERT INTO user_tokens VALUES (1, 'secret')`)
	ctx := context.Background()
	c := a.connect(t)
	defer c.Close()
	tok, err := dialToken(t, a, a.newConnection(t, connection.Limits{}, true).Token)
	if err != nil {
		t.Fatal(err)
	}
	for who, cl := range map[string]*client.Client{"code": c, "connection": tok} {
		tables, err := cl.ListTables(ctx)
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, tb := range tables {
			names[tb.Name] = true
		}
		if names["user_tokens"] || !names["orders"] {
			t.Fatalf("%s: tables %v", who, names)
		}
		for _, name := range []string{"user_tokens", "public.user_tokens"} {
			if _, err := cl.GetCount(ctx, name); remoteCode(err) != wire.ErrUnknownTable {
				t.Fatalf("%s: count %s: %v", who, name, err)
			}
			if _, err := cl.GetSchema(ctx, name); remoteCode(err) != wire.ErrUnknownTable {
				t.Fatalf("%s: schema %s: %v", who, name, err)
			}
			if _, err := cl.FetchRecords(ctx, name, 0, 10); remoteCode(err) != wire.ErrUnknownTable {
				t.Fatalf("%s: records %s: %v", who, name, err)
			}
		}
		if n, err := cl.GetCount(ctx, "orders"); err != nil || n == 0 {
			t.Fatalf("%s: orders %d %v", who, n, err)
		}
	}
	// The binary path too.
	c.Close()
	tok.Close()
	r := dialStreamer(t, a, a.newCode(t).Code, "")
	r.send("2", wire.StreamStart, wire.Start{Stream: 1, Table: "user_tokens"})
	var e wire.ErrorPayload
	if f := r.answer("2", time.Now().Add(10*time.Second)); json.Unmarshal(f.Payload, &e) != nil || e.Error != wire.ErrUnknownTable {
		t.Fatalf("stream of user_tokens: %s %s", f.Event, f.Payload)
	}
}

// TestExclusionsFollowPartitionsAndInheritance: issue 11 §2 — a connection's limits
// are judged on the table a name resolves to and the tables above it: a partition
// or inheritance child of an excluded table is refused, and a parent is read
// without the rows of its excluded children — on the JSON and the binary path, in
// counts, checksums and listings alike.
func TestExclusionsFollowPartitionsAndInheritance(t *testing.T) {
	a := startSite(t, siteOptions{})
	a.exec(t, `CREATE TABLE events (id bigint PRIMARY KEY, v text) PARTITION BY RANGE (id);
		CREATE TABLE events_p1 PARTITION OF events FOR VALUES FROM (1) TO (100);
		CREATE TABLE events_p2 PARTITION OF events FOR VALUES FROM (100) TO (200);
		INSERT INTO events SELECT g, 'e' || g FROM generate_series(1, 150) g;
		CREATE TABLE inh_parent (id bigint PRIMARY KEY, v text);
		CREATE TABLE inh_child (extra text) INHERITS (inh_parent);
		INSERT INTO inh_parent SELECT g, 'p' FROM generate_series(1, 5) g;
		INSERT INTO inh_child SELECT g, 'c', 'x' FROM generate_series(1001, 1003) g;
		CREATE TABLE orders (id bigint PRIMARY KEY); INSERT INTO orders VALUES (1)`)
	ctx := context.Background()
	limited := a.newConnection(t, connection.Limits{ExcludedTables: []string{"orders", "events", "inh_child"}}, true)
	cl, err := dialToken(t, a, limited.Token)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"events_p1", "public.events_p2", "inh_child", "orders"} {
		if _, err := cl.FetchRecords(ctx, name, 0, 10); remoteCode(err) != "table_not_allowed" {
			t.Fatalf("records of %s: %v", name, err)
		}
		if _, err := cl.GetCount(ctx, name); remoteCode(err) != "table_not_allowed" {
			t.Fatalf("count of %s: %v", name, err)
		}
	}
	page, err := cl.FetchRecords(ctx, "inh_parent", 0, 100)
	if err != nil || len(page.Records) != 5 {
		t.Fatalf("inh_parent: %d records (want its own 5, not the excluded child's), %v", len(page.Records), err)
	}
	if n, err := cl.GetCount(ctx, "inh_parent"); err != nil || n != 5 {
		t.Fatalf("count of inh_parent %d %v", n, err)
	}
	tables, _ := cl.ListTables(ctx)
	for _, tb := range tables {
		if tb.Name == "inh_parent" && tb.Rows != 5 || tb.Name == "events" || tb.Name == "inh_child" {
			t.Fatalf("listed %+v", tb)
		}
	}
	// The binary path: the parent streams its own rows only; a partition is refused.
	r := dialStreamer(t, a, "", limited.Token)
	r.send("p", wire.StreamStart, wire.Start{Stream: 1, Table: "inh_parent", Credit: 16})
	if f := r.answer("p", time.Now().Add(10*time.Second)); f.Event != wire.EventReply {
		t.Fatalf("stream inh_parent: %s %s", f.Event, f.Payload)
	}
	for deadline := time.Now().Add(10 * time.Second); r.ends[1] == "" && time.Now().Before(deadline); {
		r.read(deadline)
	}
	if r.ends[1] != "end" || r.rows[1] != 5 {
		t.Fatalf("stream of inh_parent: %s, %d rows", r.ends[1], r.rows[1])
	}
	r.send("q", wire.StreamStart, wire.Start{Stream: 2, Table: "events_p1"})
	var e wire.ErrorPayload
	if f := r.answer("q", time.Now().Add(10*time.Second)); json.Unmarshal(f.Payload, &e) != nil || e.Error != "table_not_allowed" {
		t.Fatalf("stream of events_p1: %s %s", f.Event, f.Payload)
	}

	// Each receiver holds a snapshot, so a pool connection, while connected: the
	// plugin's pool holds 4.
	cl.Close()
	r.conn.Close()

	// One partition excluded: the parent is read without it, and not described with it.
	part, err := dialToken(t, a, a.newConnection(t, connection.Limits{ExcludedTables: []string{"events_p2"}}, true).Token)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := part.GetCount(ctx, "events"); err != nil || n != 99 {
		t.Fatalf("count of events without events_p2: %d %v", n, err)
	}
	if page, err := part.FetchRecords(ctx, "events", 90, 100); err != nil || len(page.Records) != 9 || page.HasMore {
		t.Fatalf("events without events_p2: %d records, has_more %v, %v", len(page.Records), page.HasMore, err)
	}
	sch, err := part.GetSchema(ctx, "events")
	if err != nil || sch.Partition == nil || len(sch.Partition.Partitions) != 1 || sch.Partition.Partitions[0].Name != "events_p1" {
		t.Fatalf("schema of events: %+v %v", sch, err)
	}
	if _, err := part.GetCount(ctx, "events_p1"); err != nil {
		t.Fatalf("events_p1 itself: %v", err)
	}
	part.Close()
	// An allow list naming the parent allows its partitions.
	allow, err := dialToken(t, a, a.newConnection(t, connection.Limits{AllowedTables: []string{"events"}}, true).Token)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := allow.GetCount(ctx, "events"); err != nil || n != 150 {
		t.Fatalf("allowed events: %d %v", n, err)
	}
	if n, err := allow.GetCount(ctx, "events_p2"); err != nil || n != 51 {
		t.Fatalf("partition of an allowed table: %d %v", n, err)
	}
}
