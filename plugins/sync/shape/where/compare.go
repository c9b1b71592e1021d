package where

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// CanonicalValue returns the canonical text of a value of c's type, so that a row's
// value and an Equality's Value compare with ==: integer "007" → "7", uuid in lower
// case, boolean "t"/"true"/"yes" → "t", numeric "1.50" → "1.5", real/double "-0" →
// "0", character(n) without trailing spaces, date "2024-01-02", timestamp
// "2024-01-02T03:04:05.5", timestamptz as UTC RFC 3339 ("2024-01-02T03:04:05.5Z"; a
// value without a zone is read as UTC), time "03:04:05.5". Types without a canonical
// form (text, and types this package does not compare) return the text itself.
func CanonicalValue(c Column, text string) (string, error) {
	t := parseColumnType(c.Type)
	if t.kind == kOpaque {
		return text, nil
	}
	return canonicalOf(t, text, time.UTC)
}

// canonicalOf parses text as a value of t and writes its canonical text.
func canonicalOf(t sqlType, text string, loc *time.Location) (string, error) {
	switch t.kind {
	case kInt:
		v, err := parseInt(text, t.bits)
		return strconv.FormatInt(v, 10), err
	case kNumeric:
		d, err := parseNumeric(text)
		return d.String(), err
	case kFloat:
		f, err := parseFloat(text, t.bits)
		return formatFloat(f, t.bits), err
	case kText:
		if t.bpchar {
			return trimBlanks(text), nil
		}
		return text, nil
	case kBool:
		b, err := parseBool(text)
		if b {
			return "t", err
		}
		return "f", err
	case kUUID:
		return parseUUID(text)
	case kDate:
		d, err := parseDateTime(text, kDate, loc)
		return formatDate(d), err
	case kTimestamp, kTimestamptz:
		us, err := parseDateTime(text, t.kind, loc)
		return formatTimestamp(roundMicros(us, t.prec), t.kind == kTimestamptz), err
	case kTime:
		us, err := parseTime(text)
		return formatClock(roundMicros(us, t.prec)), err
	}
	return text, nil
}

// ops is how one representation is read, compared and written.
type ops[V any] struct {
	conv func(t sqlType) func(string) (V, bool) // reader of t's text into V
	cmp  func(a, b V) int
	show func(t sqlType, v V) string // a constant of type t, canonically
}

func int64Ops(k kind, loc *time.Location) ops[int64] {
	o := ops[int64]{cmp: cmp.Compare[int64]}
	o.conv = func(t sqlType) func(string) (int64, bool) {
		switch k {
		case kInt:
			return func(s string) (int64, bool) {
				v, err := parseInt(s, 64)
				return v, err == nil
			}
		case kBool:
			return func(s string) (int64, bool) {
				b, err := parseBool(s)
				return b2i(b), err == nil
			}
		case kTime:
			return func(s string) (int64, bool) {
				v, err := parseTime(s)
				return v, err == nil
			}
		}
		return func(s string) (int64, bool) {
			v, err := parseDateTime(s, k, loc)
			return v, err == nil
		}
	}
	o.show = func(t sqlType, v int64) string {
		switch k {
		case kInt:
			return strconv.FormatInt(v, 10)
		case kBool:
			return strconv.FormatBool(v == 1)
		case kDate:
			return quoteLiteral(formatDate(v)) + "::date"
		case kTimestamp:
			return quoteLiteral(formatTimestamp(v, false)) + "::timestamp"
		case kTimestamptz:
			return quoteLiteral(formatTimestamp(v, true)) + "::timestamptz"
		}
		return quoteLiteral(formatClock(v)) + "::time"
	}
	return o
}

var numericOps = ops[decimal]{
	conv: func(sqlType) func(string) (decimal, bool) {
		return func(s string) (decimal, bool) {
			d, err := parseNumeric(s)
			return d, err == nil
		}
	},
	cmp:  cmpDecimal,
	show: func(_ sqlType, d decimal) string { return quoteLiteral(d.String()) + "::numeric" },
}

var floatOps = ops[float64]{
	conv: func(t sqlType) func(string) (float64, bool) {
		bits := 64
		if t.kind == kFloat {
			bits = t.bits
		}
		return func(s string) (float64, bool) {
			f, err := parseFloat(s, bits)
			return f, err == nil
		}
	},
	cmp: cmpFloat,
	show: func(t sqlType, f float64) string {
		if t.kind == kFloat && t.bits == 32 {
			return quoteLiteral(formatFloat(f, 32)) + "::real"
		}
		return quoteLiteral(formatFloat(f, 64)) + "::double precision"
	},
}

var textOps = ops[string]{
	conv: func(t sqlType) func(string) (string, bool) {
		if t.bpchar {
			return func(s string) (string, bool) { return trimBlanks(s), true }
		}
		return func(s string) (string, bool) { return s, true }
	},
	cmp: strings.Compare,
	show: func(t sqlType, s string) string {
		if t.bpchar {
			return quoteLiteral(s) + "::bpchar"
		}
		return quoteLiteral(s)
	},
}

var uuidOps = ops[string]{
	conv: func(sqlType) func(string) (string, bool) {
		return func(s string) (string, bool) {
			u, err := parseUUID(s)
			return u, err == nil
		}
	},
	cmp:  strings.Compare,
	show: func(_ sqlType, s string) string { return quoteLiteral(s) + "::uuid" },
}

// side is a term made into an operand of representation V, with its canonical text.
func side[V any](o ops[V], t term) (operand[V], string) {
	if t.null {
		return operand[V]{null: true}, "NULL"
	}
	if t.col != "" {
		return operand[V]{col: t.col, conv: o.conv(t.typ)}, quoteIdent(t.col)
	}
	v, _ := o.conv(t.typ)(t.text)
	return operand[V]{v: v}, o.show(t.typ, v)
}

func cmpNodeOf[V any](o ops[V], l, r term, op cmpOp) (node, string) {
	lo, lc := side(o, l)
	ro, rc := side(o, r)
	return &cmpNode[V]{l: lo, r: ro, op: op, cmp: o.cmp}, lc + " " + opText[op] + " " + rc
}

func distinctNodeOf[V any](o ops[V], l, r term, not bool) (node, string) {
	lo, lc := side(o, l)
	ro, rc := side(o, r)
	word := " IS DISTINCT FROM "
	if not {
		word = " IS NOT DISTINCT FROM "
	}
	return &distinctNode[V]{l: lo, r: ro, not: not, cmp: o.cmp}, lc + word + rc
}

func inNodeOf[V any](o ops[V], x term, list []term) (node, string) {
	xo, xc := side(o, x)
	n := &inNode[V]{x: xo, cmp: o.cmp}
	var texts []string
	for _, t := range list {
		if t.null {
			n.hasNull = true
			texts = append(texts, "NULL")
			continue
		}
		op, text := side(o, t)
		n.list = append(n.list, op.v)
		texts = append(texts, text)
	}
	slices.Sort(texts)
	texts = slices.Compact(texts)
	return n, xc + " IN (" + strings.Join(texts, ", ") + ")"
}

// builder makes nodes in one representation; ops[V] implements it for each V.
type builder interface {
	compare(l, r term, op cmpOp) (node, string)
	distinct(l, r term, not bool) (node, string)
	in(x term, list []term) (node, string)
}

func (o ops[V]) compare(l, r term, op cmpOp) (node, string) { return cmpNodeOf(o, l, r, op) }
func (o ops[V]) distinct(l, r term, not bool) (node, string) {
	return distinctNodeOf(o, l, r, not)
}
func (o ops[V]) in(x term, list []term) (node, string) { return inNodeOf(o, x, list) }

// opsFor returns the builder for values compared as kind k.
func (c *compiler) opsFor(k kind) builder {
	switch k {
	case kNumeric:
		return numericOps
	case kFloat:
		return floatOps
	case kText:
		return textOps
	case kUUID:
		return uuidOps
	}
	return int64Ops(k, c.opts.Location)
}

// compare compiles l op r.
func (c *compiler) compare(l, r term, op cmpOp, pos int) (compiled, error) {
	k, err := c.resolve(&l, &r, pos)
	if err != nil {
		return compiled{}, err
	}
	if k == kText {
		if err := c.checkOrdering(l, r, op, pos); err != nil {
			return compiled{}, err
		}
	}
	// Normal form: a column on the left; two columns in name order.
	if (l.col == "" && r.col != "") || (l.col != "" && r.col != "" && l.col > r.col) {
		l, r, op = r, l, op.flip()
	}
	if l.null || r.null {
		return compiled{n: constNode{tNull}, canon: "NULL"}, nil
	}
	if k == kBool && l.col != "" && r.col == "" && (op == opEq || op == opNe) {
		b, _ := parseBool(r.text)
		bc := compiled{n: &boolColNode{col: l.col}, canon: quoteIdent(l.col), eq: &Equality{l.col, "t"}}
		if b != (op == opEq) {
			return compiled{n: &notNode{bc.n}, canon: "NOT " + bc.canon, eq: &Equality{l.col, "f"}}, nil
		}
		return bc, nil
	}
	n, canon := c.opsFor(k).compare(l, r, op)
	res := compiled{n: n, canon: canon}
	if op == opEq && l.col != "" && r.col == "" && sameVariant(l.typ, r.typ) {
		if v, err := canonicalOf(l.typ, r.text, c.opts.Location); err == nil {
			res.eq = &Equality{Column: l.col, Value: v}
		}
	}
	return res, nil
}

// sameVariant reports whether a constant of type b compares with a column of type
// a exactly as a value of a's own type would (so canonical texts decide equality).
func sameVariant(a, b sqlType) bool {
	if a.kind != b.kind || a.bpchar != b.bpchar {
		return false
	}
	if a.kind == kFloat && a.bits != b.bits {
		return false
	}
	return true
}

func (c *compiler) distinct(l, r term, not bool, pos int) (compiled, error) {
	k, err := c.resolve(&l, &r, pos)
	if err != nil {
		return compiled{}, err
	}
	if (l.col == "" && r.col != "") || (l.col != "" && r.col != "" && l.col > r.col) {
		l, r = r, l
	}
	n, canon := c.opsFor(k).distinct(l, r, not)
	return compiled{n: n, canon: canon}, nil
}

func (c *compiler) in(a *pg.A_Expr, not bool, pos int) (compiled, error) {
	x, err := c.term(a.Lexpr)
	if err != nil {
		return compiled{}, err
	}
	items := a.Rexpr.GetList().GetItems()
	if len(items) == 0 {
		return compiled{}, errorf(pos, "IN needs a list of values")
	}
	var list []term
	for _, it := range items {
		t, err := c.term(it)
		if err != nil {
			return compiled{}, err
		}
		list = append(list, t)
	}
	var res compiled
	if len(list) == 1 {
		op := opEq
		if not {
			op = opNe
		}
		return c.compare(x, list[0], op, pos)
	}
	// x IN (constants) reads x once; anything else is x = a OR x = b OR …
	k := kind(255)
	simple := x.col != ""
	xt := x
	for i := range list {
		xi := x
		ki, err := c.resolve(&xi, &list[i], pos)
		if err != nil {
			return compiled{}, err
		}
		if list[i].col != "" || (k != 255 && ki != k) {
			simple = false
		}
		k, xt = ki, xi
	}
	if simple {
		n, canon := c.opsFor(k).in(xt, list)
		res = compiled{n: n, canon: canon}
	} else {
		var arms []compiled
		for _, t := range list {
			eq, err := c.compare(x, t, opEq, pos)
			if err != nil {
				return compiled{}, err
			}
			arms = append(arms, eq)
		}
		res = junction(arms, false)
	}
	if not {
		if strings.HasSuffix(res.canon, ")") && strings.Contains(res.canon, " IN (") && simple {
			res.canon = strings.Replace(res.canon, " IN (", " NOT IN (", 1)
		} else {
			res.canon = "NOT " + parens(res.canon)
		}
		res = compiled{n: &notNode{res.n}, canon: res.canon}
	}
	return res, nil
}

func (c *compiler) like(a *pg.A_Expr, name string, pos int) (compiled, error) {
	neg := strings.HasPrefix(name, "!")
	ci := strings.HasSuffix(name, "*")
	word := map[[2]bool]string{{false, false}: "LIKE", {true, false}: "NOT LIKE", {false, true}: "ILIKE", {true, true}: "NOT ILIKE"}[[2]bool{neg, ci}]
	if a.Rexpr.GetFuncCall() != nil {
		return compiled{}, errorf(pos, "LIKE ... ESCAPE is not supported in shape where clauses: use backslash to escape %% and _")
	}
	x, err := c.term(a.Lexpr)
	if err != nil {
		return compiled{}, err
	}
	p, err := c.term(a.Rexpr)
	if err != nil {
		return compiled{}, err
	}
	if p.col != "" {
		return compiled{}, errorf(p.pos, "%s patterns must be constants, not column %q", word, p.col)
	}
	if x.unknown {
		x.typ, x.unknown = typeText, false
	}
	if x.typ.kind != kText && !x.null {
		return compiled{}, errorf(pos, "%s applies to text, not to %s", word, describe(x))
	}
	if !p.null && !p.unknown && p.typ.kind != kText {
		return compiled{}, errorf(p.pos, "%s pattern must be text, not %s", word, p.typ.name)
	}
	if x.null || p.null {
		return compiled{n: constNode{tNull}, canon: "NULL"}, nil
	}
	coll, err := c.collation(x, p, pos)
	if err != nil {
		return compiled{}, err
	}
	pat := p.text
	if p.typ.bpchar {
		pat = trimBlanks(pat)
	}
	var fold func(string) string
	if ci {
		fold = unicodeLower
		if bytewise(coll) {
			fold = asciiLower
		}
		pat = fold(pat)
	}
	m, err := compileLike(pat)
	if err != nil {
		return compiled{}, errorf(p.pos, "%s", err.(*Error).Msg)
	}
	xo, xc := side(textOps, x)
	xo.conv = func(s string) (string, bool) { return s, true } // LIKE sees char(n) padding
	if x.col == "" {
		xo.v = x.text
	}
	return compiled{n: &likeNode{x: xo, m: m, fold: fold, neg: neg}, canon: xc + " " + word + " " + quoteLiteral(pat)}, nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
