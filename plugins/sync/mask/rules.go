// Package mask decides what a masked column's value becomes before it leaves the
// sending database: NULL, a fixed value, a keyed hash (HMAC-SHA-256, deterministic,
// so joins on hashed keys still match) or a format-preserving fake (email, name,
// phone) derived from that hash.
//
// A Set of rules (syncapi.MaskRule) is resolved against a table's definition
// (Resolve): each rule is checked against its column's type and becomes the SQL
// expression the exporter reads in place of the column, so unmasked values never
// leave the database. The same masking is done in Go on text values
// (Table.ApplyText), byte for byte what the SQL sends, for changes that are not
// read through the exporter.
//
// Rules have a text form, one per line or comma: "users.email: fake email",
// "*.password_hash: null", "orders.customer_id: hash", "users.note: fixed redacted"
// (Parse, Set.String). See docs/masking.md.
package mask

import (
	"errors"
	"fmt"
	"strings"

	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// Rule is one column's mask (syncapi.MaskRule).
type Rule = syncapi.MaskRule

// Set is a list of rules. Within a Set a rule naming its table beats a "*" rule
// for the same column; Merge layers sets.
type Set []Rule

// AnyTable is the Table of a rule that applies to every table with the column.
const AnyTable = "*"

// Validate checks the rules' shape (not their columns' types: see Check and
// Resolve): table and column named, a known kind with the arguments it takes,
// each column ruled once.
func (s Set) Validate() error {
	seen := map[[2]string]bool{}
	for _, r := range s {
		if err := validRule(r); err != nil {
			return err
		}
		k := [2]string{r.Table, r.Column}
		if seen[k] {
			return fmt.Errorf("mask rules: %s.%s has two rules", r.Table, r.Column)
		}
		seen[k] = true
	}
	return nil
}

// validRule checks one rule's shape.
func validRule(r Rule) error {
	switch {
	case strings.TrimSpace(r.Table) == "" || strings.TrimSpace(r.Column) == "":
		return fmt.Errorf("mask rule %q: a table (or *) and a column are required", Format(r))
	case r.Table != AnyTable && strings.Contains(r.Table, "*"):
		return fmt.Errorf("mask rule %q: * stands alone for every table", Format(r))
	}
	switch r.Kind {
	case syncapi.MaskNull, syncapi.MaskHash:
		if r.Value != "" || r.Format != "" {
			return fmt.Errorf("mask rule %q: %s takes no value", Format(r), r.Kind)
		}
	case syncapi.MaskFixed:
		if r.Format != "" {
			return fmt.Errorf("mask rule %q: fixed takes a value, not a format", Format(r))
		}
		if strings.IndexByte(r.Value, 0) >= 0 {
			return fmt.Errorf("mask rule %s.%s: a fixed value cannot hold a NUL byte", r.Table, r.Column)
		}
	case syncapi.MaskFake:
		if r.Value != "" {
			return fmt.Errorf("mask rule %q: fake takes a format, not a value", Format(r))
		}
		switch r.Format {
		case syncapi.FakeEmail, syncapi.FakeName, syncapi.FakePhone:
		default:
			return fmt.Errorf("mask rule %s.%s: fake %q: want fake email, fake name or fake phone", r.Table, r.Column, r.Format)
		}
	default:
		return fmt.Errorf("mask rule %s.%s: unknown kind %q (want null, fixed, hash or fake)", r.Table, r.Column, r.Kind)
	}
	return nil
}

// Merge returns base with over laid on top: a rule of over replaces base's rules
// for its column (a "*" rule of over replaces base's rules for that column in
// every table), so a connection's rule wins over a site default for its column.
func Merge(base, over Set) Set {
	out := Set{}
	for _, b := range base {
		shadowed := false
		for _, o := range over {
			if o.Column == b.Column && (o.Table == b.Table || o.Table == AnyTable) {
				shadowed = true
				break
			}
		}
		if !shadowed {
			out = append(out, b)
		}
	}
	return append(out, over...)
}

// For returns the rules that apply to table (as the sender lists it: "users",
// "audit.events"), by column: a rule naming the table beats a "*" rule.
func (s Set) For(table string) map[string]Rule {
	out := map[string]Rule{}
	for _, r := range s {
		if r.Table == AnyTable {
			if _, ok := out[r.Column]; !ok {
				out[r.Column] = r
			}
		}
	}
	for _, r := range s {
		if r.Table == table {
			out[r.Column] = r
		}
	}
	return out
}

// Parse reads rules in their text form, one per line or comma:
//
//	users.email: fake email
//	*.password_hash: null
//	orders.customer_id: hash
//	users.note: fixed redacted
//	users.motto: fixed 'a value, with a comma'
//
// The table part may be "*" (every table) or hold a dot ("audit.events": the
// column is after the last dot); a name with a dot, colon, comma, quote or space
// is written in double quotes ("my table"."my col"). A fixed value runs to the end
// of its line or comma, trimmed; in single quotes (” for a quote) it may hold
// anything, commas and spaces included. Blank entries and lines starting with #
// are skipped. The rules' shape is validated (Set.Validate).
func Parse(text string) (Set, error) {
	var s Set
	p := parser{in: text}
	for {
		p.skipSpace()
		if p.done() {
			break
		}
		switch p.peek() {
		case ',', '\n':
			p.pos++
			continue
		case '#':
			for !p.done() && p.peek() != '\n' {
				p.pos++
			}
			continue
		}
		r, err := p.rule()
		if err != nil {
			return nil, fmt.Errorf("mask rules: %w", err)
		}
		s = append(s, r)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// parser reads the text form.
type parser struct {
	in  string
	pos int
}

func (p *parser) done() bool { return p.pos >= len(p.in) }
func (p *parser) peek() byte { return p.in[p.pos] }

// skipSpace skips spaces and tabs (and \r), not newlines.
func (p *parser) skipSpace() {
	for !p.done() && (p.peek() == ' ' || p.peek() == '\t' || p.peek() == '\r') {
		p.pos++
	}
}

// errAt describes a syntax error at the current position.
func (p *parser) errAt(what string) error {
	rest := p.in[p.pos:]
	if i := strings.IndexAny(rest, ",\n"); i >= 0 {
		rest = rest[:i]
	}
	return fmt.Errorf("%s at %q", what, rest)
}

// name reads a bare or double-quoted name part; stop holds the bytes that end a
// bare part.
func (p *parser) name(stop string) (string, error) {
	if !p.done() && p.peek() == '"' {
		p.pos++
		var b strings.Builder
		for {
			if p.done() {
				return "", errors.New("an unterminated \"name\"")
			}
			c := p.peek()
			p.pos++
			if c == '"' {
				if !p.done() && p.peek() == '"' {
					b.WriteByte('"')
					p.pos++
					continue
				}
				return b.String(), nil
			}
			b.WriteByte(c)
		}
	}
	start := p.pos
	for !p.done() && !strings.ContainsRune(stop, rune(p.peek())) {
		p.pos++
	}
	return strings.TrimSpace(p.in[start:p.pos]), nil
}

// rule reads "table.column: kind [argument]".
func (p *parser) rule() (Rule, error) {
	var parts []string
	for {
		part, err := p.name(".:,\n\"")
		if err != nil {
			return Rule{}, err
		}
		parts = append(parts, part)
		if p.done() || p.peek() != '.' {
			break
		}
		p.pos++
	}
	p.skipSpace()
	if p.done() || p.peek() != ':' {
		return Rule{}, p.errAt("want table.column: kind")
	}
	p.pos++
	if len(parts) < 2 {
		return Rule{}, p.errAt("want table.column (or *.column) before the colon")
	}
	r := Rule{Table: strings.Join(parts[:len(parts)-1], "."), Column: parts[len(parts)-1]}
	p.skipSpace()
	kind := p.word()
	switch kind {
	case syncapi.MaskNull, syncapi.MaskHash:
		r.Kind = kind
	case syncapi.MaskFake:
		r.Kind = kind
		p.skipSpace()
		r.Format = p.word()
	case syncapi.MaskFixed:
		r.Kind = kind
		p.skipSpace()
		v, err := p.value()
		if err != nil {
			return Rule{}, err
		}
		r.Value = v
	default:
		return Rule{}, fmt.Errorf("%s.%s: unknown kind %q (want null, fixed, hash or fake)", r.Table, r.Column, kind)
	}
	p.skipSpace()
	if !p.done() && p.peek() != ',' && p.peek() != '\n' {
		return Rule{}, p.errAt(fmt.Sprintf("%s.%s: unexpected text after the rule", r.Table, r.Column))
	}
	return r, nil
}

// word reads a run of letters.
func (p *parser) word() string {
	start := p.pos
	for !p.done() && (p.peek() >= 'a' && p.peek() <= 'z' || p.peek() >= 'A' && p.peek() <= 'Z') {
		p.pos++
	}
	return strings.ToLower(p.in[start:p.pos])
}

// value reads a fixed value: single-quoted, or bare to the end of the entry.
func (p *parser) value() (string, error) {
	if !p.done() && p.peek() == '\'' {
		p.pos++
		var b strings.Builder
		for {
			if p.done() {
				return "", errors.New("an unterminated 'value'")
			}
			c := p.peek()
			p.pos++
			if c == '\'' {
				if !p.done() && p.peek() == '\'' {
					b.WriteByte('\'')
					p.pos++
					continue
				}
				return b.String(), nil
			}
			b.WriteByte(c)
		}
	}
	start := p.pos
	for !p.done() && p.peek() != ',' && p.peek() != '\n' {
		p.pos++
	}
	return strings.TrimSpace(p.in[start:p.pos]), nil
}

// bareName reports whether a name part can be written without quotes.
func bareName(n string, dots bool) bool {
	if n == "" || strings.TrimSpace(n) != n {
		return false
	}
	bad := ":,\"\n\r\t#'"
	if !dots {
		bad += "."
	}
	return !strings.ContainsAny(n, bad)
}

// quoteName writes a name part, double-quoted when it must be.
func quoteName(n string, dots bool) string {
	if bareName(n, dots) {
		return n
	}
	return `"` + strings.ReplaceAll(n, `"`, `""`) + `"`
}

// Format writes one rule in the text form Parse reads.
func Format(r Rule) string {
	var b strings.Builder
	b.WriteString(quoteName(r.Table, true))
	b.WriteByte('.')
	b.WriteString(quoteName(r.Column, false))
	b.WriteString(": ")
	b.WriteString(r.Kind)
	switch r.Kind {
	case syncapi.MaskFake:
		b.WriteString(" " + r.Format)
	case syncapi.MaskFixed:
		v := r.Value
		if v == "" || strings.TrimSpace(v) != v || strings.ContainsAny(v, ",\n\r") || v[0] == '\'' {
			v = "'" + strings.ReplaceAll(v, "'", "''") + "'"
		}
		b.WriteString(" " + v)
	}
	return b.String()
}

// Strings returns each rule in text form (what the history records).
func (s Set) Strings() []string {
	out := make([]string, len(s))
	for i, r := range s {
		out[i] = Format(r)
	}
	return out
}

// String writes the rules in the text form Parse reads, one per line.
func (s Set) String() string { return strings.Join(s.Strings(), "\n") }
