package mask

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/jackc/pgx/v5/pgconn"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// RuleError is a rule its column cannot take (wrong type, a NOT NULL column
// masked with null, a fixed value the type refuses, a column that does not exist).
type RuleError struct {
	Table, Column, Type string
	Rule                string // the rule in text form
	Reason              string
}

// Error implements error.
func (e *RuleError) Error() string {
	if e.Type == "" {
		return fmt.Sprintf("mask rule %q: %s", e.Rule, e.Reason)
	}
	return fmt.Sprintf("mask rule %q on %s.%s (%s): %s", e.Rule, e.Table, e.Column, e.Type, e.Reason)
}

// class is how a column's base type is masked.
type class int

const (
	classOther class = iota
	classText        // text, varchar, char, citext
	classInt2
	classInt4
	classInt8
	classNumeric
	classUUID
	classBytea
)

// typeShape is what masking needs to know of a column's type.
type typeShape struct {
	class  class
	length int  // char(n)/varchar(n): n; 0 without a limit
	bpchar bool // char(n): the text drops trailing blanks, the value pads to n
	// numeric(p,s): digits before the point (0: no limit) and the scale.
	intDigits, scale int
	array            bool
}

var (
	lengthRe  = regexp.MustCompile(`^(character varying|character|varchar|bpchar)\((\d+)\)$`)
	numericRe = regexp.MustCompile(`^numeric\((\d+)(?:,(-?\d+))?\)$`)
)

// shapeOf classifies a column by its base type (a domain's is the type under it).
func shapeOf(c catalog.Column) typeShape {
	t := c.BaseType
	if t == "" {
		t = c.Type
	}
	if strings.HasSuffix(t, "[]") {
		return typeShape{array: true}
	}
	switch t {
	case "text", "citext", "character varying", "varchar":
		return typeShape{class: classText}
	case "character", "bpchar":
		// Bare "character" is char(1).
		return typeShape{class: classText, bpchar: true, length: 1}
	case "smallint":
		return typeShape{class: classInt2}
	case "integer":
		return typeShape{class: classInt4}
	case "bigint":
		return typeShape{class: classInt8}
	case "numeric":
		return typeShape{class: classNumeric}
	case "uuid":
		return typeShape{class: classUUID}
	case "bytea":
		return typeShape{class: classBytea}
	}
	if m := lengthRe.FindStringSubmatch(t); m != nil {
		n, _ := strconv.Atoi(m[2])
		return typeShape{class: classText, length: n, bpchar: m[1] == "character" || m[1] == "bpchar"}
	}
	if m := numericRe.FindStringSubmatch(t); m != nil {
		p, _ := strconv.Atoi(m[1])
		s := 0
		if m[2] != "" {
			s, _ = strconv.Atoi(m[2])
		}
		if s < 0 {
			return typeShape{class: classOther}
		}
		return typeShape{class: classNumeric, intDigits: max(p-s, 0), scale: s, length: -1}
	}
	return typeShape{}
}

// minKeyHashBits is the least hash a hashed primary key keeps: at 60 bits, a
// billion keys collide with a chance of about one in two thousand.
const minKeyHashBits = 60

// hashBits is how many bits of the hash a column of shape sh keeps.
func hashBits(sh typeShape) int {
	switch sh.class {
	case classInt2:
		return 15
	case classInt4:
		return 31
	case classInt8:
		return 63
	case classUUID:
		return 122
	case classBytea:
		return 256
	case classText:
		if sh.length > 0 {
			return min(4*sh.length, 256) // hex digits
		}
		return 256
	case classNumeric:
		if sh.intDigits == 0 {
			return 256
		}
		return int(float64(sh.intDigits) * 3.32)
	}
	return 0
}

// emailTail follows the hex of a fake email; emailMinHex is the fewest hex digits
// a column too short for the whole hash still gets.
const (
	emailTail   = "@example.invalid"
	emailHex    = 12
	emailMinHex = 4
)

// column is one masked column, resolved.
type column struct {
	rule  Rule
	name  string
	typ   string // the column's type, as format_type writes it (what values are cast to)
	shape typeShape
	fixed string // MaskFixed: the value's text as the type writes it
	// emailHex is how many hex digits a fake email gets.
	emailHex int
}

// Table is a Set resolved against one table: what each masked column becomes.
type Table struct {
	table   string
	key     Key
	columns map[string]*column
	names   []string // masked columns, in the table's column order
}

// Querier is what resolving needs of the database (the fixed values' check).
type Querier = catalog.Querier

// Check resolves s against sch without a key: the rules' types are checked (and
// fixed values by the database), nothing is kept.
func (s Set) Check(ctx context.Context, q Querier, sch *catalog.Schema) error {
	_, err := s.Resolve(ctx, q, sch, Key{})
	return err
}

// Resolve checks the rules that apply to sch's table (Set.For, by the name the
// sender lists it as) against its columns and returns what each masked column
// becomes, or a *RuleError. A rule naming the table must name a column of it; a
// "*" rule applies to the tables that have the column. Generated columns are never
// sent (the receiver computes them), so rules on them do nothing. A primary-key
// column may only be hashed: the masked key is the key the receiver holds, pages
// by and resumes after (docs/masking.md). Fixed values are checked by the
// database itself ($1::type), never pasted. nil when no rule applies.
func (s Set) Resolve(ctx context.Context, q Querier, sch *catalog.Schema, key Key) (*Table, error) {
	name := catalog.IdentOf(sch).String()
	rules := s.For(name)
	if len(rules) == 0 {
		return nil, nil
	}
	t := &Table{table: name, key: key, columns: map[string]*column{}}
	cols := map[string]catalog.Column{}
	for _, c := range sch.Columns {
		cols[c.Name] = c
	}
	for _, r := range sortedRules(rules) {
		c, ok := cols[r.Column]
		if !ok {
			if r.Table == AnyTable {
				continue
			}
			return nil, &RuleError{Table: name, Column: r.Column, Rule: Format(r), Reason: fmt.Sprintf("table %s has no column %q", name, r.Column)}
		}
		if c.Generated != "" {
			continue
		}
		r.Table = name
		col, err := resolveColumn(ctx, q, name, c, r)
		if err != nil {
			return nil, err
		}
		t.columns[c.Name] = col
	}
	for _, c := range sch.Columns {
		if _, ok := t.columns[c.Name]; ok {
			t.names = append(t.names, c.Name)
		}
	}
	if len(t.names) == 0 {
		return nil, nil
	}
	return t, nil
}

// sortedRules returns the rules of a map by column, so errors come in one order.
func sortedRules(m map[string]Rule) []Rule {
	out := make([]Rule, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Column < out[j].Column })
	return out
}

// resolveColumn checks rule r against column c of table.
func resolveColumn(ctx context.Context, q Querier, table string, c catalog.Column, r Rule) (*column, error) {
	col := &column{rule: r, name: c.Name, typ: c.Type, shape: shapeOf(c)}
	refuse := func(reason string) error {
		return &RuleError{Table: table, Column: c.Name, Type: c.Type, Rule: Format(r), Reason: reason}
	}
	if err := validRule(r); err != nil {
		return nil, refuse(err.Error())
	}
	if c.PrimaryKey && r.Kind != syncapi.MaskHash {
		return nil, refuse("a primary-key column may only be hashed (the receiver keys its rows by it)")
	}
	sh := col.shape
	switch r.Kind {
	case syncapi.MaskNull:
		if !c.Nullable {
			return nil, refuse("the column is NOT NULL: null cannot replace its values (use fixed or hash)")
		}
	case syncapi.MaskFixed:
		if q == nil {
			return nil, refuse("fixed values are checked by the database, which is not at hand")
		}
		// The database parses the value as the type (a domain's checks included)
		// and writes it as COPY would; the value is a parameter, the type the
		// catalog's own.
		if err := q.QueryRow(ctx, `SELECT format('%s', $1::text::`+c.Type+`)`, r.Value).Scan(&col.fixed); err != nil {
			return nil, refuse(fmt.Sprintf("%q is not a valid %s: %v", r.Value, c.Type, err))
		}
	case syncapi.MaskHash:
		switch {
		case sh.array:
			return nil, refuse("arrays cannot be hashed (use null or fixed)")
		case sh.class == classOther:
			return nil, refuse("hash works on text, varchar, char, integer types, numeric, uuid and bytea")
		case sh.class == classNumeric && sh.length == -1 && sh.intDigits == 0:
			return nil, refuse("a numeric without digits before the point cannot hold a hash")
		case c.PrimaryKey && hashBits(sh) < minKeyHashBits:
			// Two keys hashed alike would become one row on the receiver, and a
			// stream ordered by the hashed key could not resume inside the tie.
			return nil, refuse(fmt.Sprintf("a hashed primary key needs a type that holds at least %d bits of the hash (bigint, uuid, bytea, text, varchar(16) or longer, numeric with 19 digits before the point): this one holds %d, so distinct keys would collide",
				minKeyHashBits, hashBits(sh)))
		}
	case syncapi.MaskFake:
		if sh.class != classText || sh.array {
			return nil, refuse("fake values are text: fake works on text, varchar, char and citext columns")
		}
		if r.Format == syncapi.FakeEmail {
			col.emailHex = emailHex
			if sh.length > 0 {
				col.emailHex = min(emailHex, sh.length-1-len(emailTail))
				if col.emailHex < emailMinHex {
					return nil, refuse(fmt.Sprintf("a fake email needs at least %d characters", 1+emailMinHex+len(emailTail)))
				}
			}
		}
	}
	return col, nil
}

// Table returns the table the rules were resolved for, as the sender lists it.
func (t *Table) Table() string { return t.table }

// Columns returns the masked columns, in the table's order.
func (t *Table) Columns() []string { return append([]string(nil), t.names...) }

// Masked reports whether column is masked.
func (t *Table) Masked(column string) bool {
	if t == nil {
		return false
	}
	_, ok := t.columns[column]
	return ok
}

// Rules returns the rules applied, each naming the table (a "*" rule is written
// for it), in the table's column order.
func (t *Table) Rules() Set {
	if t == nil {
		return nil
	}
	out := make(Set, len(t.names))
	for i, n := range t.names {
		out[i] = t.columns[n].rule
	}
	return out
}

// hexBytes is a bytea literal made from bytes: hex digits in a string, decoded by
// the database — no user text, no backslash, whatever standard_conforming_strings.
func hexBytes(b []byte) string { return "decode('" + hex.EncodeToString(b) + "', 'hex')" }

// hmacSQL is the HMAC-SHA-256 (bytea) of the UTF-8 bytes of the text expression
// msg under the key, with built-in functions only. The key's pads are read from
// the transaction's settings (UseKey), never written into the statement: its text
// shows in pg_stat_activity and in slow-statement logs.
func (t *Table) hmacSQL(msg string) string {
	return "sha256(decode(current_setting('" + opadSetting + "'), 'hex') || sha256(decode(current_setting('" + ipadSetting +
		"'), 'hex') || convert_to(" + msg + ", 'UTF8')))"
}

// The settings that hold the key's pads for hmacSQL, in hex.
const (
	ipadSetting = "fiberkit.mask_ipad"
	opadSetting = "fiberkit.mask_opad"
)

// Execer runs a statement: a transaction or a connection (UseKey).
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// UseKey gives the transaction q is in the key that t's hash and fake expressions
// read (as settings local to it, passed as parameters): run it in every
// transaction that evaluates Expr, before it does. A nil t needs none.
func (t *Table) UseKey(ctx context.Context, q Execer) error {
	if t == nil {
		return nil
	}
	ipad, opad := t.key.pads()
	if _, err := q.Exec(ctx, `SELECT set_config('`+ipadSetting+`', $1, true), set_config('`+opadSetting+`', $2, true)`,
		hex.EncodeToString(ipad), hex.EncodeToString(opad)); err != nil {
		return fmt.Errorf("masks of %s: set the key: %w", t.table, err)
	}
	return nil
}

// hexSQL is the first n hex digits of a hash h (bytea).
func hexSQL(h string, n int) string { return fmt.Sprintf("left(encode(%s, 'hex'), %d)", h, n) }

// intSQL is the non-negative integer of bits bits a hash h's first bytes give.
func intSQL(h string, bits int) string {
	switch bits {
	case 16:
		return "((('x' || " + hexSQL(h, 4) + ")::bit(16)::int4 & 32767)::int2)"
	case 32:
		return "((('x' || " + hexSQL(h, 8) + ")::bit(32) & x'7fffffff')::int4)"
	}
	return "((('x' || " + hexSQL(h, 16) + ")::bit(64) & x'7fffffffffffffff')::int8)"
}

// Expr returns the SQL expression that replaces column (referenced in SQL as ref,
// e.g. src."email") in a read, and whether the column is masked. The expression
// has the column's own type; a NULL stays NULL for every kind. Key material
// appears in it as hex literals, column names and types as the catalog quotes
// them: nothing a user wrote is pasted.
func (t *Table) Expr(column, ref string) (string, bool) {
	if t == nil {
		return "", false
	}
	c, ok := t.columns[column]
	if !ok {
		return "", false
	}
	cast := func(e string) string { return "(" + e + ")::" + c.typ }
	msg := ref + "::text" // a char(n)'s text drops its trailing blanks, as textOf does
	switch c.rule.Kind {
	case syncapi.MaskNull:
		return "NULL::" + c.typ, true
	case syncapi.MaskFixed:
		return "CASE WHEN " + ref + " IS NULL THEN NULL ELSE " + cast("convert_from("+hexBytes([]byte(c.fixed))+", 'UTF8')") + " END", true
	case syncapi.MaskHash:
		h := t.hmacSQL(msg)
		switch c.shape.class {
		case classText:
			n := 64
			if c.shape.length > 0 {
				n = min(n, c.shape.length)
			}
			return cast(hexSQL(h, n)), true
		case classInt2:
			return cast(intSQL(h, 16)), true
		case classInt4:
			return cast(intSQL(h, 32)), true
		case classInt8:
			return cast(intSQL(h, 64)), true
		case classNumeric:
			v := intSQL(h, 64)
			if c.shape.intDigits > 0 && c.shape.intDigits < 19 {
				v = fmt.Sprintf("(%s %% %s::int8)", v, pow10(c.shape.intDigits))
			}
			return cast(v + "::numeric"), true
		case classUUID:
			return cast(hexSQL(h, 32) + "::uuid"), true
		case classBytea:
			return cast(h), true
		}
	case syncapi.MaskFake:
		h := t.hmacSQL(msg)
		switch c.rule.Format {
		case syncapi.FakeEmail:
			return cast("'u' || " + hexSQL(h, c.emailHex) + " || '" + emailTail + "'"), true
		case syncapi.FakeName:
			name := "(SELECT " + namesSQL(firstNames()) + "[get_byte(k.h, 0) % " + strconv.Itoa(len(firstNames())) + " + 1] || ' ' || " +
				namesSQL(lastNames()) + "[get_byte(k.h, 1) % " + strconv.Itoa(len(lastNames())) + " + 1] FROM (SELECT " + h + " AS h) AS k)"
			if c.shape.length > 0 {
				name = fmt.Sprintf("left(%s, %d)", name, c.shape.length)
			}
			return cast(name), true
		case syncapi.FakePhone:
			// Each ASCII digit becomes a digit of the hash (the i-th character's from
			// its i-th byte, cycling), everything else stays: the shape is kept.
			phone := "(SELECT array_to_string(ARRAY(SELECT CASE WHEN p.ch ~ '^[0-9]$' THEN (get_byte(k.h, ((p.i - 1) % 32)::int4) % 10)::text ELSE p.ch END" +
				" FROM regexp_split_to_table(k.v, '') WITH ORDINALITY AS p(ch, i) ORDER BY p.i), '')" +
				" FROM (SELECT v.v, " + t.hmacSQL("v.v") + " AS h FROM (SELECT " + msg + " AS v) AS v) AS k)"
			return "CASE WHEN " + ref + " IS NULL THEN NULL ELSE " + cast(phone) + " END", true
		}
	}
	return "", false
}

// pow10 writes 10^n.
func pow10(n int) string { return "1" + strings.Repeat("0", n) }

// namesSQL writes a list of names (ours: ASCII letters) as a text[] literal.
func namesSQL(names []string) string {
	return "(ARRAY['" + strings.Join(names, "', '") + "'])"
}

// The names fake names are made of (first, last; 32 each), picked by the hash's
// first two bytes. Never change them: fakes must stay the same from one release to
// the next.
const (
	firstNameList = "Alex Blake Casey Dana Eli Frankie Gray Harper Indy Jordan Kai Lee Morgan Noa Oakley Parker " +
		"Quinn Riley Sam Taylor Uma Val Wren Xen Yael Zion Ari Bo Cam Drew Emery Finley"
	lastNameList = "Adams Baker Clark Davis Evans Fisher Garcia Hughes Irwin Jones King Lopez Miller Nguyen Owens Patel " +
		"Quinn Reed Smith Turner Upton Vega Walker Xu Young Zhang Allen Brooks Cole Diaz Ellis Ford"
)

// firstNames and lastNames split the lists.
func firstNames() []string { return strings.Fields(firstNameList) }
func lastNames() []string  { return strings.Fields(lastNameList) }

// ErrNoDefault is matched (errors.Is) by the error of a secret column the
// defaults cannot mask (a NOT NULL column of a type without a placeholder).
var ErrNoDefault = errors.New("no default mask for this column's type: add a rule for it, or turn mask_secret_columns off")
