package exporter_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/exporter"
)

// readRange streams one range of sch (after, until] in text, whole.
func readRange(t *testing.T, snap *exporter.Snapshot, pool *pgxpool.Pool, sch *catalog.Schema, after, until []string) (data []byte, rows int) {
	t.Helper()
	ctx := context.Background()
	ts, err := snap.Stream(ctx, sch, after, until, false)
	if err != nil {
		t.Fatal(err)
	}
	err = ts.Run(ctx, pool, exporter.StreamOptions{BatchRows: 1000}, func(b exporter.Batch) error {
		data = append(data, b.Data...)
		rows += b.Rows
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return data, rows
}

// checkCover cuts table into parts ranges and reads each: together they hold the
// whole table's rows exactly, in order (no row twice, none missing). It returns the
// ranges' row counts.
func checkCover(t *testing.T, pool *pgxpool.Pool, table string, parts int) []int {
	t.Helper()
	ctx := context.Background()
	snap, err := exporter.Begin(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	sch, err := catalog.GetSchema(ctx, snap.Querier(), table)
	if err != nil {
		t.Fatal(err)
	}
	r, err := snap.Ranges(ctx, sch, parts)
	if err != nil {
		t.Fatalf("%s: ranges: %v", table, err)
	}
	if len(r.Bounds) > parts-1 || r.Bytes < 0 {
		t.Fatalf("%s: %d bounds for %d parts, %d bytes", table, len(r.Bounds), parts, r.Bytes)
	}
	whole, total := readRange(t, snap, pool, sch, nil, nil)
	var got []byte
	var counts []int
	var after []string
	for i := 0; i <= len(r.Bounds); i++ {
		var until []string
		if i < len(r.Bounds) {
			until = r.Bounds[i]
		}
		data, n := readRange(t, snap, pool, sch, after, until)
		got = append(got, data...)
		counts = append(counts, n)
		after = until
	}
	if !bytes.Equal(got, whole) {
		t.Fatalf("%s: the %d ranges (%v) do not hold the table's %d rows exactly: %d bytes against %d", table, len(counts), counts, total, len(got), len(whole))
	}
	return counts
}

// TestRangesCoverTheTable cuts tables keyed by int, text, uuid and a composite
// key, with edge values (the type's extremes, empty and escaped text), into ranges
// that together hold every row once.
func TestRangesCoverTheTable(t *testing.T) {
	pool, _ := newDB(t)
	testsupport.Exec(t, pool, `
		CREATE TABLE ints (id bigint PRIMARY KEY, v text);
		INSERT INTO ints SELECT g, 'v' || g FROM generate_series(-500, 500) g;
		INSERT INTO ints VALUES (-9223372036854775808, 'min'), (9223372036854775807, 'max'), (0 - 1000000, 'far');
		CREATE TABLE texts (k text PRIMARY KEY, v int);
		INSERT INTO texts SELECT md5(g::text), g FROM generate_series(1, 700) g;
		INSERT INTO texts VALUES (E'', 1), (E'a\tb', 2), (E'back\\slash', 3), (E'new\nline', 4), ('ünï', 5), (E'\x01', 6), ('''q''', 7);
		CREATE TABLE uuids (id uuid PRIMARY KEY, v int);
		INSERT INTO uuids SELECT md5(g::text)::uuid, g FROM generate_series(1, 600) g;
		INSERT INTO uuids VALUES ('00000000-0000-0000-0000-000000000000', 0), ('ffffffff-ffff-ffff-ffff-ffffffffffff', 1);
		CREATE TABLE comp (a int, b text, c date, v text, PRIMARY KEY (a, b, c));
		INSERT INTO comp SELECT g % 7, 'b' || (g % 13), date '2024-01-01' + g, 'x' FROM generate_series(1, 900) g;
		INSERT INTO comp VALUES (-2147483648, '', 'infinity', 'edge'), (2147483647, E'\t', '-infinity', 'edge');
		CREATE TABLE nokey (v int);
		INSERT INTO nokey SELECT g FROM generate_series(1, 100) g;
		CREATE TABLE one (id int PRIMARY KEY);
		INSERT INTO one VALUES (1);
		CREATE TABLE empty (id int PRIMARY KEY);`)
	for _, table := range []string{"ints", "texts", "uuids", "comp"} {
		for _, parts := range []int{2, 4, 7} {
			counts := checkCover(t, pool, table, parts)
			if len(counts) != parts {
				t.Errorf("%s in %d parts: %d ranges (%v); a table read whole is cut exactly", table, parts, len(counts), counts)
			}
		}
	}
	for _, table := range []string{"nokey", "one", "empty"} {
		if counts := checkCover(t, pool, table, 4); table != "one" && len(counts) != 1 {
			t.Errorf("%s: %d ranges, want one", table, len(counts))
		}
	}
}

// TestRangesSampleALargeTable cuts a table of more pages than Ranges reads whole
// from a sample: the ranges still cover it exactly, and come out of about the same
// size.
func TestRangesSampleALargeTable(t *testing.T) {
	pool, _ := newDB(t)
	testsupport.Exec(t, pool, `CREATE TABLE big (id int PRIMARY KEY, pad text);
		INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 40000) g;
		ANALYZE big`)
	counts := checkCover(t, pool, "big", 4)
	if len(counts) != 4 {
		t.Fatalf("%d ranges (%v), want 4", len(counts), counts)
	}
	for _, n := range counts {
		if n < 40000/4/2 || n > 40000/4*2 {
			t.Errorf("uneven ranges: %v", counts)
		}
	}
}

// TestRangeOfATableWithoutKey refuses an upper bound on a table without a primary
// key, which is read whole.
func TestRangeOfATableWithoutKey(t *testing.T) {
	ctx := context.Background()
	pool, _ := newDB(t)
	testsupport.Exec(t, pool, `CREATE TABLE nokey (v int)`)
	snap, err := exporter.Begin(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	sch, err := catalog.GetSchema(ctx, snap.Querier(), "nokey")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snap.Stream(ctx, sch, nil, []string{"(0,1)"}, false); !errors.Is(err, exporter.ErrNoRange) {
		t.Fatalf("got %v, want ErrNoRange", err)
	}
}
