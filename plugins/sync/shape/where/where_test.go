package where

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

var testCols = []Column{
	{Name: "id", Type: "bigint"},
	{Name: "user_id", Type: "integer"},
	{Name: "status", Type: "text", Collation: "default"},
	{Name: "name", Type: "character varying(20)", Collation: "en_US.utf8"},
	{Name: "code", Type: "character(3)", Collation: "C"},
	{Name: "price", Type: "numeric(12,2)"},
	{Name: "score", Type: "real"},
	{Name: "active", Type: "boolean"},
	{Name: "uid", Type: "uuid"},
	{Name: "at", Type: "timestamp with time zone"},
	{Name: "tags", Type: "text[]", Collation: "default"},
	{Name: "doc", Type: "jsonb"},
}

var testOpts = Options{DefaultCollation: "en_US.utf8"}

func TestRefusals(t *testing.T) {
	cases := []struct {
		expr   string
		params []string
		want   string // in the message
	}{
		{"foo = 1", nil, `unknown column "foo"`},
		{"user_id = $3", []string{"1", "2"}, "$3 has no value (2 params given)"},
		{"lower(status) = 'x'", nil, "functions are not supported in shape where clauses: lower(...)"},
		{"status < 'x'", nil, `ordering comparison on text column "status" needs collation C (its collation is en_US.utf8): write status COLLATE "C" < 'x'`},
		{"name BETWEEN 'a' AND 'b'", nil, `needs collation C`},
		{"user_id = 'abc'", nil, `cannot compare integer column "user_id" with 'abc': invalid input syntax for type integer`},
		{"user_id = 1; DROP TABLE t", nil, "single boolean expression"},
		{"user_id = 1 ORDER BY 1", nil, "single boolean expression"},
		{"user_id = 1 UNION SELECT 1", nil, "single boolean expression"},
		{"user_id = 1 GROUP BY user_id", nil, "single boolean expression"},
		{"user_id IN (SELECT 1)", nil, "subqueries are not supported"},
		{"EXISTS (SELECT 1)", nil, "subqueries are not supported"},
		{"t.user_id = 1", nil, "no table qualifier"},
		{"count(*) > 1", nil, "functions are not supported"},
		{"user_id + 1 = 2", nil, "operator + is not supported"},
		{"user_id = 0.1 + 0.2", nil, "operator + is not supported"},
		{"status ~ 'a'", nil, "operator ~ is not supported"},
		{"user_id::text = '1'", nil, "casts of columns are not supported"},
		{"tags = '{a}'", nil, `column "tags" of type text[] can only be tested with IS NULL`},
		{"doc = '{}'", nil, `column "doc" of type jsonb can only be tested with IS NULL`},
		{"user_id", nil, "argument of WHERE must be type boolean, not type integer"},
		{"user_id = ", nil, "syntax error"},
		{"", nil, "empty"},
		{"status LIKE 'a%' ESCAPE '#'", nil, "ESCAPE is not supported"},
		{"status LIKE name", nil, "patterns must be constants"},
		{`status LIKE 'a\'`, nil, "must not end with escape character"},
		{"user_id LIKE '1%'", nil, "LIKE applies to text"},
		{"status SIMILAR TO 'a'", nil, "SIMILAR TO is not supported"},
		{"user_id = ANY('{1,2}')", nil, "ANY/ALL are not supported"},
		{"CASE WHEN active THEN true END", nil, "CASE is not supported"},
		{"at > now()", nil, "functions are not supported"},
		{"at > CURRENT_TIMESTAMP", nil, "functions are not supported"},
		{"at > 'now'", nil, "is not a constant"},
		{"uid = 'nope'", nil, "invalid input syntax for type uuid"},
		{"user_id = active", nil, `cannot compare integer column "user_id" with boolean column "active"`},
		{"user_id = 3000000000::integer", nil, "out of range"},
		{"user_id = '3000000000'", nil, `value "3000000000" is out of range for type integer`},
		{"status = 1", nil, `cannot compare text column "status" with 1`},
		{"user_id = '1'::interval", nil, "type interval is not supported"},
		{"user_id COLLATE \"C\" = 1", nil, "COLLATE applies to text only"},
		{"price = 1e400::numeric(12,2)", nil, "numeric field overflow"},
		{"status = B'101'", nil, "bit string"},
		{"user_id IS NULL AND (SELECT true)", nil, "subqueries"},
	}
	for _, tc := range cases {
		_, err := Compile(tc.expr, testCols, tc.params, testOpts)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%q: want *Error containing %q, got %v", tc.expr, tc.want, err)
			continue
		}
		if !strings.Contains(e.Msg, tc.want) {
			t.Errorf("%q: error %q does not contain %q", tc.expr, e.Msg, tc.want)
		}
	}
}

func TestErrorPosition(t *testing.T) {
	_, err := Compile("user_id = 1 AND foo = 2", testCols, nil, testOpts)
	var e *Error
	if !errors.As(err, &e) || e.Pos != 16 {
		t.Fatalf("want position 16, got %v", err)
	}
	_, err = Compile("user_id = = 2", testCols, nil, testOpts)
	if !errors.As(err, &e) || e.Pos != 10 {
		t.Fatalf("want syntax error at 10, got %#v", err)
	}
}

func TestAccepted(t *testing.T) {
	for _, expr := range []string{
		`status COLLATE "C" < 'x'`,
		`code < 'x'`,
		`name = 'x' AND status IN ('a', 'b') AND status LIKE 'a%'`,
		`tags IS NULL AND doc IS NOT NULL`,
		`at > '2024-01-01 10:00'::timestamptz`,
	} {
		if _, err := Compile(expr, testCols, nil, testOpts); err != nil {
			t.Errorf("%s: %v", expr, err)
		}
	}
}

func TestEqualities(t *testing.T) {
	cases := []struct {
		expr   string
		params []string
		want   []Equality
	}{
		{"user_id = 42", nil, []Equality{{"user_id", "42"}}},
		{"42 = user_id", nil, []Equality{{"user_id", "42"}}},
		{"user_id = $1 AND status IN ('a', 'b')", []string{"007"}, []Equality{{"user_id", "7"}}},
		{"(user_id = 1 AND (status = 'x' AND active)) AND price > 3", nil,
			[]Equality{{"active", "t"}, {"status", "x"}, {"user_id", "1"}}},
		{"NOT active AND uid = 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", nil,
			[]Equality{{"active", "f"}, {"uid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}}},
		{"price = '1.50'", nil, []Equality{{"price", "1.5"}}},
		{"code = 'ab '", nil, []Equality{{"code", "ab"}}},
		{"at = '2024-01-01 12:00:00+02'", nil, []Equality{{"at", "2024-01-01T10:00:00Z"}}},
		{"status IN ('a')", nil, []Equality{{"status", "a"}}},
		{"user_id = 1 OR status = 'x'", nil, nil},
		{"NOT (user_id = 1)", nil, nil},
		{"user_id = 1.0", nil, nil},     // compared as numeric: not an integer equality
		{"score = 0.1", nil, nil},       // real compared with a double precision constant
		{"code = 'ab'::text", nil, nil}, // char(n) compared as text
		{"user_id = NULL", nil, nil},
		{"user_id = id", nil, nil},
	}
	for _, tc := range cases {
		e, err := Compile(tc.expr, testCols, tc.params, testOpts)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if got := e.Equalities(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: Equalities %v, want %v", tc.expr, got, tc.want)
		}
	}
}

func TestCanonical(t *testing.T) {
	groups := []struct {
		params   []string
		spelling []string
	}{
		{[]string{"42"}, []string{
			"user_id = 42 AND status IN ('a','b')",
			"((status IN ('b', 'a', 'a'))) and USER_ID=$1",
			"user_id = '042'   AND   status IN ('a', 'b')",
			"status IN ('a', 'b') AND user_id = CAST($1 AS integer)",
		}},
		{nil, []string{
			"price BETWEEN 1 AND 2",
			"price >= 1.00 AND price <= '2'",
			"2 >= price AND 1 <= price",
		}},
		{nil, []string{"active", "active = true", "active = 't'", "active <> false"}},
		{nil, []string{"user_id <> 5", "user_id != 5", "5 <> user_id"}},
		{[]string{"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"}, []string{
			"uid = $1", "uid = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "uid = '{a0eebc999c0b4ef8bb6d6bb9bd380a11}'::uuid",
		}},
		{nil, []string{
			"at = '2024-01-01 12:00:00+02'", "at = '2024-01-01T10:00:00Z'", "at = timestamptz '2024-01-01 10:00:00'",
		}},
		{nil, []string{"user_id NOT IN (1, 2)", "user_id NOT IN (2, 1, 1)"}},
	}
	for _, g := range groups {
		var first string
		for i, s := range g.spelling {
			e, err := Compile(s, testCols, g.params, testOpts)
			if err != nil {
				t.Fatalf("%s: %v", s, err)
			}
			if i == 0 {
				first = e.Canonical()
				continue
			}
			if e.Canonical() != first {
				t.Errorf("%s: Canonical %s, want %s (as for %s)", s, e.Canonical(), first, g.spelling[0])
			}
		}
	}
	a, _ := Compile("user_id = 1", testCols, nil, testOpts)
	b, _ := Compile("user_id = 2", testCols, nil, testOpts)
	if a.Canonical() == b.Canonical() {
		t.Errorf("different definitions share Canonical %s", a.Canonical())
	}
	e, _ := Compile("user_id = $1 AND status IN ('a','b')", testCols, []string{"42"}, testOpts)
	if got, want := e.Canonical(), `"status" IN ('a', 'b') AND "user_id" = 42`; got != want {
		t.Errorf("Canonical %s, want %s", got, want)
	}
}

func TestCanonicalValue(t *testing.T) {
	cases := []struct {
		typ, in, want string
	}{
		{"integer", "007", "7"},
		{"bigint", "-9223372036854775808", "-9223372036854775808"},
		{"uuid", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{"boolean", "yes", "t"}, {"boolean", "true", "t"}, {"boolean", "f", "f"},
		{"numeric", "1.50", "1.5"}, {"numeric(12,2)", "100.00", "100"}, {"numeric", "-0.0", "0"}, {"numeric", "NaN", "NaN"},
		{"numeric", "1e3", "1000"}, {"numeric", "0.00120", "0.0012"},
		{"double precision", "-0", "0"}, {"double precision", "1e+20", "1e+20"}, {"real", "Infinity", "Infinity"},
		{"timestamp with time zone", "2024-01-02 03:04:05.123456+00", "2024-01-02T03:04:05.123456Z"},
		{"timestamp with time zone", "2024-01-01 22:04:05-05", "2024-01-02T03:04:05Z"},
		{"timestamp with time zone", "infinity", "infinity"},
		{"timestamp without time zone", "2024-01-02 03:04:05.5", "2024-01-02T03:04:05.5"},
		{"date", "2024-01-02", "2024-01-02"}, {"date", "0044-03-15 BC", "0044-03-15 BC"},
		{"time without time zone", "03:04:05.000100", "03:04:05.0001"},
		{"character(5)", "ab   ", "ab"}, {"text", "ab ", "ab "}, {"jsonb", `{"a": 1}`, `{"a": 1}`},
	}
	for _, tc := range cases {
		got, err := CanonicalValue(Column{Name: "c", Type: tc.typ}, tc.in)
		if err != nil || got != tc.want {
			t.Errorf("CanonicalValue(%s, %q) = %q, %v; want %q", tc.typ, tc.in, got, err, tc.want)
		}
	}
	if _, err := CanonicalValue(Column{Name: "c", Type: "integer"}, "x"); err == nil {
		t.Error("CanonicalValue(integer, x) accepted")
	}
}

func TestColumns(t *testing.T) {
	e, err := Compile("status = 'a' AND (user_id = 1 OR user_id IS NULL) AND tags IS NULL", testCols, nil, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := e.Columns(), []string{"status", "tags", "user_id"}; !slices.Equal(got, want) {
		t.Errorf("Columns %v, want %v", got, want)
	}
}

func BenchmarkEval(b *testing.B) {
	e, err := Compile("user_id = 42 AND status IN ('a','b')", testCols, nil, testOpts)
	if err != nil {
		b.Fatal(err)
	}
	uid, status := "42", "b"
	row := func(c string) *string {
		switch c {
		case "user_id":
			return &uid
		case "status":
			return &status
		}
		return nil
	}
	b.ReportAllocs()
	for b.Loop() {
		if !e.Eval(row) {
			b.Fatal("no match")
		}
	}
}
