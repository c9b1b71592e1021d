package ddl_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/ddl"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
)

// partitionedSender is a sender's database with pagila's payment — partitioned by
// range on payment_date, monthly, its id drawn from a free-standing sequence — and
// tables partitioned by list (with a default partition) and by hash.
const partitionedSender = `
CREATE SEQUENCE payment_payment_id_seq;
CREATE TABLE payment (
	payment_id integer DEFAULT nextval('payment_payment_id_seq'::regclass) NOT NULL,
	customer_id integer NOT NULL,
	amount numeric(5,2) NOT NULL,
	payment_date timestamp with time zone NOT NULL,
	PRIMARY KEY (payment_date, payment_id)
) PARTITION BY RANGE (payment_date);
CREATE TABLE payment_p2022_01 PARTITION OF payment FOR VALUES FROM ('2022-01-01 00:00:00+00') TO ('2022-02-01 00:00:00+00');
CREATE TABLE payment_p2022_02 PARTITION OF payment FOR VALUES FROM ('2022-02-01 00:00:00+00') TO ('2022-03-01 00:00:00+00');
CREATE TABLE payment_old PARTITION OF payment FOR VALUES FROM (MINVALUE) TO ('2022-01-01 00:00:00+00');
CREATE TABLE region_sales (id int, region text NOT NULL, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE region_sales_eu PARTITION OF region_sales FOR VALUES IN ('de', 'fr', 'it''s');
CREATE TABLE region_sales_other PARTITION OF region_sales DEFAULT;
CREATE TABLE buckets (id bigint PRIMARY KEY, v text) PARTITION BY HASH (id);
CREATE TABLE buckets_0 PARTITION OF buckets FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE buckets_1 PARTITION OF buckets FOR VALUES WITH (MODULUS 2, REMAINDER 1);`

// partitionLayout lists, for the partitioned tables of public, each table's key and
// each partition with its bound.
const partitionLayout = `SELECT c.relname || ' ' || pg_get_partkeydef(c.oid) FROM pg_partitioned_table pt JOIN pg_class c ON c.oid = pt.partrelid
	WHERE c.relnamespace = 'public'::regnamespace
	UNION ALL SELECT p.relname || ' OF ' || c.relname || ' ' || pg_get_expr(p.relpartbound, p.oid) FROM pg_inherits i
	JOIN pg_class c ON c.oid = i.inhparent JOIN pg_class p ON p.oid = i.inhrelid WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'p'
	ORDER BY 1`

// TestCreatePartitioned: a sender's partitioned tables, read by catalog.GetSchema, are
// created partitioned on an empty receiver with the same partitions and bounds, and
// imported rows land in the right partitions.
func TestCreatePartitioned(t *testing.T) {
	ctx := context.Background()
	sender, receiver := newDB(t), newDB(t)
	exec(t, sender, partitionedSender)
	// Only the parents are listed: a partition's rows travel with its parent.
	list, err := catalog.ListTables(ctx, sender, catalog.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, tb := range list {
		listed = append(listed, tb.Name)
	}
	if want := []string{"buckets", "payment", "region_sales"}; !reflect.DeepEqual(listed, want) {
		t.Errorf("listed %q, want %q", listed, want)
	}
	for _, name := range listed {
		sch, err := catalog.GetSchema(ctx, sender, name)
		if err != nil {
			t.Fatal(err)
		}
		if sch.Partition == nil {
			t.Fatalf("%s: no partitioning in its definition", name)
		}
		res, err := ddl.Create(ctx, receiver, sch)
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		if len(res.Warnings) != 0 {
			t.Errorf("create %s: warnings %q", name, res.Warnings)
		}
	}
	want := strs(t, sender, partitionLayout)
	if got := strs(t, receiver, partitionLayout); !reflect.DeepEqual(got, want) {
		t.Errorf("receiver's partitioning\n %q\nwant the sender's\n %q", got, want)
	}

	// Rows imported through the parent land in their partitions.
	im, err := importer.New(ctx, receiver, "payment", importer.Options{Strategy: importer.Overwrite,
		Columns: []string{"payment_id", "customer_id", "amount", "payment_date"}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := im.ImportCopy(ctx, []byte("1\t7\t2.99\t2022-01-15 10:00:00+00\n2\t7\t4.99\t2022-02-03 10:00:00+00\n3\t8\t0.99\t2021-06-01 00:00:00+00\n"))
	if err != nil || r.Created != 3 || r.Failed != 0 {
		t.Fatalf("import payments: %+v, %v", r, err)
	}
	if err := im.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	exec(t, receiver, `INSERT INTO region_sales VALUES (1, 'it''s'), (2, 'us'); INSERT INTO buckets SELECT i, 'v' FROM generate_series(1, 20) i`)
	got := strs(t, receiver, `SELECT tableoid::regclass::text || ':' || payment_id FROM payment
		UNION ALL SELECT tableoid::regclass::text || ':' || id FROM region_sales ORDER BY 1`)
	if want := []string{"payment_old:3", "payment_p2022_01:1", "payment_p2022_02:2", "region_sales_eu:1", "region_sales_other:2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("rows in partitions %q, want %q", got, want)
	}
	if got := strs(t, receiver, `SELECT count(DISTINCT tableoid)::text FROM buckets`); got[0] != "2" {
		t.Errorf("hash rows in %s partitions, want 2", got[0])
	}
}

// TestHostilePartitioning: a partition key or bound from a hostile sender is SQL text;
// what does not fit the grammar is refused with a warning and none of it runs. A
// partition with a kit table's name is not created.
func TestHostilePartitioning(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	exec(t, db, `CREATE TABLE target (id int PRIMARY KEY); CREATE TABLE taken (id int)`)
	cols := []catalog.Column{{Name: "id", Type: "integer"}, {Name: "d", Type: "date", Nullable: true}}
	part := func(name, bound string) catalog.Partition { return catalog.Partition{Name: name, Bound: bound} }
	good := part("t_ok", "FOR VALUES FROM ('2022-01-01') TO ('2022-02-01')")

	// Hostile keys: the table is created unpartitioned, its rows all in it.
	for _, key := range []string{
		`RANGE (pg_catalog.set_config('application_name', 'pwned', false))`,
		`RANGE ((current_setting('data_directory')))`,
		`RANGE (d)) ; DROP TABLE target; --`,
		`RANGE (d) PARTITION BY LIST (id)`,
		`RANGE ((SELECT 1))`,
		`RANGE (d COLLATE "C")`,
		`RANGE (d date_ops)`,
		`RANGE (nosuchcolumn)`,
		`ROUND (d)`,
		`LIST (id, d)`,
	} {
		sch := &catalog.Schema{Schema: "public", Name: "k", Columns: cols,
			Partition: &catalog.PartitionSpec{Key: key, Partitions: []catalog.Partition{good}}}
		res, err := ddl.Create(ctx, db, sch)
		if err != nil {
			t.Fatalf("key %q: %v", key, err)
		}
		if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "partition key not recreated") {
			t.Errorf("key %q: warnings %q", key, res.Warnings)
		}
		if got := strs(t, db, `SELECT count(*)::text FROM pg_partitioned_table`); got[0] != "0" {
			t.Errorf("key %q: a partitioned table was created", key)
		}
		exec(t, db, `DROP TABLE k`)
	}

	// Hostile bounds and names: each such partition is left out with a warning; the
	// table is partitioned with the good one.
	bad := []catalog.Partition{
		part("t_sub", `FOR VALUES FROM ((SELECT 1)) TO (2)`),
		part("t_fn", `FOR VALUES FROM (pg_catalog.set_config('application_name', 'pwned', false)) TO ('2023-01-01')`),
		part("t_setting", `FOR VALUES FROM (current_setting('data_directory')) TO ('2023-01-01')`),
		part("t_col", `FOR VALUES FROM (id) TO ('2023-01-01')`),
		part("t_op", `FOR VALUES FROM ('2022-03-01'::date + 1) TO ('2023-01-01')`),
		part("t_tail", `FOR VALUES FROM ('2022-03-01') TO ('2022-04-01'); DROP TABLE target`),
		part("t_in", `FOR VALUES IN ('2022-05-01')`),
		part("t_hash", `FOR VALUES WITH (modulus 2, remainder 0)`),
		part("t_count", `FOR VALUES FROM ('2022-05-01', 1) TO ('2022-06-01', 2)`),
		part("t_cast", `FOR VALUES FROM ('2022-06-01'::nosuchtype) TO ('2022-07-01')`),
		part("fiberkit_sessions", `FOR VALUES FROM ('2022-07-01') TO ('2022-08-01')`),
		part("taken", `FOR VALUES FROM ('2022-08-01') TO ('2022-09-01')`),
		part("k", `FOR VALUES FROM ('2022-09-01') TO ('2022-10-01')`),
		part("t_nul\x00", `DEFAULT`),
	}
	sch := &catalog.Schema{Schema: "public", Name: "k", Columns: cols,
		Partition: &catalog.PartitionSpec{Key: "RANGE (d)", Partitions: append(bad, good)}}
	res, err := ddl.Create(ctx, db, sch)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != len(bad) {
		t.Errorf("%d warnings for %d refused partitions: %q", len(res.Warnings), len(bad), res.Warnings)
	}
	for i, w := range res.Warnings {
		if i < len(bad) && !strings.Contains(w, fmt.Sprintf("partition %q", bad[i].Name)) {
			t.Errorf("warning %d does not name %q: %s", i, bad[i].Name, w)
		}
	}
	if got, want := strs(t, db, partitionLayout), []string{"k RANGE (d)", "t_ok OF k FOR VALUES FROM ('2022-01-01') TO ('2022-02-01')"}; !reflect.DeepEqual(got, want) {
		t.Errorf("partitioning %q, want %q", got, want)
	}
	if got := strs(t, db, `SELECT relname::text FROM pg_class WHERE relname IN ('target', 'taken') ORDER BY 1`); len(got) != 2 {
		t.Errorf("tables left: %q", got)
	}
	assertNoTraces(t, db)

	// Every partition refused: the table is created unpartitioned.
	exec(t, db, `DROP TABLE k`)
	sch.Partition.Partitions = bad
	if res, err = ddl.Create(ctx, db, sch); err != nil {
		t.Fatal(err)
	}
	if last := res.Warnings[len(res.Warnings)-1]; !strings.Contains(last, "created unpartitioned") {
		t.Errorf("last warning %q", last)
	}
	if got := strs(t, db, `SELECT count(*)::text FROM pg_partitioned_table`); got[0] != "0" {
		t.Error("a partitioned table was created without partitions")
	}
	exec(t, db, `INSERT INTO k VALUES (1, '2030-01-01')`)
}
