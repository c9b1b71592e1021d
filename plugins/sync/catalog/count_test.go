package catalog_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
)

// rowsOf returns the listed rows and exactness of each table, by name.
func rowsOf(t *testing.T, list []catalog.Table) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tb := range list {
		out[tb.Name] = fmt.Sprintf("%d exact=%v", tb.Rows, tb.Exact)
	}
	return out
}

// Counts are exact by default: after ANALYZE and 500 more inserts the planner still
// says 1000 where count(*) is 1500. The estimate only when asked for (Exact, as older
// callers set it, wins over it). A partitioned table's estimate sums its partitions.
func TestListTablesCountsExactlyByDefault(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	testsupport.Exec(t, db, `CREATE TABLE users (id int PRIMARY KEY) WITH (autovacuum_enabled = false);
		INSERT INTO users SELECT generate_series(1, 1000);
		CREATE TABLE events (id int, at date NOT NULL, PRIMARY KEY (at, id)) PARTITION BY RANGE (at);
		CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') WITH (autovacuum_enabled = false);
		CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') WITH (autovacuum_enabled = false);
		INSERT INTO events SELECT i, '2024-06-01' FROM generate_series(1, 30) i;
		INSERT INTO events SELECT i, '2025-06-01' FROM generate_series(1, 70) i;
		CREATE TABLE "Empty ""one""" (id int);
		ANALYZE users; ANALYZE events_2024; ANALYZE events_2025;
		INSERT INTO users SELECT generate_series(1001, 1500);
		INSERT INTO events SELECT i, '2025-07-01' FROM generate_series(1, 20) i;`)
	exact := map[string]string{"users": "1500 exact=true", "events": "120 exact=true", `Empty "one"`: "0 exact=true"}
	for _, o := range []catalog.ListOptions{{}, {Exact: true}, {Exact: true, Estimate: true}} {
		list, err := catalog.ListTables(ctx, db, o)
		if err != nil {
			t.Fatal(err)
		}
		if got := rowsOf(t, list); fmt.Sprint(got) != fmt.Sprint(exact) {
			t.Errorf("ListTables(%+v) = %v, want %v", o, got, exact)
		}
	}
	list, err := catalog.ListTables(ctx, db, catalog.ListOptions{Estimate: true})
	if err != nil {
		t.Fatal(err)
	}
	// A never-analysed (here: empty) table is counted even then.
	want := map[string]string{"users": "1000 exact=false", "events": "100 exact=false", `Empty "one"`: "0 exact=true"}
	if got := rowsOf(t, list); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ListTables(Estimate) = %v, want %v", got, want)
	}
}

// Many tables are counted with one statement per 500, not one round trip each.
func TestListTablesCountsManyTablesAtOnce(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	var ddl strings.Builder
	for i := range 620 {
		fmt.Fprintf(&ddl, "CREATE TABLE t%03d (id int); INSERT INTO t%03d SELECT generate_series(1, %d);\n", i, i, i%7)
	}
	testsupport.Exec(t, db, ddl.String())
	counter := &countingQuerier{Querier: db}
	list, err := catalog.ListTables(ctx, counter, catalog.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 620 {
		t.Fatalf("%d tables listed", len(list))
	}
	for i, tb := range list {
		if tb.Name != fmt.Sprintf("t%03d", i) || tb.Rows != int64(i%7) || !tb.Exact {
			t.Fatalf("entry %d: %+v", i, tb)
		}
	}
	if counter.n != 3 {
		t.Fatalf("%d statements for 620 tables, want 3 (the list and two of counts)", counter.n)
	}
}

// countingQuerier counts the statements run through it.
type countingQuerier struct {
	catalog.Querier
	n int
}

func (c *countingQuerier) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	c.n++
	return c.Querier.Query(ctx, sql, args...)
}

func (c *countingQuerier) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	c.n++
	return c.Querier.QueryRow(ctx, sql, args...)
}
