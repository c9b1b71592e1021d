package importer_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/ddl"
	"github.com/fiberkit/fiberkit/plugins/sync/exporter"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// site is one database standing for one site.
type site struct {
	pool *pgxpool.Pool
}

func newSite(t *testing.T) *site {
	t.Helper()
	return &site{pool: pgtest.NewPool(t)}
}

func (s *site) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	testsupport.Exec(t, s.pool, sql, args...)
}

// checksum is the md5 of the table's COPY output in key order: equal checksums mean
// byte-for-byte equal data.
func (s *site) checksum(t *testing.T, table, order string) string {
	t.Helper()
	id, err := catalog.Resolve(context.Background(), s.pool, table)
	if err != nil {
		t.Fatal(err)
	}
	return testsupport.Checksum(t, s.pool, id.Quoted(), order)
}

// transfer copies table from a to b: schema (created when missing), then every
// batch in COPY text.
func transfer(t *testing.T, a, b *site, table string, strategy importer.Strategy, batch int) importer.Result {
	t.Helper()
	return transferAs(t, a, b, table, strategy, batch, false)
}

// transferAs copies table from a to b the way a pull does: one TableStream of the
// snapshot, each batch given to ImportCopyDeferred, in COPY binary when binary.
func transferAs(t *testing.T, a, b *site, table string, strategy importer.Strategy, batch int, binary bool) importer.Result {
	t.Helper()
	ctx := context.Background()
	snap, err := exporter.Begin(ctx, a.pool)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	sch, err := catalog.GetSchema(ctx, snap.Querier(), table)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := catalog.Exists(ctx, b.pool, table); !ok {
		if err := ddl.CreateTable(ctx, b.pool, sch); err != nil {
			t.Fatal(err)
		}
	}
	ts, err := snap.Stream(ctx, sch, nil, nil, binary)
	if err != nil {
		t.Fatal(err)
	}
	im, err := importer.New(ctx, b.pool, table, importer.Options{Strategy: strategy, Columns: ts.Columns()})
	if err != nil {
		t.Fatal(err)
	}
	var res importer.Result
	err = ts.Run(ctx, a.pool, exporter.StreamOptions{BatchRows: batch}, func(bt exporter.Batch) error {
		r, _, err := im.ImportCopyDeferred(ctx, bt.Data, bt.Binary)
		res.Add(r)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	return res
}

const typesTable = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'it''s "fine"');
CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0);
CREATE TABLE all_types (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	c_smallint smallint, c_int integer, c_bigint bigint,
	c_num numeric(38,10), c_num_free numeric,
	c_real real, c_double double precision,
	c_bool boolean,
	c_text text, c_varchar varchar(50), c_char char(5),
	c_bytea bytea,
	c_date date, c_time time, c_timetz timetz, c_ts timestamp, c_tstz timestamptz,
	c_interval interval, c_uuid uuid,
	c_json json, c_jsonb jsonb,
	c_text_arr text[], c_int_arr int[], c_int_2d int[][],
	c_int4range int4range, c_tsrange tsrange,
	c_inet inet, c_cidr cidr, c_macaddr macaddr,
	c_bit bit(8), c_varbit varbit,
	c_tsvector tsvector, c_xml xml, c_money money,
	c_enum mood, c_domain positive_int,
	c_generated text GENERATED ALWAYS AS (upper(c_text)) STORED
);
INSERT INTO all_types (c_smallint, c_int, c_bigint, c_num, c_num_free, c_real, c_double, c_bool, c_text, c_varchar, c_char,
	c_bytea, c_date, c_time, c_timetz, c_ts, c_tstz, c_interval, c_uuid, c_json, c_jsonb, c_text_arr, c_int_arr, c_int_2d,
	c_int4range, c_tsrange, c_inet, c_cidr, c_macaddr, c_bit, c_varbit, c_tsvector, c_xml, c_money, c_enum, c_domain) VALUES
(-32768, -2147483648, -9223372036854775808, 1234567890123456789012345678.0123456789, 0.1000000000000000000000000000000001,
 'NaN', '-Infinity', true, E'tab\there\nnew line \\ backslash ''quote'' "dq" 😀', 'varchar ✓', 'ab',
 '\x00ff00deadbeef00', '-infinity', '23:59:59.999999', '12:00:00.000001+05:30', 'infinity', '2024-02-29 12:34:56.789012+00',
 '1 year 2 mons 3 days 04:05:06.000007', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
 '{"b": [1, 2, {"c": null}], "a": "ünï"}', '{"nested": {"deep": [true, false, null, 1.5e10]}, "emoji": "🎉"}',
 ARRAY['plain', NULL, 'with "quotes"', 'with,comma', 'back\slash', ''], ARRAY[1, NULL, 3], ARRAY[[1,2],[3,4]],
 '[1,10)', '["2020-01-01 00:00:00","2021-01-01 00:00:00")', '192.168.1.1/24', '10.0.0.0/8', '08:00:2b:01:02:03',
 B'10101010', B'1', 'a fat cat sat:2A on the mat', '<a href="x">t&amp;</a>', 1234.56, 'it''s "fine"', 7),
(32767, 2147483647, 9223372036854775807, -0.0000000001, 'NaN', 'Infinity', 'NaN', false, '', '', '     ',
 '', '5874897-12-31', '00:00:00', '00:00:00+00', '-infinity', 'infinity', '-178000000 years', '00000000-0000-0000-0000-000000000000',
 '[]', '{}', '{}', '{}', '{}', 'empty', '(,)', '::1', '::/0', 'ff:ff:ff:ff:ff:ff', B'00000000', B'', '', '<x/>', -0.01, 'sad', 1),
(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
`

func TestEveryCommonTypeRoundTripsByteForByte(t *testing.T) {
	a, b := newSite(t), newSite(t)
	a.exec(t, typesTable)
	// Batches of 2 rows so paging is exercised too.
	res := transfer(t, a, b, "all_types", importer.Skip, 2)
	if res.Created != 3 || len(res.Errors) != 0 {
		t.Fatalf("result %+v", res)
	}
	ca, cb := a.checksum(t, "all_types", "id"), b.checksum(t, "all_types", "id")
	if ca != cb {
		t.Fatalf("checksums differ: %s vs %s", ca, cb)
	}
	// The same through the records API (text values in JSON), into a third site.
	c := newSite(t)
	ctx := context.Background()
	snap, err := exporter.Begin(ctx, a.pool)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	sch, _ := catalog.GetSchema(ctx, snap.Querier(), "all_types")
	if len(sch.Columns) < 37 {
		t.Fatalf("only %d columns", len(sch.Columns))
	}
	if err := ddl.CreateTable(ctx, c.pool, sch); err != nil {
		t.Fatal(err)
	}
	page, err := snap.Records(ctx, sch, 0, 10)
	if err != nil || len(page.Records) != 3 || page.HasMore {
		t.Fatalf("records: %d has_more %v err %v", len(page.Records), page.HasMore, err)
	}
	im, err := importer.New(ctx, c.pool, "all_types", importer.Options{Strategy: importer.Overwrite})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.ImportRecords(ctx, page.Records); err != nil {
		t.Fatal(err)
	}
	if cc := c.checksum(t, "all_types", "id"); cc != ca {
		t.Fatalf("records API checksum %s, want %s", cc, ca)
	}
}

const conflictSetup = `
CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, email text, score int);
`

func seedConflict(t *testing.T, a, b *site) {
	a.exec(t, conflictSetup)
	b.exec(t, conflictSetup)
	b.exec(t, `INSERT INTO people VALUES (1,'old1','o1@x',1),(2,'old2','o2@x',2),(3,'old3','o3@x',3),(4,'old4','o4@x',4),(5,'old5','o5@x',5)`)
	a.exec(t, `INSERT INTO people VALUES (3,'new3',NULL,30),(4,'new4','n4@x',NULL),(5,'new5','n5@x',50),(6,'new6','n6@x',60),(7,'new7',NULL,70),(8,'new8','n8@x',80)`)
}

func rows(t *testing.T, s *site, sql string) []string {
	t.Helper()
	r, err := s.pool.Query(context.Background(), sql)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(r, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestStrategies(t *testing.T) {
	all := `SELECT concat_ws('|', id, name, coalesce(email, '∅'), coalesce(score::text, '∅')) FROM people ORDER BY id`
	cases := []struct {
		strategy                  importer.Strategy
		created, updated, skipped int
		want                      []string
	}{
		{importer.Skip, 3, 0, 3, []string{"1|old1|o1@x|1", "2|old2|o2@x|2", "3|old3|o3@x|3", "4|old4|o4@x|4", "5|old5|o5@x|5", "6|new6|n6@x|60", "7|new7|∅|70", "8|new8|n8@x|80"}},
		{importer.Overwrite, 3, 3, 0, []string{"1|old1|o1@x|1", "2|old2|o2@x|2", "3|new3|∅|30", "4|new4|n4@x|∅", "5|new5|n5@x|50", "6|new6|n6@x|60", "7|new7|∅|70", "8|new8|n8@x|80"}},
		{importer.Merge, 3, 3, 0, []string{"1|old1|o1@x|1", "2|old2|o2@x|2", "3|new3|o3@x|30", "4|new4|n4@x|4", "5|new5|n5@x|50", "6|new6|n6@x|60", "7|new7|∅|70", "8|new8|n8@x|80"}},
	}
	for _, c := range cases {
		t.Run(string(c.strategy), func(t *testing.T) {
			a, b := newSite(t), newSite(t)
			seedConflict(t, a, b)
			res := transfer(t, a, b, "people", c.strategy, 4)
			if res.Created != c.created || res.Updated != c.updated || res.Skipped != c.skipped || len(res.Errors) != 0 {
				t.Fatalf("result %+v, want created %d updated %d skipped %d", res, c.created, c.updated, c.skipped)
			}
			if got := rows(t, b, all); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
	t.Run("append", func(t *testing.T) {
		a, b := newSite(t), newSite(t)
		ddlSQL := `CREATE TABLE notes (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, body text)`
		a.exec(t, ddlSQL)
		b.exec(t, ddlSQL)
		a.exec(t, `INSERT INTO notes (body) SELECT 'a' || i FROM generate_series(1, 5) i`)
		b.exec(t, `INSERT INTO notes (body) SELECT 'b' || i FROM generate_series(1, 3) i`)
		res := transfer(t, a, b, "notes", importer.Append, 2)
		if res.Created != 5 || res.Updated != 0 || res.Skipped != 0 {
			t.Fatalf("append result %+v", res)
		}
		got := rows(t, b, `SELECT id || ':' || body FROM notes ORDER BY id`)
		want := []string{"1:b1", "2:b2", "3:b3", "4:a1", "5:a2", "6:a3", "7:a4", "8:a5"}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("append rows %v", got)
		}
	})
}

func TestDuplicateKeysInOneBatchLastWins(t *testing.T) {
	b := newSite(t)
	b.exec(t, conflictSetup)
	ctx := context.Background()
	im, err := importer.New(ctx, b.pool, "people", importer.Options{Strategy: importer.Overwrite, Columns: []string{"id", "name", "email", "score"}})
	if err != nil {
		t.Fatal(err)
	}
	data := "1\tfirst\t\\N\t1\n2\ttwo\t\\N\t2\n1\tsecond\t\\N\t3\n"
	res, err := im.ImportCopy(ctx, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != 2 || res.Skipped != 1 {
		t.Fatalf("result %+v", res)
	}
	if got := rows(t, b, `SELECT name FROM people WHERE id = 1`); got[0] != "second" {
		t.Fatalf("duplicate key kept %q", got[0])
	}
}

func TestBadRecordsAreReportedWithKeysAndGoodOnesLand(t *testing.T) {
	b := newSite(t)
	b.exec(t, `CREATE TABLE parents (id int PRIMARY KEY);
		INSERT INTO parents VALUES (1), (2);
		CREATE TABLE kids (id int PRIMARY KEY, parent int REFERENCES parents(id), name text NOT NULL, age int CHECK (age >= 0))`)
	ctx := context.Background()
	im, err := importer.New(ctx, b.pool, "kids", importer.Options{Strategy: importer.Skip, Columns: []string{"id", "parent", "name", "age"}})
	if err != nil {
		t.Fatal(err)
	}
	data := "10\t1\tok1\t5\n11\t9\tbad-fk\t5\n12\t2\t\\N\t5\n13\t1\tbad-check\t-1\n14\t2\tok2\t7\n"
	res, err := im.ImportCopy(ctx, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != 2 || res.Skipped != 0 || res.Failed != 3 || len(res.Errors) != 3 {
		t.Fatalf("result %+v", res)
	}
	wantReasons := map[string]string{"11": "foreign key", "12": "null value", "13": "check constraint"}
	for _, e := range res.Errors {
		id := *e.Key["id"]
		if !strings.Contains(e.Reason, wantReasons[id]) {
			t.Fatalf("row %s: reason %q, want it to mention %q", id, e.Reason, wantReasons[id])
		}
		delete(wantReasons, id)
	}
	if len(wantReasons) != 0 {
		t.Fatalf("no error reported for %v", wantReasons)
	}
	if got := rows(t, b, `SELECT name FROM kids ORDER BY id`); !reflect.DeepEqual(got, []string{"ok1", "ok2"}) {
		t.Fatalf("landed rows %v", got)
	}
}

func TestHostileIdentifiers(t *testing.T) {
	a, b := newSite(t), newSite(t)
	a.exec(t, `CREATE TABLE y (id int PRIMARY KEY)`)
	b.exec(t, `CREATE TABLE y (id int PRIMARY KEY)`)
	names := []string{`x"; DROP TABLE y; --`, `MixedCase`, `with space`, `tåble ✓`, `it's`}
	for _, n := range names {
		q := pgx.Identifier{n}.Sanitize()
		a.exec(t, `CREATE TABLE `+q+` (`+pgx.Identifier{"we\"ird col"}.Sanitize()+` int PRIMARY KEY, `+pgx.Identifier{"Val"}.Sanitize()+` text)`)
		a.exec(t, `INSERT INTO `+q+` VALUES (1, 'one'), (2, 'two')`)
	}
	for _, n := range names {
		res := transfer(t, a, b, n, importer.Skip, 1)
		if res.Created != 2 {
			t.Fatalf("%q: %+v", n, res)
		}
		if ca, cb := a.checksum(t, n, "1"), b.checksum(t, n, "1"); ca != cb {
			t.Fatalf("%q: checksums differ", n)
		}
	}
	if ok, _ := catalog.Exists(context.Background(), b.pool, "y"); !ok {
		t.Fatal("table y was dropped")
	}
	for _, bad := range []string{`y; DROP TABLE y`, `"y"`, `Y`, `pg_catalog.pg_class`, `information_schema.tables`, ``} {
		if _, err := catalog.Resolve(context.Background(), a.pool, bad); !errors.Is(err, catalog.ErrUnknownTable) {
			t.Fatalf("Resolve(%q) = %v, want ErrUnknownTable", bad, err)
		}
	}
}

func TestCompositeKeysAndForeignKeysAfterData(t *testing.T) {
	a, b := newSite(t), newSite(t)
	a.exec(t, `CREATE TABLE orders (id int PRIMARY KEY, note varchar(20) UNIQUE);
		CREATE TABLE items (order_id int REFERENCES orders(id) ON DELETE CASCADE, line int, qty numeric(8,3) NOT NULL DEFAULT 1, PRIMARY KEY (order_id, line));
		INSERT INTO orders SELECT i, 'n' || i FROM generate_series(1, 50) i;
		INSERT INTO items SELECT o, l, o * l / 7.0 FROM generate_series(1, 50) o, generate_series(1, 4) l;`)
	// Items first: foreign keys are added after the data, so order does not matter.
	ctx := context.Background()
	for _, tbl := range []string{"items", "orders"} {
		res := transfer(t, a, b, tbl, importer.Overwrite, 33)
		want := map[string]int{"items": 200, "orders": 50}[tbl]
		if res.Created != want || res.Updated != 0 || res.Skipped != 0 || len(res.Errors) != 0 {
			t.Fatalf("%s: %+v", tbl, res)
		}
	}
	for _, tbl := range []string{"items", "orders"} {
		sch, err := catalog.GetSchema(ctx, a.pool, tbl)
		if err != nil {
			t.Fatal(err)
		}
		if err := ddl.AddForeignKeys(ctx, b.pool, sch); err != nil {
			t.Fatal(err)
		}
		sa, _ := catalog.GetSchema(ctx, a.pool, tbl)
		sb, _ := catalog.GetSchema(ctx, b.pool, tbl)
		if !reflect.DeepEqual(sa, sb) {
			t.Fatalf("%s: recreated definition differs:\n%+v\n%+v", tbl, sa, sb)
		}
		order := map[string]string{"items": "order_id, line", "orders": "id"}[tbl]
		if a.checksum(t, tbl, order) != b.checksum(t, tbl, order) {
			t.Fatalf("%s: checksums differ", tbl)
		}
	}
	// Overwrite again: composite keys match, nothing is created twice.
	res := transfer(t, a, b, "items", importer.Overwrite, 64)
	if res.Created != 0 || res.Updated != 200 {
		t.Fatalf("second overwrite: %+v", res)
	}
	sorted := catalog.SortByDependencies([]*catalog.Schema{mustSchema(t, a, "items"), mustSchema(t, a, "orders")})
	if sorted[0].Name != "orders" {
		t.Fatalf("dependency order %s, %s", sorted[0].Name, sorted[1].Name)
	}
}

func mustSchema(t *testing.T, s *site, name string) *catalog.Schema {
	sch, err := catalog.GetSchema(context.Background(), s.pool, name)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

func TestTablesWithoutPrimaryKey(t *testing.T) {
	a, b := newSite(t), newSite(t)
	a.exec(t, `CREATE TABLE logs (at timestamptz, msg text); INSERT INTO logs SELECT '2024-01-01'::timestamptz + i * interval '1s', 'm' || i FROM generate_series(1, 25) i; INSERT INTO logs VALUES (NULL, 'dup'), (NULL, 'dup')`)
	b.exec(t, `CREATE TABLE logs (at timestamptz, msg text)`)
	ctx := context.Background()
	for _, s := range []importer.Strategy{importer.Skip, importer.Overwrite, importer.Merge} {
		if _, err := importer.New(ctx, b.pool, "logs", importer.Options{Strategy: s}); !errors.Is(err, importer.ErrStrategyNotApplicable) {
			t.Fatalf("%s on a table without key: %v", s, err)
		}
	}
	res := transfer(t, a, b, "logs", importer.Append, 10)
	if res.Created != 27 {
		t.Fatalf("append: %+v", res)
	}
	if a.checksum(t, "logs", "at, msg") != b.checksum(t, "logs", "at, msg") {
		t.Fatal("checksums differ")
	}
}

func TestAppendNeedsAKeyDefault(t *testing.T) {
	b := newSite(t)
	b.exec(t, `CREATE TABLE plain (id int PRIMARY KEY, v text)`)
	_, err := importer.New(context.Background(), b.pool, "plain", importer.Options{Strategy: importer.Append})
	if !errors.Is(err, importer.ErrNoKeyDefault) || !strings.Contains(err.Error(), `"id"`) {
		t.Fatalf("append without key default: %v", err)
	}
}

func TestSnapshotIsConsistentAcrossTablesAndWrites(t *testing.T) {
	a, b := newSite(t), newSite(t)
	a.exec(t, `CREATE TABLE t1 (id int PRIMARY KEY, v text); CREATE TABLE t2 (id int PRIMARY KEY, v text);
		INSERT INTO t1 SELECT i, 'x' || i FROM generate_series(1, 100) i; INSERT INTO t2 SELECT i, 'y' || i FROM generate_series(1, 100) i;`)
	want1, want2 := a.checksum(t, "t1", "id"), a.checksum(t, "t2", "id")
	ctx := context.Background()
	snap, err := exporter.Begin(ctx, a.pool)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	b.exec(t, `CREATE TABLE t1 (id int PRIMARY KEY, v text); CREATE TABLE t2 (id int PRIMARY KEY, v text);`)
	for i, tbl := range []string{"t1", "t2"} {
		sch, _ := catalog.GetSchema(ctx, snap.Querier(), tbl)
		im, err := importer.New(ctx, b.pool, tbl, importer.Options{Strategy: importer.Skip})
		if err != nil {
			t.Fatal(err)
		}
		ts, err := snap.Stream(ctx, sch, nil, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		err = ts.Run(ctx, a.pool, exporter.StreamOptions{BatchRows: 30}, func(bt exporter.Batch) error {
			if _, err := im.ImportCopy(ctx, bt.Data); err != nil {
				return err
			}
			if n == 0 && i == 0 {
				// Other writers change both tables in the middle of the export.
				a.exec(t, `INSERT INTO t1 SELECT i, 'late' FROM generate_series(101, 150) i; DELETE FROM t1 WHERE id BETWEEN 40 AND 60;
					UPDATE t2 SET v = 'changed'; DELETE FROM t2 WHERE id > 90`)
			}
			n++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got1, got2 := b.checksum(t, "t1", "id"), b.checksum(t, "t2", "id"); got1 != want1 || got2 != want2 {
		t.Fatal("the export saw writes made after its snapshot began")
	}
}

// builtinTypes is a table of the built-in types a pull sends in COPY binary, with
// their edge values and NULLs.
const builtinTypes = `
CREATE TABLE builtin (
	id bigint PRIMARY KEY, c_smallint smallint, c_int integer, c_num numeric(38,10), c_num_free numeric,
	c_real real, c_double double precision, c_bool boolean, c_text text, c_varchar varchar(50), c_char char(5),
	c_bytea bytea, c_date date, c_time time, c_timetz timetz, c_ts timestamp, c_tstz timestamptz(3),
	c_interval interval, c_uuid uuid, c_json json, c_jsonb jsonb, c_text_arr text[], c_int_2d int[][],
	c_inet inet, c_cidr cidr, c_macaddr macaddr, c_bit bit(8), c_varbit varbit, c_money money);
INSERT INTO builtin VALUES
(1, -32768, -2147483648, 1234567890123456789012345678.0123456789, 0.1000000000000000000000000000000001,
 'NaN', '-Infinity', true, E'tab\there\nnew line \\ ''q'' 😀', 'varchar ✓', 'ab', '\x00ff00deadbeef00',
 '-infinity', '23:59:59.999999', '12:00:00.000001+05:30', 'infinity', '2024-02-29 12:34:56.789+00',
 '1 year 2 mons 3 days 04:05:06.000007', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"b": [1, {"c": null}], "a": "ünï"}',
 '{"deep": [true, null, 1.5e10]}', ARRAY['plain', NULL, 'with "quotes"', ''], ARRAY[[1,2],[3,NULL]],
 '192.168.1.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', B'10101010', B'1', 1234.56),
(2, 32767, 2147483647, -0.0000000001, 'NaN', 'Infinity', 'NaN', false, '', '', '     ', '', '5874897-12-31', '00:00:00',
 '00:00:00+00', '-infinity', 'infinity', '-178000000 years', '00000000-0000-0000-0000-000000000000', '[]', '{}', '{}', '{}',
 '::1', '::/0', 'ff:ff:ff:ff:ff:ff', B'00000000', B'', -0.01),
(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO builtin (id, c_text, c_bytea, c_num) SELECT g, repeat(md5(g::text), g % 50), decode(md5(g::text), 'hex'), g / 7.0
	FROM generate_series(4, 3000) g;
`

// TestBuiltinTypesRoundTripInBinary sends the built-in types in COPY binary, into
// an empty table (COPY straight in) and over stale rows (overwrite, through a temp
// table of the columns' types): the tables come out byte for byte the same.
func TestBuiltinTypesRoundTripInBinary(t *testing.T) {
	a, b := newSite(t), newSite(t)
	a.exec(t, builtinTypes)
	want := a.checksum(t, "builtin", "id")
	res := transferAs(t, a, b, "builtin", importer.Skip, 700, true)
	if res.Created != 3000 || len(res.Errors) != 0 {
		t.Fatalf("into an empty table: %+v", res)
	}
	if got := b.checksum(t, "builtin", "id"); got != want {
		t.Fatalf("into an empty table: checksum %s, want %s", got, want)
	}
	b.exec(t, `UPDATE builtin SET c_text = 'stale', c_num = -1, c_bytea = NULL WHERE id % 3 = 0; DELETE FROM builtin WHERE id % 5 = 0`)
	res = transferAs(t, a, b, "builtin", importer.Overwrite, 700, true)
	if res.Created != 600 || res.Updated != 2400 || len(res.Errors) != 0 {
		t.Fatalf("overwrite: %+v", res)
	}
	if got := b.checksum(t, "builtin", "id"); got != want {
		t.Fatalf("overwrite: checksum %s, want %s", got, want)
	}
}
