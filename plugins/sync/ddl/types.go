package ddl

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
)

func quoteIdent(s string) string { return pgx.Identifier{s}.Sanitize() }

// keywordTypes are the built-in types whose names are SQL keywords (they cannot be
// written as quoted identifiers), in the spelling format_type prints, longest first.
var keywordTypes = [][]string{
	{"double", "precision"}, {"character", "varying"}, {"char", "varying"}, {"bit", "varying"},
	{"timestamp"}, {"time"}, {"interval"},
	{"smallint"}, {"integer"}, {"int"}, {"bigint"}, {"real"}, {"float"}, {"boolean"},
	{"numeric"}, {"decimal"}, {"dec"}, {"character"}, {"char"}, {"varchar"}, {"bit"},
}

// intervalFields are the words of an interval's field restriction.
var intervalFields = map[string]bool{"year": true, "month": true, "day": true, "hour": true, "minute": true, "second": true}

var modPattern = regexp.MustCompile(`^-?[0-9]{1,6}$`)

// typeRef is a type name as parsed from a peer's definition.
type typeRef struct {
	schema, name string // name is the keyword spelling when keyword is set
	keyword      bool
	mods         []string
	suffix       string // "with time zone", interval fields
	dims         int
}

// sql writes the type: identifiers quoted, keywords as such.
func (t typeRef) sql() string {
	var b strings.Builder
	switch {
	case t.keyword:
		b.WriteString(t.name)
	case t.schema != "":
		b.WriteString(pgx.Identifier{t.schema, t.name}.Sanitize())
	default:
		b.WriteString(quoteIdent(t.name))
	}
	mods := ""
	if len(t.mods) > 0 {
		mods = "(" + strings.Join(t.mods, ",") + ")"
	}
	if t.name == "interval" && t.keyword && t.suffix != "" {
		// interval day to second(3): the precision follows the fields.
		b.WriteString(" " + t.suffix + mods)
	} else {
		b.WriteString(mods)
		if t.suffix != "" {
			b.WriteString(" " + t.suffix)
		}
	}
	b.WriteString(strings.Repeat("[]", t.dims))
	return b.String()
}

// word returns the next token's lowercase text when it is an unquoted word.
func (p *parser) word(i int) string {
	if p.pos+i >= len(p.toks) || p.toks[p.pos+i].kind != tIdent {
		return ""
	}
	return strings.ToLower(p.toks[p.pos+i].text)
}

// parseTypeRef reads a type name: a SQL keyword type, or a name (maybe
// schema-qualified); then modifiers, time zone or interval fields, array brackets.
func (p *parser) parseTypeRef() (typeRef, error) {
	var t typeRef
	for _, kw := range keywordTypes {
		match := true
		for i, w := range kw {
			if p.word(i) != w {
				match = false
				break
			}
		}
		if match {
			p.pos += len(kw)
			t.keyword, t.name = true, strings.Join(kw, " ")
			break
		}
	}
	if !t.keyword {
		first := p.next()
		switch first.kind {
		case tIdent:
			t.name = strings.ToLower(first.text)
		case tQIdent:
			t.name = first.text
		default:
			return t, fmt.Errorf("expected a type name, found %q", first.text)
		}
		if p.accept(".") {
			second := p.next()
			switch second.kind {
			case tIdent:
				t.schema, t.name = t.name, strings.ToLower(second.text)
			case tQIdent:
				t.schema, t.name = t.name, second.text
			default:
				return t, fmt.Errorf("expected a type name, found %q", second.text)
			}
		}
	}
	if t.keyword && t.name == "interval" && intervalFields[p.word(0)] {
		fields := []string{p.word(0)}
		p.next()
		if p.word(0) == "to" && intervalFields[p.word(1)] {
			fields = append(fields, "to", p.word(1))
			p.pos += 2
		}
		t.suffix = strings.Join(fields, " ")
	}
	if p.accept("(") {
		for {
			m := ""
			if p.accept("-") {
				m = "-"
			}
			n := p.next()
			if n.kind != tNumber || !modPattern.MatchString(m+n.text) {
				return t, fmt.Errorf("type modifier %q is not an integer", n.text)
			}
			t.mods = append(t.mods, m+n.text)
			if len(t.mods) > 2 {
				return t, errors.New("too many type modifiers")
			}
			if p.accept(")") {
				break
			}
			if err := p.expect(","); err != nil {
				return t, err
			}
		}
	}
	if t.keyword && (t.name == "time" || t.name == "timestamp") {
		switch {
		case p.word(0) == "with" && p.word(1) == "time" && p.word(2) == "zone":
			t.suffix, p.pos = "with time zone", p.pos+3
		case p.word(0) == "without" && p.word(1) == "time" && p.word(2) == "zone":
			t.suffix, p.pos = "without time zone", p.pos+3
		}
	}
	for p.accept("[") {
		if err := p.expect("]"); err != nil {
			return t, err
		}
		t.dims++
		if t.dims > 6 {
			return t, errors.New("too many array dimensions")
		}
	}
	return t, nil
}

// typeChecker turns a peer's type names into safe SQL, and checks they name a type
// here: a built-in one, one the definition creates (its enums and domains), or one
// already present on this site (an extension's type).
type typeChecker struct {
	ctx context.Context
	q   Exec
	// own are the enums and domains of the definition, by name.
	own map[string][]catalog.Ident
	// kinds caches the typtype of each type found, so an expression casting a
	// thousand times asks the catalog once per type. (A type not found is asked
	// again: the definition may create it in the meantime.)
	kinds map[string]string
}

func newTypeChecker(ctx context.Context, q Exec, sch *catalog.Schema) *typeChecker {
	tc := &typeChecker{ctx: ctx, q: q, own: map[string][]catalog.Ident{}, kinds: map[string]string{}}
	for _, e := range sch.Enums {
		tc.own[e.Name] = append(tc.own[e.Name], catalog.Ident{Schema: e.Schema, Name: e.Name})
	}
	for _, d := range sch.Domains {
		tc.own[d.Name] = append(tc.own[d.Name], catalog.Ident{Schema: d.Schema, Name: d.Name})
	}
	return tc
}

// qualify names an unqualified type the definition creates with its schema
// (format_type leaves off the schema of types on the sender's search path).
func (tc *typeChecker) qualify(t typeRef) typeRef {
	if t.keyword || t.schema != "" {
		return t
	}
	own := tc.own[t.name]
	for _, id := range own {
		if id.Schema == "public" {
			t.schema = id.Schema
			return t
		}
	}
	if len(own) > 0 {
		t.schema = own[0].Schema
	}
	return t
}

// parse reads a type at the parser's position and returns its safe SQL, checked
// against the local catalog.
func (tc *typeChecker) parse(p *parser) (string, error) {
	t, err := p.parseTypeRef()
	if err != nil {
		return "", err
	}
	t = tc.qualify(t)
	sql := t.sql()
	kind, ok := tc.kinds[sql]
	if !ok {
		var k *string
		if err := tc.q.QueryRow(tc.ctx, "SELECT typtype::text FROM pg_type WHERE oid = to_regtype($1)", sql).Scan(&k); err != nil {
			return "", fmt.Errorf("type %s: %w", sql, err)
		}
		if k != nil {
			kind = *k
			tc.kinds[sql] = kind
		}
	}
	switch kind {
	case "":
		return "", fmt.Errorf("type %s does not exist here", sql)
	case "b", "e", "d", "r", "m": // base, enum, domain, range, multirange
		return sql, nil
	}
	return "", fmt.Errorf("type %s cannot be a column type", sql)
}

// typeSQL checks a whole type name (a column's or a domain's base type).
func (tc *typeChecker) typeSQL(typ string) (string, error) {
	toks, err := tokenize(typ)
	if err != nil {
		return "", fmt.Errorf("type %q: %w", typ, err)
	}
	p := &parser{toks: toks}
	sql, err := tc.parse(p)
	if err != nil {
		return "", fmt.Errorf("type %q: %w", typ, err)
	}
	if p.peek().kind != tEOF {
		return "", fmt.Errorf("type %q is not a type name", typ)
	}
	return sql, nil
}

// expr rewrites a peer's expression under rules, or says why it cannot.
func (tc *typeChecker) expr(text string, rules exprRules) (string, error) {
	toks, err := tokenize(text)
	if err != nil {
		return "", err
	}
	p := &parser{toks: toks, rules: rules, typ: tc.parse}
	return p.parseExpr()
}

// check rewrites a domain constraint as pg_get_constraintdef prints it,
// "CHECK (expr)" (maybe followed by NOT VALID), returning the parenthesized expression.
func (tc *typeChecker) check(text string) (string, error) {
	toks, err := tokenize(text)
	if err != nil {
		return "", err
	}
	p := &parser{toks: toks, rules: checkRules(), typ: tc.parse}
	if err := p.expect("CHECK"); err != nil {
		return "", err
	}
	if !p.is("(") {
		return "", fmt.Errorf("expected \"(\", found %q", p.peek().text)
	}
	expr, err := p.primary()
	if err != nil {
		return "", err
	}
	if p.written > maxExprSQL {
		return "", ErrExprTooLong
	}
	if p.accept("NOT") {
		if err := p.expect("VALID"); err != nil {
			return "", err
		}
	}
	if p.peek().kind != tEOF {
		return "", fmt.Errorf("unexpected %q", p.peek().text)
	}
	return expr, nil
}
