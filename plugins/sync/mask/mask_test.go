package mask_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/mask"
	"github.com/fiberkit/fiberkit/plugins/sync/migrate"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func schemaOf(t *testing.T, pool *pgxpool.Pool, table string) *catalog.Schema {
	t.Helper()
	sch, err := catalog.GetSchema(context.Background(), pool, table)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// The text form reads and writes back the same rules, quoting what must be.
func TestParseFormatRoundTrip(t *testing.T) {
	text := `users.email: fake email, *.password_hash: null
orders.customer_id: hash
users.note: fixed redacted
# a comment
users.motto: fixed 'a, b and ''c'''
users.blank: fixed ''
audit.events.actor: fake name
"my table"."my.col": fake phone
users.pad: fixed '  x  '`
	s, err := mask.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	want := mask.Set{
		{Table: "users", Column: "email", Kind: "fake", Format: "email"},
		{Table: "*", Column: "password_hash", Kind: "null"},
		{Table: "orders", Column: "customer_id", Kind: "hash"},
		{Table: "users", Column: "note", Kind: "fixed", Value: "redacted"},
		{Table: "users", Column: "motto", Kind: "fixed", Value: "a, b and 'c'"},
		{Table: "users", Column: "blank", Kind: "fixed", Value: ""},
		{Table: "audit.events", Column: "actor", Kind: "fake", Format: "name"},
		{Table: "my table", Column: "my.col", Kind: "fake", Format: "phone"},
		{Table: "users", Column: "pad", Kind: "fixed", Value: "  x  "},
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("parsed\n%+v\nwant\n%+v", s, want)
	}
	again, err := mask.Parse(s.String())
	if err != nil {
		t.Fatalf("%v parsing\n%s", err, s.String())
	}
	if !reflect.DeepEqual(again, s) {
		t.Fatalf("round trip\n%s\ngave\n%+v", s.String(), again)
	}
	if got := mask.Format(want[0]); got != "users.email: fake email" {
		t.Errorf("Format = %q", got)
	}
	for _, bad := range []string{"users.email", "users.email: blur", "users.email: fake face", "email: hash", "users.email: hash please",
		"users.a: hash, users.a: null", "us*rs.a: hash", "users.a: fixed 'open", "users.a: null x"} {
		if _, err := mask.Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	if s, err := mask.Parse(" \n, ,\n"); err != nil || len(s) != 0 {
		t.Errorf("blank rules: %v %v", s, err)
	}
}

// A layer's rule replaces the rules below for its column; a rule naming the
// table beats a * rule of the same layer.
func TestMergeAndFor(t *testing.T) {
	base := mask.Set{{Table: "*", Column: "email", Kind: "null"}, {Table: "users", Column: "token", Kind: "null"}, {Table: "users", Column: "name", Kind: "fake", Format: "name"}}
	over := mask.Set{{Table: "users", Column: "email", Kind: "hash"}, {Table: "*", Column: "name", Kind: "hash"}}
	m := mask.Merge(base, over)
	users, orders := m.For("users"), m.For("orders")
	if users["email"].Kind != "hash" || orders["email"].Kind != "null" || users["token"].Kind != "null" || users["name"].Kind != "hash" || orders["name"].Kind != "hash" {
		t.Fatalf("users %+v, orders %+v", users, orders)
	}
}

// The SQL's HMAC is HMAC-SHA-256 (crypto/hmac), computed with built-ins only.
func TestHashIsHMACSHA256(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	exec(t, pool, `CREATE TABLE t (id int PRIMARY KEY, v bytea)`)
	key, err := mask.DeriveKey("a test secret")
	if err != nil {
		t.Fatal(err)
	}
	tb, err := mask.Set{{Table: "t", Column: "v", Kind: "hash"}}.Resolve(ctx, pool, schemaOf(t, pool, "t"), key)
	if err != nil {
		t.Fatal(err)
	}
	expr, _ := tb.Expr("v", "src.v")
	if strings.Contains(expr, hex.EncodeToString(key[:4])) {
		t.Fatalf("the key is in the expression's text: %s", expr)
	}
	tx := keyed(t, pool, tb)
	for _, msg := range []string{"", "hello", "héllo 日本 🎉", strings.Repeat("x", 1000)} {
		// The message of a bytea is its text (\x…); compare the raw HMAC.
		var got []byte
		if err := tx.QueryRow(ctx, `SELECT `+expr+` FROM (SELECT $1::text::bytea AS v) AS src`, `\x`+hex.EncodeToString([]byte(msg))).Scan(&got); err != nil {
			t.Fatal(err)
		}
		m := hmac.New(sha256.New, key[:])
		m.Write([]byte(`\x` + hex.EncodeToString([]byte(msg))))
		if want := m.Sum(nil); !hmac.Equal(got, want) {
			t.Errorf("HMAC of %q: SQL %x, crypto/hmac %x", msg, got, want)
		}
	}
	other, _ := mask.DeriveKey("another secret")
	if other == key {
		t.Error("two secrets derive one key")
	}
}

// textValues are the values every masked column is tried with (as text; nil is NULL).
func textValues() []*string {
	s := func(v string) *string { return &v }
	return []*string{nil, s(""), s("plain"), s("héllo wörld 日本 🎉"), s("  spaced  "), s("+1 (555) 010-9999"), s("alice@example.com"),
		s("O'Brien \\ \"quoted\""), s(strings.Repeat("long ", 40))}
}

// Every rule gives, in Go (ApplyText), byte for byte the text its SQL gives —
// NULL, empty, unicode, padded char(n), the extremes of the integer types.
func TestSQLAndGoAgree(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	exec(t, pool, `CREATE TABLE t (
		id int PRIMARY KEY,
		txt text, vc varchar(10), vc30 varchar(30), ch char(8), ch70 char(70), ci varchar,
		i2 int2, i4 int4, i8 int8, num numeric, num52 numeric(5,2), num20 numeric(22,2),
		u uuid, b bytea, nn text NOT NULL DEFAULT 'x', flag boolean, js jsonb, ts timestamptz, arr int[])`)
	key, _ := mask.DeriveKey("sql and go")
	// Rows: every text value in the text columns; the other columns get their own
	// lists, cycled.
	ints2 := []string{"-32768", "32767", "0", "1", "-1"}
	ints4 := []string{"-2147483648", "2147483647", "0", "42"}
	ints8 := []string{"-9223372036854775808", "9223372036854775807", "0", "7"}
	nums := []string{"0", "123.450", "-0.5", "99999999999999999999.123456", "NaN"}
	nums52 := []string{"0", "-999.99", "999.99", "1.5"}
	uuids := []string{"00000000-0000-0000-0000-000000000000", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}
	byteas := []string{`\x`, `\x00ff10`, `\xdeadbeef`}
	vals := textValues()
	for i, v := range vals {
		pick := func(list []string) *string {
			if v == nil {
				return nil
			}
			return &list[i%len(list)]
		}
		var short *string
		if v != nil {
			r := []rune(*v)
			s := string(r[:min(len(r), 8)])
			short = &s
		}
		exec(t, pool, `INSERT INTO t (id, txt, vc, vc30, ch, ch70, ci, i2, i4, i8, num, num52, num20, u, b, nn, flag, js, ts, arr)
			VALUES ($1, $2, left($2, 10), left($2, 30), $3, left($2, 70), $2, $4::text::int2, $5::text::int4, $6::text::int8, $7::text::numeric,
			$8::text::numeric, $7::text::numeric(22,2), $9::text::uuid, $10::text::bytea, coalesce($2, 'x'), $2 IS NULL, '{"a": 1}', now(), '{1,2}')`,
			i, v, short, pick(ints2), pick(ints4), pick(ints8), pick(nums), pick(nums52), pick(uuids), pick(byteas))
	}
	exec(t, pool, `UPDATE t SET num20 = NULL WHERE num20 = 'NaN'`)
	sch := schemaOf(t, pool, "t")
	type ruleCase struct {
		cols []string
		rule mask.Rule
	}
	text := []string{"txt", "vc", "vc30", "ch", "ch70", "ci"}
	cases := []ruleCase{
		{text, mask.Rule{Kind: "hash"}},
		{[]string{"txt", "vc30", "ch70", "ci"}, mask.Rule{Kind: "fake", Format: "email"}},
		{text, mask.Rule{Kind: "fake", Format: "name"}},
		{text, mask.Rule{Kind: "fake", Format: "phone"}},
		{text, mask.Rule{Kind: "fixed", Value: "zz"}},
		{text, mask.Rule{Kind: "null"}},
		{[]string{"i2", "i4", "i8", "num52", "num20", "u", "b"}, mask.Rule{Kind: "hash"}},
		{[]string{"i2", "i4", "i8", "num", "num52", "u", "b", "flag", "js", "ts", "arr"}, mask.Rule{Kind: "null"}},
		{[]string{"i2"}, mask.Rule{Kind: "fixed", Value: "-7"}},
		{[]string{"num52"}, mask.Rule{Kind: "fixed", Value: "1.5"}},
		{[]string{"flag"}, mask.Rule{Kind: "fixed", Value: "yes"}},
		{[]string{"js"}, mask.Rule{Kind: "fixed", Value: `{"b":  [1, 2]}`}},
		{[]string{"ts"}, mask.Rule{Kind: "fixed", Value: "2020-01-02 03:04:05+02"}},
		{[]string{"arr"}, mask.Rule{Kind: "fixed", Value: "{3, 4}"}},
		{[]string{"b"}, mask.Rule{Kind: "fixed", Value: `\x0102`}},
		{[]string{"nn"}, mask.Rule{Kind: "fixed", Value: "kept"}},
	}
	compared := 0
	var tx pgx.Tx
	for _, tc := range cases {
		for _, col := range tc.cols {
			r := tc.rule
			r.Table, r.Column = "t", col
			tb, err := mask.Set{r}.Resolve(ctx, pool, sch, key)
			if err != nil {
				t.Fatalf("%s: %v", mask.Format(r), err)
			}
			ref := "src." + pgx.Identifier{col}.Sanitize()
			expr, ok := tb.Expr(col, ref)
			if !ok {
				t.Fatalf("%s: no expression", mask.Format(r))
			}
			if tx == nil { // one transaction for them all: the key is the same
				tx = keyed(t, pool, tb)
			}
			rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT CASE WHEN %[1]s IS NULL THEN NULL ELSE format('%%s', %[1]s) END,
				CASE WHEN (%[2]s) IS NULL THEN NULL ELSE format('%%s', %[2]s) END FROM t AS src ORDER BY id`, ref, expr))
			if err != nil {
				t.Fatalf("%s: %v\n%s", mask.Format(r), err, expr)
			}
			for rows.Next() {
				var in, sqlOut *string
				if err := rows.Scan(&in, &sqlOut); err != nil {
					t.Fatal(err)
				}
				row := map[string]*string{col: in, "other": in}
				tb.ApplyText(row)
				if !eq(row[col], sqlOut) {
					t.Errorf("%s on %s: Go %s, SQL %s", mask.Format(r), show(in), show(row[col]), show(sqlOut))
				}
				if row["other"] != in {
					t.Errorf("an unmasked column changed")
				}
				if in != nil && r.Kind != "null" && sqlOut == nil || in == nil && sqlOut != nil {
					t.Errorf("%s on %s: NULL not kept as NULL (%s)", mask.Format(r), show(in), show(sqlOut))
				}
				if r.Kind == "fake" && r.Format == "email" && sqlOut != nil {
					if _, err := mail.ParseAddress(strings.TrimSpace(*sqlOut)); err != nil {
						t.Errorf("fake email %q: %v", *sqlOut, err)
					}
				}
				compared++
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				t.Fatalf("%s: %v", mask.Format(r), err)
			}
		}
	}
	if compared < 500 {
		t.Fatalf("only %d values compared", compared)
	}
}

func eq(a, b *string) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }

func show(v *string) string {
	if v == nil {
		return "NULL"
	}
	return fmt.Sprintf("%q", *v)
}

// Equal values hash equally in every table (joins match), whatever their table
// or column; another key hashes them otherwise; fakes keep their format.
func TestDeterministic(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	exec(t, pool, `CREATE TABLE a (id bigint PRIMARY KEY, phone text); CREATE TABLE b (id int PRIMARY KEY, a_id bigint)`)
	key, _ := mask.DeriveKey("one")
	other, _ := mask.DeriveKey("two")
	rules := mask.Set{{Table: "a", Column: "id", Kind: "hash"}, {Table: "b", Column: "a_id", Kind: "hash"}, {Table: "a", Column: "phone", Kind: "fake", Format: "phone"}}
	ta, err := rules.Resolve(ctx, pool, schemaOf(t, pool, "a"), key)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := rules.Resolve(ctx, pool, schemaOf(t, pool, "b"), key)
	if err != nil {
		t.Fatal(err)
	}
	to, _ := rules.Resolve(ctx, pool, schemaOf(t, pool, "a"), other)
	v := "123456789"
	x, y, z := ta.Text("id", &v), tb.Text("a_id", &v), to.Text("id", &v)
	if *x != *y || *x == *z || *x == v {
		t.Errorf("hashes %s %s %s", *x, *y, *z)
	}
	p := "+44 (20) 7946-0958"
	f1, f2 := ta.Text("phone", &p), ta.Text("phone", &p)
	if *f1 != *f2 || len(*f1) != len(p) || *f1 == p {
		t.Errorf("fake phone %q, %q", *f1, *f2)
	}
	for i := range p {
		if (p[i] >= '0' && p[i] <= '9') != ((*f1)[i] >= '0' && (*f1)[i] <= '9') {
			t.Errorf("fake phone %q does not keep the shape of %q", *f1, p)
		}
	}
	if got := ta.Rules().Strings(); !reflect.DeepEqual(got, []string{"a.id: hash", "a.phone: fake phone"}) {
		t.Errorf("applied rules %v", got)
	}
}

// A rule its column cannot take is refused, naming table, column, type and rule.
func TestValidation(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	exec(t, pool, `CREATE TABLE users (id int PRIMARY KEY, email varchar(12), name text NOT NULL, age int, tags text[], born date,
		nick text GENERATED ALWAYS AS (lower(name)) STORED, amount numeric(3,3))`)
	sch := schemaOf(t, pool, "users")
	for _, tc := range []struct {
		rule mask.Rule
		want string
	}{
		{mask.Rule{Column: "age", Kind: "fixed", Value: "abc"}, `"abc" is not a valid integer`},
		{mask.Rule{Column: "age", Kind: "fake", Format: "email"}, "fake works on text"},
		{mask.Rule{Column: "name", Kind: "null"}, "NOT NULL"},
		{mask.Rule{Column: "id", Kind: "fixed", Value: "1"}, "primary-key column may only be hashed"},
		{mask.Rule{Column: "id", Kind: "hash"}, "holds 31, so distinct keys would collide"},
		{mask.Rule{Column: "tags", Kind: "hash"}, "arrays cannot be hashed"},
		{mask.Rule{Column: "born", Kind: "hash"}, "hash works on"},
		{mask.Rule{Column: "email", Kind: "fake", Format: "email"}, "a fake email needs at least 21 characters"},
		{mask.Rule{Column: "nope", Kind: "hash"}, `no column "nope"`},
		{mask.Rule{Column: "amount", Kind: "hash"}, "numeric without digits before the point"},
		{mask.Rule{Column: "born", Kind: "fixed", Value: "'); DROP TABLE users; --"}, "is not a valid date"},
	} {
		tc.rule.Table = "users"
		err := mask.Set{tc.rule}.Check(ctx, pool, sch)
		var re *mask.RuleError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), tc.want) || re.Table != "users" || re.Column != tc.rule.Column {
			t.Errorf("%s: %v, want a RuleError with %q", mask.Format(tc.rule), err, tc.want)
			continue
		}
		if re.Type != "" && !strings.Contains(err.Error(), re.Type) || !strings.Contains(err.Error(), mask.Format(tc.rule)) {
			t.Errorf("%v: does not name the type and the rule", err)
		}
	}
	// * rules skip tables without the column; rules on generated columns do nothing.
	if tb, err := (mask.Set{{Table: "*", Column: "nope", Kind: "hash"}, {Table: "users", Column: "nick", Kind: "hash"}}).Resolve(ctx, pool, sch, mask.Key{}); err != nil || tb != nil {
		t.Errorf("Resolve = %v, %v", tb, err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
		t.Fatal(err)
	}
}

// Secret columns are masked by default: null when nullable, a placeholder valid
// for the type when not.
func TestSecretDefaults(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	exec(t, pool, `CREATE TABLE users (id int PRIMARY KEY, email text, password_hash varchar(5) NOT NULL, reset_token text,
		api_key uuid NOT NULL, otp_secret bytea NOT NULL, "Encrypted_Password" text, token_count int)`)
	sch := schemaOf(t, pool, "users")
	s, err := mask.SecretDefaults(sch)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"users.password_hash: fixed redac", "users.reset_token: null", "users.api_key: fixed 00000000-0000-0000-0000-000000000000",
		`users.otp_secret: fixed \x`, "users.Encrypted_Password: null"}
	if !reflect.DeepEqual(s.Strings(), want) {
		t.Fatalf("defaults %v, want %v", s.Strings(), want)
	}
	if err := s.Check(ctx, pool, sch); err != nil {
		t.Fatalf("the defaults do not hold: %v", err)
	}
	exec(t, pool, `CREATE TABLE odd (id int PRIMARY KEY, secret point NOT NULL)`)
	if _, err := mask.SecretDefaults(schemaOf(t, pool, "odd")); !errors.Is(err, mask.ErrNoDefault) {
		t.Errorf("a secret point column: %v", err)
	}
}

// Without a secret, the key is made once per database and kept.
func TestLoadKey(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	if err := migrate.Up(ctx, pool); err != nil {
		t.Fatal(err)
	}
	k1, err := mask.LoadKey(ctx, pool, "")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := mask.LoadKey(ctx, pool, "")
	if err != nil || k1 != k2 || k1 == (mask.Key{}) {
		t.Fatalf("keys %x %x (%v)", k1, k2, err)
	}
	d, _ := mask.DeriveKey("s")
	if k3, err := mask.LoadKey(ctx, pool, "s"); err != nil || k3 != d {
		t.Fatalf("with a secret: %x, %v", k3, err)
	}
	_ = syncapi.MaskHash
}

// Normalize names tables as the sender lists them and checks every rule against
// the database's tables as they are, * rules against each table with the column.
func TestNormalize(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	exec(t, pool, `CREATE TABLE users (id int PRIMARY KEY, email text, code int); CREATE TABLE orders (id int PRIMARY KEY, code text)`)
	s, err := mask.Normalize(ctx, pool, mask.Set{{Table: "public.users", Column: "email", Kind: "fake", Format: "email"}, {Table: "*", Column: "code", Kind: "hash"}})
	if err != nil || s[0].Table != "users" || s[1].Table != "*" {
		t.Fatalf("Normalize = %+v, %v", s, err)
	}
	var re *mask.RuleError
	if _, err := mask.Normalize(ctx, pool, mask.Set{{Table: "*", Column: "code", Kind: "fake", Format: "phone"}}); !errors.As(err, &re) || re.Table != "users" {
		t.Errorf("fake phone on users.code (int): %v", err)
	}
	if _, err := mask.Normalize(ctx, pool, mask.Set{{Table: "users", Column: "code", Kind: "fixed", Value: "abc"}}); !errors.As(err, &re) || !strings.Contains(err.Error(), "integer") {
		t.Errorf("fixed abc on an integer: %v", err)
	}
	if _, err := mask.Normalize(ctx, pool, mask.Set{{Table: "nope", Column: "code", Kind: "hash"}}); !errors.Is(err, catalog.ErrUnknownTable) {
		t.Errorf("unknown table: %v", err)
	}
}

// keyed begins a transaction holding tb's key (UseKey), rolled back when the test
// ends: where tb's expressions can be evaluated.
func keyed(t *testing.T, pool *pgxpool.Pool, tb *mask.Table) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	if err := tb.UseKey(ctx, tx); err != nil {
		t.Fatal(err)
	}
	return tx
}
