// Package where compiles a live shape's where clause — a SQL boolean expression over
// one table's columns, with $1…$n parameters given as text — into an Expr that is
// evaluated in Go against rows whose values are in PostgreSQL's text output format,
// as logical replication (pgoutput) delivers them.
//
// The expression is parsed by PostgreSQL's own parser (pg_query) and only a small,
// exactly understood subset is accepted: comparisons, AND/OR/NOT, IN, IS [NOT] NULL,
// IS [NOT] TRUE/FALSE, LIKE/ILIKE, BETWEEN, casts of constants and COLLATE "C".
// Everything else is refused with an *Error saying what is not supported.
package where

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	pg "github.com/pganalyze/pg_query_go/v6"
	pgparser "github.com/pganalyze/pg_query_go/v6/parser"
)

// Column describes a column an expression may use.
type Column struct {
	Name string // as in the catalog
	// Type is format_type(atttypid, atttypmod), e.g. "integer", "bigint", "text",
	// "character varying(20)", "numeric(12,2)", "timestamp with time zone", "uuid",
	// "boolean", "date", "double precision", "text[]". Types this package does not
	// compare (arrays, json, enums, …) may only be tested with IS [NOT] NULL.
	Type string
	// Collation is the column's collation name ("C", "POSIX", "default",
	// "en_US.utf8", …); empty = not collatable.
	Collation string
}

// Options for Compile.
type Options struct {
	// Location is the session TimeZone, used for literals such as
	// '2024-01-01 10:00'::timestamptz and for comparing date or timestamp values
	// with timestamptz ones; nil = UTC.
	Location *time.Location
	// DefaultCollation is the database's datcollate, used for columns whose
	// Collation is "default".
	DefaultCollation string
}

// Expr is a compiled where clause. It is immutable and safe for concurrent use.
type Expr struct {
	root  node
	cols  []string
	eqs   []Equality
	canon string
}

// Equality is a condition `Column = constant` that must hold for the expression to
// be true. Value is canonical, as CanonicalValue writes it for the column's type.
type Equality struct {
	Column string
	Value  string
}

// Eval reports whether the expression is TRUE for the row; FALSE and NULL are both
// false. row returns a column's value in PostgreSQL's text format, nil for NULL. A
// value that is not valid text for its column's type counts as NULL.
func (e *Expr) Eval(row func(column string) *string) bool {
	return e.root.eval(row) == tTrue
}

// Columns returns the columns the expression reads, sorted and unique.
func (e *Expr) Columns() []string { return slices.Clone(e.cols) }

// Equalities returns the conditions `col = constant` (or `constant = col`, or
// `col = $n`, or a bare boolean column) that are the whole expression or one arm of
// its top-level AND chain: a row can match only if each holds. Use them to index
// shapes by value; compare with a row's CanonicalValue.
func (e *Expr) Equalities() []Equality { return slices.Clone(e.eqs) }

// Canonical returns a normalized text of the expression: parameters are substituted
// as typed constants, constants are written canonically, AND/OR operands are
// flattened and sorted, BETWEEN is expanded, and a constant on the left of a
// comparison is moved to the right. Two spellings of the same definition give the
// same string where practical. It is for comparing definitions, not for running.
func (e *Expr) Canonical() string { return e.canon }

// prefix is what the expression is parsed inside of.
const prefix = "SELECT 1 FROM t WHERE "

// Compile parses expr, a SQL boolean expression over cols with parameters params
// ($1 is params[0]), and compiles it. Errors are *Error.
func Compile(expr string, cols []Column, params []string, opts Options) (*Expr, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, errorf(-1, "the where clause is empty")
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	tree, err := pg.Parse(prefix + expr)
	if err != nil {
		var pe *pgparser.Error
		if errors.As(err, &pe) {
			pos := pe.Cursorpos - 1 - len(prefix)
			if pos < 0 || pos > len(expr) {
				pos = -1
			}
			return nil, errorf(pos, "%s", pe.Message)
		}
		return nil, errorf(-1, "%v", err)
	}
	where, err := whereOf(tree)
	if err != nil {
		return nil, err
	}
	c := &compiler{
		expr:   expr,
		cols:   map[string]colInfo{},
		params: params,
		opts:   opts,
		used:   map[string]bool{},
	}
	for _, col := range cols {
		coll := col.Collation
		if coll == "default" {
			coll = opts.DefaultCollation
		}
		t := parseColumnType(col.Type)
		if t.kind == kText && t.name == "name" && coll == "" {
			coll = "C"
		}
		c.cols[col.Name] = colInfo{col: col, typ: t, coll: coll}
	}
	root, err := c.boolean(where)
	if err != nil {
		return nil, err
	}
	e := &Expr{root: root.n, canon: strings.TrimSuffix(strings.TrimPrefix(root.canon, "("), ")")}
	if !strings.HasPrefix(root.canon, "(") {
		e.canon = root.canon
	}
	for name := range c.used {
		e.cols = append(e.cols, name)
	}
	slices.Sort(e.cols)
	if _, ok := root.n.(*andNode); ok {
		for _, p := range root.parts {
			if p.eq != nil {
				e.eqs = append(e.eqs, *p.eq)
			}
		}
	} else if root.eq != nil {
		e.eqs = append(e.eqs, *root.eq)
	}
	slices.SortFunc(e.eqs, func(a, b Equality) int {
		return cmp.Or(strings.Compare(a.Column, b.Column), strings.Compare(a.Value, b.Value))
	})
	e.eqs = slices.Compact(e.eqs)
	return e, nil
}

// whereOf checks that the statement is exactly SELECT 1 FROM t WHERE <expr>, so the
// expression could not close the clause and add anything of its own.
func whereOf(tree *pg.ParseResult) (*pg.Node, error) {
	bad := errorf(-1, "the where clause must be a single boolean expression (no ';', GROUP BY, ORDER BY, LIMIT, UNION, …)")
	if len(tree.Stmts) != 1 {
		return nil, bad
	}
	s := tree.Stmts[0].GetStmt().GetSelectStmt()
	if s == nil || s.Op != pg.SetOperation_SETOP_NONE || s.WhereClause == nil ||
		len(s.DistinctClause) > 0 || s.IntoClause != nil || len(s.TargetList) != 1 ||
		len(s.FromClause) != 1 || len(s.GroupClause) > 0 || s.HavingClause != nil ||
		len(s.WindowClause) > 0 || len(s.ValuesLists) > 0 || len(s.SortClause) > 0 ||
		s.LimitOffset != nil || s.LimitCount != nil || len(s.LockingClause) > 0 || s.WithClause != nil {
		return nil, bad
	}
	if rv := s.FromClause[0].GetRangeVar(); rv == nil || rv.Relname != "t" || rv.Schemaname != "" || rv.Alias != nil {
		return nil, bad
	}
	return s.WhereClause, nil
}

type colInfo struct {
	col  Column
	typ  sqlType
	coll string // effective collation
}

type compiler struct {
	expr   string
	cols   map[string]colInfo
	params []string
	opts   Options
	used   map[string]bool
}

// compiled is a boolean subexpression: its node, its canonical text, the equality
// it states (if it is one), and for AND its flattened operands.
type compiled struct {
	n     node
	canon string
	eq    *Equality
	parts []compiled
}

// pos converts a parser location into a byte offset into the expression.
func (c *compiler) pos(loc int32) int {
	p := int(loc) - len(prefix)
	if loc < 0 || p < 0 || p > len(c.expr) {
		return -1
	}
	return p
}

// snippet is the source text starting at loc, shortened, for messages.
func (c *compiler) snippet(loc int32) string {
	p := c.pos(loc)
	if p < 0 {
		return ""
	}
	s := c.expr[p:]
	if i := strings.IndexAny(s, "("); i >= 0 {
		return s[:i] + "(...)"
	}
	if len(s) > 30 {
		s = s[:30] + "…"
	}
	return s
}

// boolean compiles an expression that must be boolean.
func (c *compiler) boolean(n *pg.Node) (compiled, error) {
	switch {
	case n.GetBoolExpr() != nil:
		return c.boolExpr(n.GetBoolExpr())
	case n.GetAExpr() != nil:
		return c.aExpr(n.GetAExpr())
	case n.GetNullTest() != nil:
		return c.nullTest(n.GetNullTest())
	case n.GetBooleanTest() != nil:
		return c.boolTest(n.GetBooleanTest())
	}
	t, err := c.term(n)
	if err != nil {
		return compiled{}, err
	}
	if t.null {
		return compiled{n: constNode{tNull}, canon: "NULL"}, nil
	}
	if t.typ.kind != kBool && !t.unknown {
		return compiled{}, errorf(t.pos, "argument of WHERE must be type boolean, not type %s: %s", t.typ.name, t.display)
	}
	if t.col != "" {
		return compiled{n: &boolColNode{col: t.col}, canon: quoteIdent(t.col), eq: &Equality{t.col, "t"}}, nil
	}
	b, err := parseBool(t.text)
	if err != nil {
		return compiled{}, errorf(t.pos, "%s", err.(*Error).Msg)
	}
	return constBool(b), nil
}

func constBool(b bool) compiled {
	if b {
		return compiled{n: constNode{tTrue}, canon: "true"}
	}
	return compiled{n: constNode{tFalse}, canon: "false"}
}

func (c *compiler) boolExpr(b *pg.BoolExpr) (compiled, error) {
	var args []compiled
	for _, a := range b.Args {
		x, err := c.boolean(a)
		if err != nil {
			return compiled{}, err
		}
		args = append(args, x)
	}
	switch b.Boolop {
	case pg.BoolExprType_NOT_EXPR:
		x := args[0]
		r := compiled{n: &notNode{x.n}, canon: "NOT " + parens(x.canon)}
		if bc, ok := x.n.(*boolColNode); ok {
			r.eq = &Equality{bc.col, "f"}
		}
		return r, nil
	case pg.BoolExprType_AND_EXPR:
		return junction(args, true), nil
	}
	return junction(args, false), nil
}

// parens wraps a canonical text that is not already atomic or parenthesized.
func parens(s string) string {
	if strings.HasPrefix(s, "(") && strings.HasSuffix(s, ")") {
		return s
	}
	return "(" + s + ")"
}

// junction builds AND (and=true) or OR over args, flattening nested chains of the
// same kind and sorting and deduplicating operands by canonical text.
func junction(args []compiled, and bool) compiled {
	var flat []compiled
	for _, a := range args {
		if and {
			if _, ok := a.n.(*andNode); ok {
				flat = append(flat, a.parts...)
				continue
			}
		} else if _, ok := a.n.(*orNode); ok {
			flat = append(flat, a.parts...)
			continue
		}
		flat = append(flat, a)
	}
	slices.SortStableFunc(flat, func(a, b compiled) int { return strings.Compare(a.canon, b.canon) })
	flat = slices.CompactFunc(flat, func(a, b compiled) bool { return a.canon == b.canon })
	if len(flat) == 1 {
		return flat[0]
	}
	nodes := make([]node, len(flat))
	texts := make([]string, len(flat))
	for i, a := range flat {
		nodes[i], texts[i] = a.n, a.canon
	}
	if and {
		return compiled{n: &andNode{nodes}, canon: "(" + strings.Join(texts, " AND ") + ")", parts: flat}
	}
	return compiled{n: &orNode{nodes}, canon: "(" + strings.Join(texts, " OR ") + ")", parts: flat}
}

func opName(names []*pg.Node) string {
	var parts []string
	for _, n := range names {
		parts = append(parts, n.GetString_().GetSval())
	}
	return strings.Join(parts, ".")
}

func parseOp(name string) (cmpOp, bool) {
	switch name {
	case "=":
		return opEq, true
	case "<>", "!=":
		return opNe, true
	case "<":
		return opLt, true
	case "<=":
		return opLe, true
	case ">":
		return opGt, true
	case ">=":
		return opGe, true
	}
	return 0, false
}

func (c *compiler) aExpr(a *pg.A_Expr) (compiled, error) {
	name := opName(a.Name)
	pos := c.pos(a.Location)
	switch a.Kind {
	case pg.A_Expr_Kind_AEXPR_OP:
		op, ok := parseOp(name)
		if !ok || a.Lexpr == nil {
			return compiled{}, errorf(pos, "operator %s is not supported in shape where clauses (only = <> < <= > >=, AND, OR, NOT, IN, LIKE, ILIKE, BETWEEN, IS [NOT] NULL)", name)
		}
		l, err := c.term(a.Lexpr)
		if err != nil {
			return compiled{}, err
		}
		r, err := c.term(a.Rexpr)
		if err != nil {
			return compiled{}, err
		}
		return c.compare(l, r, op, pos)
	case pg.A_Expr_Kind_AEXPR_DISTINCT, pg.A_Expr_Kind_AEXPR_NOT_DISTINCT:
		l, err := c.term(a.Lexpr)
		if err != nil {
			return compiled{}, err
		}
		r, err := c.term(a.Rexpr)
		if err != nil {
			return compiled{}, err
		}
		return c.distinct(l, r, a.Kind == pg.A_Expr_Kind_AEXPR_NOT_DISTINCT, pos)
	case pg.A_Expr_Kind_AEXPR_IN:
		return c.in(a, name == "<>", pos)
	case pg.A_Expr_Kind_AEXPR_LIKE, pg.A_Expr_Kind_AEXPR_ILIKE:
		return c.like(a, name, pos)
	case pg.A_Expr_Kind_AEXPR_BETWEEN, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN,
		pg.A_Expr_Kind_AEXPR_BETWEEN_SYM, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
		return c.between(a, pos)
	case pg.A_Expr_Kind_AEXPR_OP_ANY, pg.A_Expr_Kind_AEXPR_OP_ALL:
		return compiled{}, errorf(pos, "ANY/ALL are not supported in shape where clauses: use IN (...)")
	case pg.A_Expr_Kind_AEXPR_SIMILAR:
		return compiled{}, errorf(pos, "SIMILAR TO is not supported in shape where clauses: use LIKE")
	case pg.A_Expr_Kind_AEXPR_NULLIF:
		return compiled{}, errorf(pos, "NULLIF is not supported in shape where clauses")
	}
	return compiled{}, errorf(pos, "this expression is not supported in shape where clauses")
}

func (c *compiler) between(a *pg.A_Expr, pos int) (compiled, error) {
	x, err := c.term(a.Lexpr)
	if err != nil {
		return compiled{}, err
	}
	items := a.Rexpr.GetList().GetItems()
	if len(items) != 2 {
		return compiled{}, errorf(pos, "BETWEEN needs two bounds")
	}
	lo, err := c.term(items[0])
	if err != nil {
		return compiled{}, err
	}
	hi, err := c.term(items[1])
	if err != nil {
		return compiled{}, err
	}
	in := func(lo, hi term) (compiled, error) {
		ge, err := c.compare(x, lo, opGe, pos)
		if err != nil {
			return compiled{}, err
		}
		le, err := c.compare(x, hi, opLe, pos)
		if err != nil {
			return compiled{}, err
		}
		return junction([]compiled{ge, le}, true), nil
	}
	r, err := in(lo, hi)
	if err != nil {
		return compiled{}, err
	}
	sym := a.Kind == pg.A_Expr_Kind_AEXPR_BETWEEN_SYM || a.Kind == pg.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM
	if sym {
		r2, err := in(hi, lo)
		if err != nil {
			return compiled{}, err
		}
		r = junction([]compiled{r, r2}, false)
	}
	if a.Kind == pg.A_Expr_Kind_AEXPR_NOT_BETWEEN || a.Kind == pg.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM {
		r = compiled{n: &notNode{r.n}, canon: "NOT " + parens(r.canon)}
	}
	return r, nil
}

func (c *compiler) nullTest(nt *pg.NullTest) (compiled, error) {
	not := nt.Nulltesttype == pg.NullTestType_IS_NOT_NULL
	word := " IS NULL"
	if not {
		word = " IS NOT NULL"
	}
	if cr := nt.Arg.GetColumnRef(); cr != nil {
		t, err := c.term(nt.Arg)
		if err != nil {
			return compiled{}, err
		}
		return compiled{n: &nullTestNode{col: t.col, not: not}, canon: quoteIdent(t.col) + word}, nil
	}
	switch {
	case nt.Arg.GetBoolExpr() != nil, nt.Arg.GetAExpr() != nil, nt.Arg.GetNullTest() != nil, nt.Arg.GetBooleanTest() != nil:
		x, err := c.boolean(nt.Arg)
		if err != nil {
			return compiled{}, err
		}
		return compiled{n: &exprNullTestNode{x: x.n, not: not}, canon: parens(x.canon) + word}, nil
	}
	t, err := c.term(nt.Arg)
	if err != nil {
		return compiled{}, err
	}
	v := t.null != not
	return constBool(v), nil
}

func (c *compiler) boolTest(bt *pg.BooleanTest) (compiled, error) {
	x, err := c.boolean(bt.Arg)
	if err != nil {
		return compiled{}, err
	}
	var n node
	var word string
	switch bt.Booltesttype {
	case pg.BoolTestType_IS_TRUE:
		n, word = &boolTestNode{x: x.n, want: tTrue}, " IS TRUE"
	case pg.BoolTestType_IS_NOT_TRUE:
		n, word = &boolTestNode{x: x.n, want: tTrue, not: true}, " IS NOT TRUE"
	case pg.BoolTestType_IS_FALSE:
		n, word = &boolTestNode{x: x.n, want: tFalse}, " IS FALSE"
	case pg.BoolTestType_IS_NOT_FALSE:
		n, word = &boolTestNode{x: x.n, want: tFalse, not: true}, " IS NOT FALSE"
	case pg.BoolTestType_IS_UNKNOWN:
		n, word = &exprNullTestNode{x: x.n}, " IS NULL"
	default:
		n, word = &exprNullTestNode{x: x.n, not: true}, " IS NOT NULL"
	}
	return compiled{n: n, canon: parens(x.canon) + word}, nil
}

// term is an operand: a column, a constant (a literal, a parameter or a cast of
// one), or NULL.
type term struct {
	col     string  // a column's name; "" for a constant
	typ     sqlType // the column's or the constant's type
	unknown bool    // an untyped string literal or parameter: takes the other side's type
	null    bool    // the NULL literal
	text    string  // the constant's text
	coll    string  // an explicit COLLATE
	pos     int
	display string // as the user wrote it, for messages
}

func (c *compiler) term(n *pg.Node) (term, error) {
	switch {
	case n.GetColumnRef() != nil:
		cr := n.GetColumnRef()
		pos := c.pos(cr.Location)
		if len(cr.Fields) != 1 || cr.Fields[0].GetString_() == nil {
			return term{}, errorf(pos, "column references must be plain column names (no table qualifier): %s", c.snippet(cr.Location))
		}
		name := cr.Fields[0].GetString_().Sval
		info, ok := c.cols[name]
		if !ok {
			return term{}, errorf(pos, "unknown column %q", name)
		}
		c.used[name] = true
		return term{col: name, typ: info.typ, pos: pos, display: quoteIdent(name)}, nil
	case n.GetAConst() != nil:
		k := n.GetAConst()
		pos := c.pos(k.Location)
		switch {
		case k.Isnull:
			return term{null: true, pos: pos, display: "NULL", typ: typeUnknown}, nil
		case k.GetIval() != nil:
			v := strconv.Itoa(int(k.GetIval().Ival))
			return term{typ: typeInt4, text: v, pos: pos, display: v}, nil
		case k.GetFval() != nil:
			v := k.GetFval().Fval
			if _, err := strconv.ParseInt(v, 10, 64); err == nil {
				return term{typ: typeInt8, text: v, pos: pos, display: v}, nil
			}
			return term{typ: typeNumeric, text: v, pos: pos, display: v}, nil
		case k.GetBoolval() != nil:
			v := "f"
			if k.GetBoolval().Boolval {
				v = "t"
			}
			return term{typ: typeBool, text: v, pos: pos, display: strings.ToUpper(strconv.FormatBool(k.GetBoolval().Boolval))}, nil
		case k.GetSval() != nil:
			v := k.GetSval().Sval
			return term{typ: typeUnknown, unknown: true, text: v, pos: pos, display: quoteLiteral(v)}, nil
		}
		return term{}, errorf(pos, "bit string constants are not supported in shape where clauses")
	case n.GetParamRef() != nil:
		p := n.GetParamRef()
		pos := c.pos(p.Location)
		if p.Number < 1 || int(p.Number) > len(c.params) {
			return term{}, errorf(pos, "$%d has no value (%d params given)", p.Number, len(c.params))
		}
		v := c.params[p.Number-1]
		return term{typ: typeUnknown, unknown: true, text: v, pos: pos, display: fmt.Sprintf("$%d (%s)", p.Number, quoteLiteral(v))}, nil
	case n.GetTypeCast() != nil:
		return c.cast(n.GetTypeCast())
	case n.GetCollateClause() != nil:
		cc := n.GetCollateClause()
		t, err := c.term(cc.Arg)
		if err != nil {
			return term{}, err
		}
		pos := c.pos(cc.Location)
		if t.typ.kind != kText || (!t.typ.collate && !t.unknown) {
			return term{}, errorf(pos, "COLLATE applies to text only, not to type %s", t.typ.name)
		}
		if len(cc.Collname) != 1 {
			return term{}, errorf(pos, "COLLATE takes an unqualified collation name")
		}
		t.coll = cc.Collname[0].GetString_().GetSval()
		if t.unknown {
			t.typ, t.unknown = typeText, false
		}
		return t, nil
	case n.GetFuncCall() != nil:
		f := n.GetFuncCall()
		return term{}, errorf(c.pos(f.Location), "functions are not supported in shape where clauses: %s", c.snippet(f.Location))
	case n.GetSubLink() != nil:
		return term{}, errorf(c.pos(n.GetSubLink().Location), "subqueries are not supported in shape where clauses")
	case n.GetAExpr() != nil:
		a := n.GetAExpr()
		if a.Kind == pg.A_Expr_Kind_AEXPR_OP {
			if _, ok := parseOp(opName(a.Name)); !ok {
				return term{}, errorf(c.pos(a.Location), "operator %s is not supported in shape where clauses (no arithmetic or other operators)", opName(a.Name))
			}
		}
		return term{}, errorf(c.pos(a.Location), "a comparison cannot be an operand here; compare columns with constants")
	case n.GetBoolExpr() != nil, n.GetNullTest() != nil, n.GetBooleanTest() != nil:
		return term{}, errorf(-1, "a boolean expression cannot be compared here; use IS TRUE / IS FALSE / IS NULL")
	case n.GetCaseExpr() != nil:
		return term{}, errorf(c.pos(n.GetCaseExpr().Location), "CASE is not supported in shape where clauses")
	case n.GetCoalesceExpr() != nil:
		return term{}, errorf(c.pos(n.GetCoalesceExpr().Location), "functions are not supported in shape where clauses: COALESCE(...)")
	case n.GetAArrayExpr() != nil:
		return term{}, errorf(c.pos(n.GetAArrayExpr().Location), "array constructors are not supported in shape where clauses")
	case n.GetRowExpr() != nil:
		return term{}, errorf(c.pos(n.GetRowExpr().Location), "row constructors are not supported in shape where clauses")
	case n.GetSqlvalueFunction() != nil:
		return term{}, errorf(c.pos(n.GetSqlvalueFunction().Location), "functions are not supported in shape where clauses: %s (its value changes over time)", c.snippet(n.GetSqlvalueFunction().Location))
	case n.GetAIndirection() != nil:
		return term{}, errorf(-1, "subscripts and field selection are not supported in shape where clauses")
	}
	return term{}, errorf(-1, "this expression is not supported in shape where clauses")
}

// cast converts a constant to a type: 'x'::T, CAST($1 AS T), 5::bigint, …
func (c *compiler) cast(tc *pg.TypeCast) (term, error) {
	pos := c.pos(tc.Location)
	t, err := c.term(tc.Arg)
	if err != nil {
		return term{}, err
	}
	to, err := c.typeName(tc.TypeName)
	if err != nil {
		return term{}, err
	}
	if t.col != "" {
		return term{}, errorf(pos, "casts of columns are not supported in shape where clauses: compare %s with a constant of its own type (%s)", t.display, t.typ.name)
	}
	if t.null {
		t.typ, t.unknown = to, false
		return t, nil
	}
	if to.kind == kOpaque {
		return term{}, errorf(pos, "type %s is not supported in shape where clauses", to.name)
	}
	from := t.typ
	ok := t.unknown || from.kind == to.kind ||
		(from.kind == kInt && (to.kind == kNumeric || to.kind == kFloat)) ||
		(from.kind == kNumeric && to.kind == kFloat) ||
		(from.kind == kDate && (to.kind == kTimestamp || to.kind == kTimestamptz))
	if !ok {
		return term{}, errorf(pos, "cannot cast %s of type %s to %s in a shape where clause", t.display, from.name, to.name)
	}
	text := t.text
	if !t.unknown {
		// A typed constant: re-read its canonical text as the new type.
		text, err = canonicalOf(from, t.text, c.opts.Location)
		if err != nil {
			return term{}, errorf(pos, "%s", err.(*Error).Msg)
		}
		if from.kind == kInt && to.kind == kInt && to.bits < from.bits {
			if _, err := parseInt(text, to.bits); err != nil {
				return term{}, errorf(pos, "%s out of range", to.name)
			}
		}
	}
	text, err = coerceText(to, text, c.opts.Location)
	if err != nil {
		return term{}, errorf(pos, "cannot cast %s to %s: %s", t.display, to.name, err.(*Error).Msg)
	}
	return term{typ: to, text: text, pos: t.pos, display: t.display + "::" + to.name, coll: t.coll}, nil
}

// coerceText checks that text is a valid value of t and applies t's type modifier
// (numeric(p,s) rounding, varchar(n)/char(n) truncation, timestamp(p) rounding),
// returning the text of the result.
func coerceText(t sqlType, text string, loc *time.Location) (string, error) {
	switch t.kind {
	case kNumeric:
		d, err := parseNumeric(text)
		if err != nil {
			return "", err
		}
		if t.prec > 0 {
			if d, err = roundDecimal(d, t.prec, t.scale); err != nil {
				return "", err
			}
		}
		return d.String(), nil
	case kText:
		if t.length > 0 && utf8Len(text) > t.length {
			text = string([]rune(text)[:t.length])
		}
		return text, nil
	case kTimestamp, kTimestamptz, kTime:
		if t.prec >= 0 {
			s, err := canonicalOf(t, text, loc)
			if err != nil {
				return "", err
			}
			return s, nil
		}
	}
	_, err := canonicalOf(t, text, loc)
	return text, err
}

func utf8Len(s string) int { return len([]rune(s)) }

// typeName maps a cast's type to a sqlType.
func (c *compiler) typeName(tn *pg.TypeName) (sqlType, error) {
	pos := c.pos(tn.Location)
	var names []string
	for _, n := range tn.Names {
		names = append(names, n.GetString_().GetSval())
	}
	if len(names) == 2 && names[0] == "pg_catalog" {
		names = names[1:]
	}
	full := strings.Join(names, ".")
	if len(tn.ArrayBounds) > 0 || tn.Setof || tn.PctType || len(names) != 1 {
		return sqlType{}, errorf(pos, "type %s is not supported in shape where clauses", full)
	}
	var mods []int
	for _, m := range tn.Typmods {
		k := m.GetAConst().GetIval()
		if k == nil {
			return sqlType{}, errorf(pos, "type modifiers must be integers")
		}
		mods = append(mods, int(k.Ival))
	}
	st, ok := baseType(names[0], mods)
	if !ok || (names[0] == "char" && len(tn.Names) == 1) {
		return sqlType{}, errorf(pos, "type %s is not supported in shape where clauses", full)
	}
	return st, nil
}

// compareKind picks the representation two operand types are compared in, as
// PostgreSQL's operator resolution does for the supported types.
func compareKind(a, b sqlType) (kind, bool) {
	if a.kind == b.kind {
		return a.kind, a.kind != kOpaque
	}
	num := func(k kind) bool { return k == kInt || k == kNumeric || k == kFloat }
	if num(a.kind) && num(b.kind) {
		return max(a.kind, b.kind), true // kInt < kNumeric < kFloat
	}
	dt := func(k kind) bool { return k == kDate || k == kTimestamp || k == kTimestamptz }
	if dt(a.kind) && dt(b.kind) {
		return max(a.kind, b.kind), true // kDate < kTimestamp < kTimestamptz
	}
	return 0, false
}

// describe names an operand in an error message.
func describe(t term) string {
	if t.col != "" {
		return fmt.Sprintf("%s column %q", t.typ.name, t.col)
	}
	return t.display
}

// resolve gives untyped constants the other side's type and checks that the two
// sides can be compared. It returns the comparison kind.
func (c *compiler) resolve(l, r *term, pos int) (kind, error) {
	if l.unknown && r.unknown {
		l.typ, r.typ = typeText, typeText
		l.unknown, r.unknown = false, false
	}
	for _, p := range [2][2]*term{{l, r}, {r, l}} {
		x, other := p[0], p[1]
		if x.unknown || x.null {
			if other.null {
				x.typ = typeText
				continue
			}
			x.typ, x.unknown = other.typ, false
			if other.typ.kind == kOpaque {
				return 0, errorf(pos, "column %q of type %s can only be tested with IS NULL / IS NOT NULL in shape where clauses", other.col, other.typ.name)
			}
			if x.null {
				continue
			}
			if _, err := canonicalOf(x.typ, x.text, c.opts.Location); err != nil {
				return 0, errorf(x.pos, "cannot compare %s with %s: %s", describe(*other), x.display, err.(*Error).Msg)
			}
		}
	}
	for _, x := range []*term{l, r} {
		if x.typ.kind == kOpaque {
			return 0, errorf(x.pos, "column %q of type %s can only be tested with IS NULL / IS NOT NULL in shape where clauses", x.col, x.typ.name)
		}
	}
	k, ok := compareKind(l.typ, r.typ)
	if !ok {
		return 0, errorf(pos, "cannot compare %s with %s", describe(*l), describe(*r))
	}
	return k, nil
}

// collation returns the collation a text comparison uses, or an error if the sides
// disagree.
func (c *compiler) collation(l, r term, pos int) (string, error) {
	if l.coll != "" && r.coll != "" && l.coll != r.coll {
		return "", errorf(pos, "collation mismatch between explicit collations %q and %q", l.coll, r.coll)
	}
	if l.coll != "" {
		return l.coll, nil
	}
	if r.coll != "" {
		return r.coll, nil
	}
	lc, rc := "", ""
	if l.col != "" {
		lc = c.cols[l.col].coll
	}
	if r.col != "" {
		rc = c.cols[r.col].coll
	}
	if lc != "" && rc != "" && lc != rc {
		return "", errorf(pos, "columns %q and %q have different collations (%s, %s): add COLLATE \"C\"", l.col, r.col, lc, rc)
	}
	if lc != "" {
		return lc, nil
	}
	if rc != "" {
		return rc, nil
	}
	return c.opts.DefaultCollation, nil
}

func bytewise(coll string) bool {
	switch coll {
	case "C", "POSIX", "ucs_basic", "pg_c_utf8":
		return true
	}
	return false
}

// checkOrdering refuses <, >, BETWEEN on text unless the collation orders by bytes.
func (c *compiler) checkOrdering(l, r term, op cmpOp, pos int) error {
	coll, err := c.collation(l, r, pos)
	if err != nil {
		return err
	}
	if op == opEq || op == opNe || bytewise(coll) {
		return nil
	}
	col, other := l, r
	if col.col == "" {
		col, other = r, l
	}
	if coll == "" {
		coll = "unknown"
	}
	if col.col == "" {
		return errorf(pos, "ordering comparison on text needs collation C (the database collation is %s): write %s COLLATE \"C\" %s %s", coll, l.display, opText[op], r.display)
	}
	return errorf(pos, "ordering comparison on text column %q needs collation C (its collation is %s): write %s COLLATE \"C\" %s %s", col.col, coll, col.col, opText[op], other.display)
}
