package where

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// columns of the test table, every supported type plus two opaque ones.
const tableDDL = `CREATE TABLE t (
	id int PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, num numeric, num2 numeric(12,2),
	r real, d double precision, tx text, tx2 text, vc varchar(20), ch char(5), nm name,
	b boolean, u uuid, dt date, ts timestamp, tstz timestamptz, tm time, arr text[], js jsonb)`

// edgeRows are the rows, as column → SQL literal text.
var edgeRows = []map[string]string{
	{},
	{"i2": "0", "i4": "0", "i8": "0", "num": "0", "num2": "0", "r": "0", "d": "0", "tx": "", "vc": "", "ch": "", "nm": "", "b": "false",
		"u": "00000000-0000-0000-0000-000000000000", "dt": "2000-01-01", "ts": "2000-01-01 00:00", "tstz": "2000-01-01 00:00+00", "tm": "00:00"},
	{"i2": "-32768", "i4": "-2147483648", "i8": "-9223372036854775808", "num": "-1.5", "num2": "-1.50", "r": "-0", "d": "-0", "tx": "abc",
		"vc": "abc", "ch": "abc", "nm": "abc", "b": "true", "u": "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "dt": "1999-12-31",
		"ts": "1999-12-31 23:59:59.999999", "tstz": "2024-03-10 02:30:00-05", "tm": "23:59:59.999999"},
	{"i2": "32767", "i4": "2147483647", "i8": "9223372036854775807", "num": "NaN", "num2": "99.99", "r": "NaN", "d": "NaN", "tx": "ABC",
		"vc": "Abc ", "ch": "ab", "nm": "zzz", "b": "true", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "dt": "infinity", "ts": "infinity",
		"tstz": "infinity", "tm": "24:00"},
	{"i4": "42", "i8": "42", "num": "Infinity", "num2": "1.5", "r": "Infinity", "d": "Infinity", "tx": "a%b", "vc": "a_b", "ch": "a ",
		"tx2": "abc", "b": "false", "dt": "-infinity", "ts": "-infinity", "tstz": "-infinity", "tm": "12:00"},
	{"i4": "7", "i8": "7", "num": "-Infinity", "r": "-Infinity", "d": "-Infinity", "tx": `a\b`, "vc": "x", "ch": "x    ", "tx2": "ABC",
		"tstz": "2024-01-01 10:00:00+00", "ts": "2024-01-01 10:00:00", "dt": "2024-01-01"},
	{"i4": "-7", "num": "1.50", "num2": "1.5", "r": "0.1", "d": "0.1", "tx": "héllo", "vc": "HÉLLO", "tstz": "2024-01-01 05:00:00-05",
		"ts": "2024-01-01 05:00:00", "dt": "2024-01-02", "tm": "10:00:00"},
	{"i4": "100", "num": "100", "num2": "100", "r": "1e10", "d": "1e300", "tx": "ünïcödé 🎉", "vc": "🎉",
		"tstz": "2024-06-01 12:00:00.123456+02", "ts": "2024-06-01 12:00:00.123456", "dt": "0044-03-15 BC", "tm": "10:00:00.5"},
	{"i4": "1", "num": "0.001", "r": "1.5", "d": "-1.5", "tx": "abc ", "ch": "abc  ", "tstz": "1970-01-01 00:00:00+00", "ts": "1970-01-01",
		"dt": "1970-01-01", "arr": "{a,b}", "js": `{"a":1}`},
	{"i4": "2", "num": "1e-20", "d": "2.5", "tx": "it's", "vc": "it's", "u": "ffffffff-ffff-ffff-ffff-ffffffffffff",
		"tstz": "0001-01-01 00:00:00+00 BC", "ts": "2024-01-01 10:00:00.000001"},
	{"i4": "5", "num": "5", "num2": "5", "r": "5", "d": "5", "tx": "5", "vc": "5", "ch": "5", "b": "true",
		"tstz": "2024-01-01 10:00:00.5+05:30", "ts": "2024-01-01 09:59:59.5"},
	{"i4": "3", "num": "123456789012345678901234567890.123456789", "d": "1e-300", "tx": "a", "vc": "b", "ch": "c", "tx2": "a"},
	{"i4": "-1", "num": "-0.0", "r": "-1e-10", "d": "5.000000001", "tx": "%", "vc": "_", "tx2": "abc"},
	{"i2": "10", "i4": "10", "i8": "10", "num": "10", "num2": "10.00", "r": "10", "d": "10", "tx": "Zebra", "vc": "apple", "tx2": "zebra"},
	{"i4": "6", "tx": "abcabc", "tx2": "abc%", "num2": "1.51"},
	{"b": "false", "tx": "ABC", "ch": "ABC", "nm": "ABC"},
	{"i4": "8", "d": "NaN", "num": "NaN", "r": "-0", "tx": "aBc", "i8": "3000000000"},
	{"i4": "9", "tx": "a\nb", "vc": "a b", "ch": "   ", "d": "1e-310", "r": "3.4e38"},
	{"i4": "11", "i8": "-3000000000", "num": "0.1", "d": "0.30000000000000004", "r": "16777217", "tm": "00:00:00.000001"},
}

type pgCase struct {
	expr   string
	params []string
}

var pgCases = []pgCase{
	// integers
	{"i4 = 42", nil}, {"i4 = '42'", nil}, {"i4 = $1", []string{"42"}}, {"42 = i4", nil}, {"i4 = ' 042 '", nil},
	{"i4 <> 42", nil}, {"i4 != 42", nil}, {"i4 < 5", nil}, {"i4 <= 5", nil}, {"i4 > 5", nil}, {"i4 >= 5", nil},
	{"i2 = i4", nil}, {"i4 < i8", nil}, {"i8 = 9223372036854775807", nil}, {"i8 > 3000000000", nil}, {"i8 < -2999999999", nil},
	{"i2 < 100000", nil}, {"i4 = 1.0", nil}, {"i4 < 1.5", nil}, {"i4 = 5::bigint", nil}, {"i4 = CAST($1 AS integer)", []string{"7"}},
	{"i4 IN (1, 2, 3)", nil}, {"i4 IN (1, NULL)", nil}, {"i4 NOT IN (1, 2)", nil}, {"i4 NOT IN (1, NULL)", nil},
	{"i4 IN ($1, $2)", []string{"5", "7"}}, {"i4 IN (5)", nil}, {"i4 IN (i8, 3)", nil}, {"i4 IN (1, 2.5, 3)", nil},
	{"i4 BETWEEN 1 AND 7", nil}, {"i4 NOT BETWEEN 1 AND 7", nil}, {"i4 BETWEEN 7 AND 1", nil},
	{"i4 BETWEEN SYMMETRIC 7 AND 1", nil}, {"i4 NOT BETWEEN SYMMETRIC 7 AND 1", nil}, {"i4 BETWEEN NULL AND 5", nil},
	{"i4 IS NULL", nil}, {"i4 IS NOT NULL", nil}, {"NOT (i4 = 5)", nil}, {"i4 = 5 OR i4 IS NULL", nil},
	{"i4 > 0 AND i8 > 0", nil}, {"i4 = NULL", nil}, {"i4 IS DISTINCT FROM 5", nil}, {"i4 IS NOT DISTINCT FROM NULL", nil},
	{"i4 IS DISTINCT FROM i8", nil}, {"(i4 > 1) IS TRUE", nil}, {"(i4 > 1) IS NOT TRUE", nil}, {"(i4 > 1) IS FALSE", nil},
	{"(i4 > 1) IS NOT FALSE", nil}, {"(i4 > 1) IS UNKNOWN", nil}, {"(i4 > 1) IS NULL", nil}, {"NOT (i4 > 1 OR i8 > 1)", nil},
	{"i4 = -7", nil}, {"i4 > -2147483648", nil},
	// numeric
	{"num = 1.5", nil}, {"num = '1.50'", nil}, {"num > 100", nil}, {"num = 'NaN'", nil}, {"num > 'Infinity'", nil},
	{"num < '-Infinity'", nil}, {"num >= '-Infinity'", nil}, {"num = 0", nil}, {"num < 0", nil}, {"num2 = 1.5", nil},
	{"num2 = $1", []string{"99.99"}}, {"num = i4", nil}, {"num BETWEEN 0 AND 10", nil},
	{"num = 123456789012345678901234567890.123456789", nil}, {"num > 1e-21", nil}, {"num < 1e-19", nil},
	{"num IN (5, 100, 'NaN')", nil}, {"num2 = 1.505::numeric(12,2)", nil}, {"num <> 'NaN'", nil}, {"num = 'inf'", nil},
	{"num = i8", nil}, {"num2 > num", nil}, {"num = 0.1", nil}, {"num2 = 10", nil},
	// floating point
	{"r = 0.1", nil}, {"r = '0.1'", nil}, {"d = 0.1", nil}, {"r = 0", nil}, {"d = 0", nil}, {"r = '-0'", nil},
	{"d = 'NaN'", nil}, {"d > 1e299", nil}, {"d > 'Infinity'", nil}, {"r < 'NaN'", nil}, {"d < 0", nil}, {"r = d", nil},
	{"r > i4", nil}, {"d = 5", nil}, {"d <= 2.5", nil}, {"r IN (1.5, 5)", nil}, {"d = '1e-300'::double precision", nil},
	{"d = num", nil}, {"i8 = d", nil}, {"d = 0.30000000000000004", nil}, {"r = 16777217", nil},
	{"r = '16777217'", nil}, {"d > 0 AND d < 1e-300", nil}, {"r >= 3.4e38", nil}, {"d = 'Infinity'", nil}, {"r = '-inf'", nil},
	// text
	{"tx = 'abc'", nil}, {"tx <> 'abc'", nil}, {"tx = 'abc '", nil}, {"tx < 'b'", nil}, {"tx >= 'a'", nil},
	{`tx COLLATE "C" > 'Z'`, nil}, {"tx = tx2", nil}, {"tx < tx2", nil}, {"tx IN ('abc', 'ABC', NULL)", nil},
	{"tx NOT IN ('abc', 'ABC')", nil}, {"tx LIKE 'a%'", nil}, {"tx LIKE '%c'", nil}, {"tx LIKE '%b%'", nil},
	{"tx LIKE 'a_c'", nil}, {`tx LIKE 'a\%b'`, nil}, {`tx LIKE '%\\%'`, nil}, {"tx NOT LIKE 'a%'", nil}, {"tx ILIKE 'abc'", nil},
	{"tx ILIKE 'H%'", nil}, {"tx NOT ILIKE '%B%'", nil}, {"tx LIKE '_'", nil}, {"tx LIKE '%'", nil}, {"tx LIKE ''", nil},
	{"tx LIKE $1", []string{"%é%"}}, {"vc ILIKE 'hé%'", nil}, {"vc ILIKE 'hÉ%'", nil}, {"tx LIKE '%a%b%c%'", nil},
	{"tx LIKE 'a%c'", nil}, {"tx LIKE '_b%'", nil}, {"tx LIKE '%_'", nil}, {"tx ILIKE '%ünï%'", nil}, {"tx LIKE 'a_b'", nil},
	{"vc = 'Abc '", nil}, {"vc = 'Abc'", nil}, {"vc < 'b'", nil}, {"ch = 'ab'", nil}, {"ch = 'ab   '", nil}, {"ch = 'abc'", nil},
	{"ch < 'b'", nil}, {"ch = tx", nil}, {"ch = 'x'", nil}, {"ch LIKE 'a%'", nil}, {"ch LIKE 'ab'", nil}, {"ch LIKE 'ab%'", nil},
	{"ch LIKE '% '", nil}, {"ch = 'abc'::text", nil}, {"ch = ''", nil}, {"ch = vc", nil}, {"nm = 'abc'", nil}, {"nm > 'b'", nil},
	{"tx BETWEEN 'a' AND 'b'", nil}, {"tx = 'it''s'", nil}, {"tx > ''", nil}, {"tx = ''", nil}, {"tx = E'a\\nb'", nil},
	{"tx = 'ünïcödé 🎉'", nil}, {"vc > '🎉'", nil}, {"tx IN ('a', 'b', 'c', 'abc', '5', '%', 'Zebra', 'ABC', 'x', 'y')", nil},
	{"tx = $1", []string{"héllo"}}, {"tx2 IS NULL AND tx IS NOT NULL", nil}, {"vc <= tx", nil},
	// boolean
	{"b", nil}, {"NOT b", nil}, {"b = true", nil}, {"b = 't'", nil}, {"b <> false", nil}, {"b IS TRUE", nil},
	{"b IS NOT TRUE", nil}, {"b IS FALSE", nil}, {"b IS NOT FALSE", nil}, {"b IS UNKNOWN", nil}, {"b IS NULL", nil},
	{"b = $1", []string{"yes"}}, {"b OR i4 = 42", nil}, {"b AND i4 > 0", nil}, {"NOT b OR b IS NULL", nil}, {"true", nil},
	{"false AND i4 = 1", nil}, {"NULL", nil}, {"i4 = 5 OR NULL", nil}, {"b < true", nil}, {"b IN (false)", nil},
	{"NOT NOT b", nil}, {"b AND NOT b", nil}, {"b OR NOT b", nil}, {"b IS NOT DISTINCT FROM false", nil},
	// uuid
	{"u = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", nil}, {"u = 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", nil},
	{"u = '{a0eebc999c0b4ef8bb6d6bb9bd380a11}'", nil}, {"u > '00000000-0000-0000-0000-000000000000'", nil},
	{"u < 'b0000000-0000-0000-0000-000000000000'", nil}, {"u IN ($1)", []string{"FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"}},
	{"u IS NULL", nil}, {"u <> 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid", nil},
	// date
	{"dt = '2024-01-01'", nil}, {"dt > '2000-01-01'", nil}, {"dt < '1970-01-02'", nil}, {"dt = 'infinity'", nil},
	{"dt > '-infinity'", nil}, {"dt BETWEEN '1999-01-01' AND '2024-12-31'", nil}, {"dt = '2024-01-01'::date", nil},
	{"dt < ts", nil}, {"dt = ts", nil}, {"dt < '0001-01-01'", nil}, {"dt = date '1999-12-31'", nil}, {"dt = '0044-03-15 BC'", nil},
	{"dt >= tstz", nil},
	// timestamp
	{"ts = '2024-01-01 10:00:00'", nil}, {"ts > '2024-01-01'", nil}, {"ts = '2024-01-01T10:00:00'", nil},
	{"ts < '2000-01-01'", nil}, {"ts = 'infinity'", nil}, {"ts >= '2024-01-01 09:59:59.5'", nil},
	{"ts = '2024-01-01 10:00:00+05'", nil}, {"ts > '2024-01-01'::date", nil}, {"ts = dt", nil},
	{"ts < '2024-01-01 10:00:00.000001'", nil}, {"ts = '1999-12-31 23:59:59.999999'", nil}, {"ts BETWEEN $1 AND $2", []string{"2024-01-01", "2024-12-31"}},
	// timestamptz
	{"tstz = '2024-01-01 10:00:00+00'", nil}, {"tstz = '2024-01-01 05:00:00'", nil}, {"tstz > '2024-01-01'", nil},
	{"tstz = '2024-01-01 10:00:00Z'", nil}, {"tstz = '2024-01-01 04:30:00.5+00'", nil}, {"tstz < '1970-01-01 00:00:01+00'", nil},
	{"tstz = 'infinity'", nil}, {"tstz = 'Infinity'::timestamptz", nil}, {"tstz = '2024-06-01 10:00:00.123456+00'", nil},
	{"tstz > ts", nil}, {"tstz = ts", nil}, {"tstz >= dt", nil},
	{"tstz BETWEEN '2024-01-01 00:00+00' AND '2024-12-31 00:00+00'", nil}, {"tstz = $1", []string{"2024-01-01 11:00:00+01"}},
	{"tstz = '2024-01-01 05:00:00 America/New_York'", nil}, {"tstz = '2024-03-10 07:30:00+00'", nil},
	{"tstz < '0001-01-01 00:00:00+00'", nil}, {"tstz = '2024-01-01 10:00:00+00'::timestamptz", nil},
	{"tstz = '2024-01-01 15:30:00+05:30'", nil}, {"tstz > '2024-01-01'::date", nil},
	// time
	{"tm = '10:00'", nil}, {"tm > '12:00:00'", nil}, {"tm = '24:00:00'", nil}, {"tm < '00:00:01'", nil},
	{"tm = '10:00:00.5'", nil}, {"tm BETWEEN '10:00' AND '12:00'", nil}, {"tm = '00:00:00.000001'", nil},
	// other types, mixed
	{"arr IS NULL", nil}, {"js IS NOT NULL", nil}, {"arr IS NOT NULL AND i4 = 1", nil},
	{"(i4 = 1 OR tx = 'abc') AND NOT (b IS FALSE)", nil}, {"((((i4 = 5))))", nil},
	{"i4 = 5 OR tx LIKE 'a%' OR d > 1 OR tstz > '2024-01-01'", nil},
}

// TestAgainstPostgres evaluates every case over every edge row and requires the
// same ids PostgreSQL selects.
func TestAgainstPostgres(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	const zone = "America/New_York"
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SET TimeZone = '"+zone+"'"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, tableDDL); err != nil {
		t.Fatal(err)
	}
	for i, r := range edgeRows {
		names, vals := []string{"id"}, []string{fmt.Sprint(i + 1)}
		for k, v := range r {
			names = append(names, k)
			vals = append(vals, quoteLiteral(v))
		}
		if _, err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO t (%s) VALUES (%s)", strings.Join(names, ", "), strings.Join(vals, ", "))); err != nil {
			t.Fatalf("row %d: %v", i+1, err)
		}
	}

	var cols []Column
	rs, err := conn.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod), coalesce(c.collname, '')
		FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation
		WHERE a.attrelid = 't'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`)
	if err != nil {
		t.Fatal(err)
	}
	for rs.Next() {
		var c Column
		if err := rs.Scan(&c.Name, &c.Type, &c.Collation); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, c)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	var dbColl string
	if err := conn.QueryRow(ctx, "SELECT datcollate FROM pg_database WHERE datname = current_database()").Scan(&dbColl); err != nil {
		t.Fatal(err)
	}

	// Every row, every column as text: what pgoutput sends.
	var sel []string
	for _, c := range cols {
		q := quoteIdent(c.Name)
		// format('%s') runs the type's output function, as pgoutput does (::text would
		// strip char(n) padding).
		sel = append(sel, fmt.Sprintf("CASE WHEN %s IS NULL THEN NULL ELSE format('%%s', %s) END", q, q))
	}
	rows := map[int]map[string]*string{}
	rs, err = conn.Query(ctx, "SELECT "+strings.Join(sel, ", ")+" FROM t")
	if err != nil {
		t.Fatal(err)
	}
	for rs.Next() {
		vals := make([]*string, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := map[string]*string{}
		for i, c := range cols {
			row[c.Name] = vals[i]
		}
		var id int
		fmt.Sscan(*row["id"], &id)
		rows[id] = row
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	ids := make([]int, 0, len(rows))
	for id := range rows {
		ids = append(ids, id)
	}
	slices.Sort(ids)

	opts := Options{Location: loc, DefaultCollation: dbColl}
	for _, tc := range pgCases {
		args := []any{pgx.QueryExecModeSimpleProtocol}
		for _, p := range tc.params {
			args = append(args, p)
		}
		var want []int
		rs, err := conn.Query(ctx, "SELECT id FROM t WHERE "+tc.expr+" ORDER BY id", args...)
		if err == nil {
			want, err = pgx.CollectRows(rs, pgx.RowTo[int])
		}
		e, cerr := Compile(tc.expr, cols, tc.params, opts)
		if err != nil {
			// PostgreSQL refuses it: so must we.
			if cerr == nil {
				t.Errorf("%s: PostgreSQL refused (%v) but Compile accepted", tc.expr, err)
			}
			continue
		}
		if cerr != nil {
			t.Errorf("%s: Compile: %v", tc.expr, cerr)
			continue
		}
		var got []int
		for _, id := range ids {
			row := rows[id]
			if e.Eval(func(c string) *string { return row[c] }) {
				got = append(got, id)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s %v: Eval selects %v, PostgreSQL %v (canonical %s)", tc.expr, tc.params, got, want, e.Canonical())
		}
	}
	t.Logf("%d where clauses × %d rows agree with PostgreSQL", len(pgCases), len(ids))
}
