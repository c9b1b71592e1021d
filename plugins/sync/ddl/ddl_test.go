package ddl_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/ddl"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func newDB(t *testing.T) *pgxpool.Pool { return pgtest.NewPool(t) }

// exec runs sql on db, failing the test on an error.
func exec(t *testing.T, db *pgxpool.Pool, sql string) { t.Helper(); testsupport.Exec(t, db, sql) }

func strs(t *testing.T, db *pgxpool.Pool, sql string) []string {
	t.Helper()
	rows, err := db.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

func ptr(s string) *string { return &s }

// traces says what a hostile definition could have left behind: constraints other
// than the primary key, column defaults, domain defaults and checks, and whether the
// server's data directory leaked into any row or a set_config ran.
func assertNoTraces(t *testing.T, db *pgxpool.Pool) {
	t.Helper()
	if got := strs(t, db, `SELECT conrelid::regclass::text || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
		WHERE connamespace = 'public'::regnamespace AND contype <> 'p'`); len(got) > 0 {
		t.Errorf("constraints created: %v", got)
	}
	if got := strs(t, db, `SELECT adrelid::regclass::text || ' ' || pg_get_expr(adbin, adrelid) FROM pg_attrdef
		JOIN pg_class c ON c.oid = adrelid WHERE c.relnamespace = 'public'::regnamespace`); len(got) > 0 {
		t.Errorf("defaults created: %v", got)
	}
	if got := strs(t, db, `SELECT typname || ' ' || coalesce(typdefault, '') FROM pg_type
		WHERE typnamespace = 'public'::regnamespace AND typtype = 'd' AND typdefault IS NOT NULL`); len(got) > 0 {
		t.Errorf("domain defaults created: %v", got)
	}
	if got := strs(t, db, `SELECT application_name FROM pg_stat_activity WHERE application_name = 'pwned'`); len(got) > 0 {
		t.Errorf("set_config ran: %v", got)
	}
}

// TestHostileDefinitions feeds Create the definitions a malicious sender could send
// and checks none of their SQL runs, while the tables are still created.
func TestHostileDefinitions(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	exec(t, db, `CREATE TABLE target (id int PRIMARY KEY)`)

	// A generation expression that closes itself and adds columns, a default and a
	// CHECK calling set_config.
	gen := &catalog.Schema{Schema: "public", Name: "victim", PrimaryKey: []string{"id"}, Columns: []catalog.Column{
		{Name: "id", Type: "integer"},
		{Name: "g", Type: "integer", Nullable: false, Generated: `1) STORED, "evil" text DEFAULT current_setting('data_directory') CHECK (pg_catalog.set_config('application_name', 'pwned', false) IS NOT NULL), "g2" int GENERATED ALWAYS AS (1`},
	}}
	res, err := ddl.Create(ctx, db, gen)
	if err != nil {
		t.Fatalf("create victim: %v", err)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "column g: generation expression not recreated") {
		t.Errorf("victim warnings = %q", res.Warnings)
	}
	if got := strs(t, db, `SELECT attname || ':' || attgenerated::text || ':' || attnotnull FROM pg_attribute WHERE attrelid = 'victim'::regclass AND attnum > 0 ORDER BY attnum`); !reflect.DeepEqual(got, []string{"id::true", "g::false"}) {
		t.Errorf("victim columns = %v", got)
	}
	exec(t, db, `INSERT INTO victim (id) VALUES (1)`)

	// A domain CHECK followed by a DEFAULT clause.
	dom := &catalog.Schema{Schema: "public", Name: "victim2", PrimaryKey: []string{"id"},
		Domains: []catalog.Domain{{Schema: "public", Name: "dd", BaseType: "text", Checks: []string{
			`CHECK (true) DEFAULT current_setting('data_directory')`,
			`CHECK ((pg_catalog.set_config('application_name', 'pwned', false) IS NOT NULL))`,
			`CHECK (((VALUE)::text <> current_setting('data_directory')))`,
		}}},
		Columns: []catalog.Column{{Name: "id", Type: "integer"}, {Name: "v", Type: "dd", Nullable: true}}}
	if res, err = ddl.Create(ctx, db, dom); err != nil {
		t.Fatalf("create victim2: %v", err)
	}
	if len(res.Warnings) != 3 {
		t.Errorf("victim2 warnings = %q", res.Warnings)
	}
	exec(t, db, `INSERT INTO victim2 (id) VALUES (1)`)
	if got := strs(t, db, `SELECT coalesce(v, 'NULL') FROM victim2`); !reflect.DeepEqual(got, []string{"NULL"}) {
		t.Errorf("victim2 v = %v", got)
	}

	// Defaults that smuggle a clause after a cast, call functions outside the
	// allowlist, or close the expression.
	hostile := []string{
		`0::integer REFERENCES public.target ON DELETE CASCADE`,
		`0::integer CHECK (pg_catalog.set_config('application_name', 'pwned', false) IS NOT NULL)`,
		`current_setting('data_directory')`,
		`pg_catalog.set_config('application_name', 'pwned', false)`,
		`now()) STORED, x int DEFAULT (current_setting('data_directory')`,
		`(0)::integer COLLATE "C"`,
		`'a'::text || current_setting('data_directory')`,
		`E'\\x'::text`,
		`$$x$$::text`,
		`0 -- comment`,
		`0; DROP TABLE target`,
		`0::integer[]::text::integer GENERATED ALWAYS AS (1) STORED`,
		`public.now()`,
		`(SELECT 1)`,
	}
	cols := []catalog.Column{{Name: "id", Type: "integer", Nullable: true}}
	for i, d := range hostile {
		cols = append(cols, catalog.Column{Name: "c" + string(rune('a'+i)), Type: "integer", Nullable: true, Default: ptr(d)})
	}
	res, err = ddl.Create(ctx, db, &catalog.Schema{Schema: "public", Name: "victim3", Columns: cols})
	if err != nil {
		t.Fatalf("create victim3: %v", err)
	}
	if len(res.Warnings) != len(hostile) {
		t.Errorf("victim3: %d warnings for %d hostile defaults: %q", len(res.Warnings), len(hostile), res.Warnings)
	}
	exec(t, db, `INSERT INTO victim3 (id) VALUES (1)`)
	if got := strs(t, db, `SELECT count(*)::text FROM target`); got[0] != "0" {
		t.Errorf("target rows = %v", got)
	}
	assertNoTraces(t, db)
}

// TestHostileNames checks type names, schemas and table names that must fail the
// table rather than reach SQL.
func TestHostileNames(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	exec(t, db, `CREATE TABLE composite_row (a int)`)
	for _, typ := range []string{
		`integer DEFAULT current_setting('data_directory')`,
		`integer CHECK (pg_catalog.set_config('application_name', 'pwned', false) IS NOT NULL)`,
		`text COLLATE "C"`,
		`integer REFERENCES composite_row`,
		`int); DROP TABLE composite_row; --`,
		`integer[1:2]`,
		`numeric(current_setting('x'))`,
		`pg_catalog.record`,
		`trigger`,
		`composite_row`,
		`no_such_type`,
		`"integer"`, // quoted: the keyword type has no such pg_type name
	} {
		sch := &catalog.Schema{Schema: "public", Name: "h", Columns: []catalog.Column{{Name: "c", Type: typ, Nullable: true}}}
		if _, err := ddl.Create(ctx, db, sch); err == nil {
			t.Errorf("type %q accepted", typ)
		}
	}
	for _, sch := range []*catalog.Schema{
		{Schema: "pg_catalog", Name: "h", Columns: []catalog.Column{{Name: "c", Type: "integer"}}},
		{Schema: "public", Name: "fiberkit_settings", Columns: []catalog.Column{{Name: "c", Type: "integer"}}},
		{Schema: "public", Name: "h", Columns: []catalog.Column{{Name: "c", Type: "e"}},
			Enums: []catalog.Enum{{Schema: "pg_catalog", Name: "e", Labels: []string{"a"}}}},
		{Schema: "public", Name: "h", Columns: []catalog.Column{{Name: "c", Type: "d"}},
			Domains: []catalog.Domain{{Schema: "public", Name: "d", BaseType: "text) CHECK (pg_catalog.set_config('application_name', 'pwned', false) IS NOT NULL"}}},
	} {
		if _, err := ddl.Create(ctx, db, sch); err == nil {
			t.Errorf("%s.%s (enums %v, domains %v) accepted", sch.Schema, sch.Name, sch.Enums, sch.Domains)
		}
	}
	// Enum labels are data, whatever they hold.
	sch := &catalog.Schema{Schema: "public", Name: "labels", Columns: []catalog.Column{{Name: "c", Type: "e", Nullable: true}},
		Enums: []catalog.Enum{{Schema: "public", Name: "e", Labels: []string{`a'); DROP TABLE composite_row; --`, `b\'`, `it's`}}}}
	if _, err := ddl.Create(ctx, db, sch); err != nil {
		t.Fatal(err)
	}
	if got := strs(t, db, `SELECT enumlabel::text FROM pg_enum WHERE enumtypid = 'e'::regtype ORDER BY enumsortorder`); !reflect.DeepEqual(got, sch.Enums[0].Labels) {
		t.Errorf("labels = %q", got)
	}
	assertNoTraces(t, db)
}

// roundTripTable uses the defaults, checks, generation expressions and types the
// accepted subset covers; recreating it must lose nothing.
const roundTripTable = `
CREATE SCHEMA sales;
CREATE TYPE sales.mood AS ENUM ('sad', 'ok', 'it''s');
CREATE TYPE status AS ENUM ('pending', 'paid');
CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%');
CREATE DOMAIN percent AS numeric(5,2) DEFAULT 0 NOT NULL CHECK (VALUE >= 0 AND VALUE <= 100);
CREATE DOMAIN code AS varchar(8) CHECK (VALUE IN ('a', 'b')) CHECK (char_length(VALUE) > 0) CHECK (VALUE ~ '^[a-z]+$');
CREATE DOMAIN dmood AS sales.mood NOT NULL;
CREATE DOMAIN ddmood AS dmood CHECK (VALUE::sales.mood <> 'sad');
CREATE DOMAIN moods AS sales.mood[] CHECK (cardinality(VALUE) < 5 AND VALUE IS NOT NULL);
CREATE DOMAIN neg AS integer CHECK (VALUE > -10 AND NOT (VALUE = 3)) CHECK (abs(VALUE) % 2 = 0 OR VALUE IS NULL);
CREATE TABLE rt (
	id bigserial PRIMARY KEY,
	ident int GENERATED ALWAYS AS IDENTITY,
	s status NOT NULL DEFAULT 'pending',
	tags text[] NOT NULL DEFAULT '{}',
	n numeric(12,2) NOT NULL DEFAULT 0,
	neg_n integer DEFAULT -1,
	f double precision DEFAULT 1.5e10,
	b boolean DEFAULT true,
	vc varchar(20) DEFAULT 'x''y',
	ch char(3) DEFAULT 'ab',
	qc "char" DEFAULT 'q',
	d date DEFAULT '2020-01-01',
	dn date DEFAULT CURRENT_DATE,
	ts timestamp(3) with time zone DEFAULT now(),
	ts2 timestamptz DEFAULT CURRENT_TIMESTAMP,
	ts3 timestamp DEFAULT LOCALTIMESTAMP,
	tt time without time zone,
	ttz timetz(2),
	iv interval day to second(3),
	iv2 interval year to month DEFAULT '1 year',
	u uuid DEFAULT gen_random_uuid(),
	j jsonb DEFAULT '{"a": [1, "b\"c"]}',
	bits bit varying(5) DEFAULT B'101',
	e email, p percent, c code, m ddmood, ms moods, ng neg,
	arr2 double precision[],
	txt text DEFAULT 'back\slash',
	up text GENERATED ALWAYS AS (upper(txt)) STORED,
	dbl numeric GENERATED ALWAYS AS (n * 2 + 1) STORED,
	co text GENERATED ALWAYS AS (COALESCE(vc, 'none'::character varying)::text || '-' || lower(txt)) STORED,
	UNIQUE (u)
)`

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	a, b := newDB(t), newDB(t)
	exec(t, a, roundTripTable)
	src, err := catalog.GetSchema(ctx, a, "rt")
	if err != nil {
		t.Fatal(err)
	}
	res, err := ddl.Create(ctx, b, src)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) > 0 {
		t.Errorf("warnings: %q", res.Warnings)
	}
	dst, err := catalog.GetSchema(ctx, b, "rt")
	if err != nil {
		t.Fatal(err)
	}
	// bigserial becomes identity: its sequence is the sender's.
	if dst.Columns[0].Identity != "by_default" {
		t.Errorf("id identity = %q", dst.Columns[0].Identity)
	}
	src.Columns[0].Default, src.Columns[0].Identity = nil, "by_default"
	for i := range src.Columns {
		s, d := src.Columns[i], dst.Columns[i]
		if s.Name == "u" || s.Name == "ts" || s.Name == "ts2" || s.Name == "ts3" || s.Name == "dn" {
			// Functions come back qualified: pg_catalog.now() etc. Compare by value below.
			if (s.Default == nil) != (d.Default == nil) {
				t.Errorf("column %s default %v → %v", s.Name, s.Default, d.Default)
			}
			s.Default, d.Default = nil, nil
		}
		if !reflect.DeepEqual(s, d) {
			t.Errorf("column %s:\n sent    %+v %s\n created %+v %s", s.Name, s, deref(s.Default), d, deref(d.Default))
		}
	}
	src.Columns, dst.Columns = nil, nil
	// PostgreSQL prints the recreated IN list with the casts folded into the array:
	// same check, other text.
	for _, sch := range []*catalog.Schema{src, dst} {
		for i := range sch.Domains {
			if sch.Domains[i].Name == "code" {
				sch.Domains[i].Checks[0] = strings.ReplaceAll(sch.Domains[i].Checks[0], "(ARRAY['a'::character varying, 'b'::character varying])::text[]", "ARRAY[('a'::character varying)::text, ('b'::character varying)::text]")
			}
		}
	}
	if !reflect.DeepEqual(src, dst) {
		t.Errorf("schema:\n sent    %+v\n created %+v", src, dst)
	}
	// The defaults compute the same values on both sides.
	q := `INSERT INTO rt (e, p, c, m, ms, ng) VALUES ('a@b', 5, 'a', 'ok', '{ok}', 2) RETURNING concat_ws('|', s, tags, n, neg_n, f, b, vc, ch, qc, d,
		dn = CURRENT_DATE, ts = now(), ts2 = now(), ts3 = LOCALTIMESTAMP, iv2, u IS NOT NULL, j, bits, txt, up, dbl, co)`
	var va, vb string
	if err := a.QueryRow(ctx, q).Scan(&va); err != nil {
		t.Fatal(err)
	}
	if err := b.QueryRow(ctx, q).Scan(&vb); err != nil {
		t.Fatal(err)
	}
	if va != vb {
		t.Errorf("defaults differ:\n %s\n %s", va, vb)
	}
	// The checks hold on both sides.
	for _, bad := range []string{`e = 'nope'`, `p = 101`, `c = 'c'`, `m = 'sad'`, `ms = '{ok,ok,ok,ok,ok}'`, `ng = 3`, `ng = -12`, `ng = 1`} {
		for _, db := range []*pgxpool.Pool{a, b} {
			if _, err := db.Exec(ctx, "UPDATE rt SET "+bad); err == nil {
				t.Errorf("UPDATE rt SET %s accepted", bad)
			}
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// TestDomainOrder checks that domains are created after the domains and enums they
// are built on, whatever order the definition lists them in.
func TestDomainOrder(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	sch := &catalog.Schema{Schema: "public", Name: "t", PrimaryKey: []string{"id"},
		Enums: []catalog.Enum{{Schema: "s", Name: "mood", Labels: []string{"x", "y"}}},
		Domains: []catalog.Domain{
			{Schema: "public", Name: "top", BaseType: "mid[]"},
			{Schema: "public", Name: "mid", BaseType: "s.low", Checks: []string{`CHECK (((VALUE)::s.mood <> 'y'::s.mood))`}},
			{Schema: "s", Name: "low", BaseType: "s.mood", NotNull: true},
		},
		Columns: []catalog.Column{{Name: "id", Type: "integer"}, {Name: "a", Type: "top", Nullable: true}, {Name: "b", Type: "mid", Nullable: true}}}
	res, err := ddl.Create(ctx, db, sch)
	if err != nil || len(res.Warnings) > 0 {
		t.Fatalf("create: %v %q", err, res.Warnings)
	}
	exec(t, db, `INSERT INTO t VALUES (1, '{x}', 'x')`)
	if _, err := db.Exec(ctx, `INSERT INTO t VALUES (2, NULL, 'y')`); err == nil {
		t.Error("the domain check was not recreated")
	}
	// A cycle cannot be created.
	sch.Name = "t2"
	sch.Domains = []catalog.Domain{{Schema: "public", Name: "c1", BaseType: "c2"}, {Schema: "public", Name: "c2", BaseType: "c1"}}
	sch.Columns = []catalog.Column{{Name: "id", Type: "integer"}, {Name: "a", Type: "c1", Nullable: true}}
	if _, err := ddl.Create(ctx, db, sch); err == nil {
		t.Error("domain cycle accepted")
	}
}
