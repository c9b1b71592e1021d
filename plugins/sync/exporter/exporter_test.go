package exporter_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/exporter"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func newDB(t *testing.T) (*pgxpool.Pool, string) {
	t.Helper()
	pool := pgtest.NewPool(t)
	var name string
	if err := pool.QueryRow(context.Background(), "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	return pool, name
}

// readAll streams sch's rows after the key after (TableStream) and returns the
// batches, their data kept.
func readAll(t *testing.T, snap *exporter.Snapshot, pool *pgxpool.Pool, sch *catalog.Schema, after []string, o exporter.StreamOptions, binary bool) ([]exporter.Batch, error) {
	t.Helper()
	ctx := context.Background()
	ts, err := snap.Stream(ctx, sch, after, nil, binary)
	if err != nil {
		return nil, err
	}
	var batches []exporter.Batch
	err = ts.Run(ctx, pool, o, func(b exporter.Batch) error {
		if b.Rows == 0 && !b.Done {
			t.Error("an empty batch that is not the last")
		}
		b.Data = append([]byte(nil), b.Data...)
		batches = append(batches, b)
		return nil
	})
	if err == nil && (len(batches) == 0 || !batches[len(batches)-1].Done) {
		t.Error("the last batch is not Done")
	}
	return batches, err
}

// exportAll reads a whole table in text, batches of at most limit rows and budget
// bytes (0: the default), and checks every batch's bounds.
func exportAll(t *testing.T, snap *exporter.Snapshot, pool *pgxpool.Pool, sch *catalog.Schema, limit, budget int) (data []byte, rows int, batches []exporter.Batch) {
	t.Helper()
	batches, err := readAll(t, snap, pool, sch, nil, exporter.StreamOptions{BatchRows: limit, BatchBytes: budget}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range batches {
		if b.Rows != bytes.Count(b.Data, []byte{'\n'}) {
			t.Fatalf("batch says %d rows, holds %d lines", b.Rows, bytes.Count(b.Data, []byte{'\n'}))
		}
		if b.Rows > limit {
			t.Fatalf("batch of %d rows, limit %d", b.Rows, limit)
		}
		data = append(data, b.Data...)
		rows += b.Rows
	}
	return data, rows, batches
}

// TestSettingsFixed checks that the sending database's own settings do not change
// the text of dates, floats, intervals, bytea and timestamps.
func TestSettingsFixed(t *testing.T) {
	ctx := context.Background()
	a, name := newDB(t)
	for _, set := range []string{`DateStyle = 'SQL, DMY'`, `extra_float_digits = 0`, `IntervalStyle = 'sql_standard'`,
		`bytea_output = 'escape'`, `TimeZone = 'Asia/Kolkata'`} {
		testsupport.Exec(t, a, fmt.Sprintf(`ALTER DATABASE %q SET %s`, name, set))
	}
	a.Reset()
	testsupport.Exec(t, a, `CREATE TABLE s (id int PRIMARY KEY, d date, f float8, i interval, b bytea, ts timestamptz);
		INSERT INTO s VALUES (1, '2024-03-04', 0.1::float8 + 0.2::float8, '1 mon -2 days 03:00', '\x00ff', '2024-01-01 05:30:00+05:30')`)
	snap, err := exporter.Begin(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	sch, err := catalog.GetSchema(ctx, snap.Querier(), "s")
	if err != nil {
		t.Fatal(err)
	}
	data, _, _ := exportAll(t, snap, a, sch, 10, 0)
	b := exporter.Batch{Data: data}
	want := "1\t2024-03-04\t0.30000000000000004\t1 mon -2 days +03:00:00\t\\\\x00ff\t2024-01-01 00:00:00+00\n"
	if string(b.Data) != want {
		t.Errorf("batch:\n got %q\nwant %q", b.Data, want)
	}
	page, err := snap.Records(ctx, sch, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := *page.Records[0]["d"] + " " + *page.Records[0]["f"]; got != "2024-03-04 0.30000000000000004" {
		t.Errorf("records: %s", got)
	}
	// The same rows in a database with the default settings have the same checksum.
	c, _ := newDB(t)
	testsupport.Exec(t, c, `CREATE TABLE s (id int PRIMARY KEY, d date, f float8, i interval, b bytea, ts timestamptz)`)
	conn, err := c.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(b.Data), "COPY s FROM STDIN"); err != nil {
		t.Fatal(err)
	}
	sumA, err := snap.Checksum(ctx, sch)
	if err != nil {
		t.Fatal(err)
	}
	sumC, err := exporter.Checksum(ctx, conn, sch, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sumA != sumC {
		t.Errorf("checksums differ: %s %s", sumA, sumC)
	}
	var style string
	if err := conn.QueryRow(ctx, "SHOW DateStyle").Scan(&style); err != nil || style != "ISO, MDY" {
		t.Errorf("Checksum left DateStyle %q on the connection (%v)", style, err)
	}
}

// TestSnapshotAtBegin checks that rows committed after Begin returns are not
// exported.
func TestSnapshotAtBegin(t *testing.T) {
	ctx := context.Background()
	a, _ := newDB(t)
	testsupport.Exec(t, a, `CREATE TABLE z (id int PRIMARY KEY); INSERT INTO z VALUES (1)`)
	snap, err := exporter.Begin(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	testsupport.Exec(t, a, `INSERT INTO z VALUES (2)`)
	sch, err := catalog.GetSchema(ctx, snap.Querier(), "z")
	if err != nil {
		t.Fatal(err)
	}
	data, _, _ := exportAll(t, snap, a, sch, 10, 0)
	if string(data) != "1\n" {
		t.Errorf("exported %q, want only the row from before Begin", data)
	}
}

// TestBatchBytes checks that batches of big rows stay within the byte budget (or
// hold a single row), and that the whole table arrives, once, in order.
func TestBatchBytes(t *testing.T) {
	ctx := context.Background()
	a, _ := newDB(t)
	// Rows of about 1 MB of COPY text (bytea in hex), one of 3 MB, some small.
	testsupport.Exec(t, a, `CREATE TABLE big (id int PRIMARY KEY, b bytea);
		INSERT INTO big SELECT i, convert_to(repeat(md5(i::text), CASE WHEN i = 17 THEN 48000 WHEN i > 40 THEN 1 ELSE 16000 END), 'UTF8')
		FROM generate_series(1, 60) i`)
	snap, err := exporter.Begin(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	const budget = 4 << 20
	sch, err := catalog.GetSchema(ctx, snap.Querier(), "big")
	if err != nil {
		t.Fatal(err)
	}
	all, rows, batches := exportAll(t, snap, a, sch, 5000, budget)
	for n, b := range batches {
		if len(b.Data) > budget && b.Rows != 1 {
			t.Errorf("batch %d: %d rows, %d bytes, over the budget", n, b.Rows, len(b.Data))
		}
	}
	if rows != 60 {
		t.Errorf("%d rows arrived, want 60", rows)
	}
	sum, err := snap.Checksum(ctx, sch)
	if err != nil {
		t.Fatal(err)
	}
	if got := md5hex(all); got != sum {
		t.Errorf("the batches do not add up to the table: %s, want %s", got, sum)
	}
}

func md5hex(b []byte) string {
	h := md5.Sum(b)
	return hex.EncodeToString(h[:])
}

// TestTextKeys pages a table whose keys hold COPY's escaped characters, one row per
// batch (a budget of one byte), in a composite key.
func TestTextKeys(t *testing.T) {
	ctx := context.Background()
	a, _ := newDB(t)
	testsupport.Exec(t, a, `CREATE TABLE k (a text, b int, v text, PRIMARY KEY (a, b));
		INSERT INTO k VALUES (E'tab\there', 1, 'x'), (E'new\nline', 1, 'y'), (E'back\\slash', 2, NULL), (E'cr\r', 3, 'z'),
			('plain', 1, 'p'), ('plain', 2, E'\\N'), (E'\b\f\v', 4, '')`)
	snap, err := exporter.Begin(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	sch, err := catalog.GetSchema(ctx, snap.Querier(), "k")
	if err != nil {
		t.Fatal(err)
	}
	data, rows, batches := exportAll(t, snap, a, sch, 3, 1)
	if rows != 7 {
		t.Errorf("%d rows, want 7", rows)
	}
	for _, b := range batches[:len(batches)-1] {
		if b.Rows != 1 {
			t.Errorf("batch of %d rows under a 1-byte budget", b.Rows)
		}
	}
	sum, err := snap.Checksum(ctx, sch)
	if err != nil {
		t.Fatal(err)
	}
	if md5hex(data) != sum {
		t.Errorf("the batches do not add up to the table:\n%s", data)
	}
}

// TestNoKeyResume checks that a table without a primary key is paged by ctid within
// a snapshot, and that resuming it from another snapshot is refused.
func TestNoKeyResume(t *testing.T) {
	ctx := context.Background()
	a, _ := newDB(t)
	testsupport.Exec(t, a, `CREATE TABLE nk (v int); INSERT INTO nk SELECT generate_series(1, 10)`)
	snap, err := exporter.Begin(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	sch, err := catalog.GetSchema(ctx, snap.Querier(), "nk")
	if err != nil {
		t.Fatal(err)
	}
	_, rows, batches := exportAll(t, snap, a, sch, 3, 0)
	if rows != 10 || len(batches) < 4 {
		t.Errorf("%d rows in %d batches", rows, len(batches))
	}
	// Resuming in the same snapshot from a key it handed out works, and gives the rest.
	rest, err := readAll(t, snap, a, sch, batches[1].LastKey, exporter.StreamOptions{BatchRows: 3}, false)
	if n := countRows(rest); err != nil || n != 4 {
		t.Errorf("resume in the same snapshot: %d rows, %v", n, err)
	}
	snap.Close(ctx)

	snap2, err := exporter.Begin(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer snap2.Close(ctx)
	if _, err := snap2.Stream(ctx, sch, batches[1].LastKey, nil, false); !errors.Is(err, exporter.ErrNoResume) {
		t.Errorf("resume from another snapshot: %v, want ErrNoResume", err)
	}
	if all, err := readAll(t, snap2, a, sch, nil, exporter.StreamOptions{BatchRows: 3}, false); err != nil || countRows(all) != 10 {
		t.Errorf("from the start: %d rows, %v", countRows(all), err)
	}
}

// TestSecretTableRefused checks the exporter refuses a kit table even when handed
// a definition for it directly.
func TestSecretTableRefused(t *testing.T) {
	ctx := context.Background()
	a, _ := newDB(t)
	testsupport.Exec(t, a, `CREATE TABLE fiberkit_csrf (key text PRIMARY KEY, value bytea); INSERT INTO fiberkit_csrf VALUES ('k', 'secret')`)
	snap, err := exporter.Begin(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	sch := &catalog.Schema{Schema: "public", Name: "fiberkit_csrf", PrimaryKey: []string{"key"},
		Columns: []catalog.Column{{Name: "key", Type: "text"}, {Name: "value", Type: "bytea", Nullable: true}}}
	if _, err := snap.Stream(ctx, sch, nil, nil, false); !errors.Is(err, catalog.ErrUnknownTable) {
		t.Errorf("Stream: %v", err)
	}
	if _, err := snap.Records(ctx, sch, 0, 10); !errors.Is(err, catalog.ErrUnknownTable) {
		t.Errorf("Records: %v", err)
	}
	if _, err := snap.Checksum(ctx, sch); !errors.Is(err, catalog.ErrUnknownTable) {
		t.Errorf("Checksum: %v", err)
	}
}

func countRows(batches []exporter.Batch) int {
	n := 0
	for _, b := range batches {
		n += b.Rows
	}
	return n
}
