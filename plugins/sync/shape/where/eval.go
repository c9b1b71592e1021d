package where

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// tri is a SQL truth value.
type tri uint8

const (
	tFalse tri = iota
	tTrue
	tNull
)

func triOf(b bool) tri {
	if b {
		return tTrue
	}
	return tFalse
}

func (t tri) not() tri {
	switch t {
	case tTrue:
		return tFalse
	case tFalse:
		return tTrue
	}
	return tNull
}

// rowFunc returns a column's value in text format, nil for NULL.
type rowFunc = func(column string) *string

// node is a compiled boolean expression.
type node interface {
	eval(row rowFunc) tri
}

type constNode struct{ v tri }

func (n constNode) eval(rowFunc) tri { return n.v }

type andNode struct{ args []node }

func (n *andNode) eval(row rowFunc) tri {
	r := tTrue
	for _, a := range n.args {
		switch a.eval(row) {
		case tFalse:
			return tFalse
		case tNull:
			r = tNull
		}
	}
	return r
}

type orNode struct{ args []node }

func (n *orNode) eval(row rowFunc) tri {
	r := tFalse
	for _, a := range n.args {
		switch a.eval(row) {
		case tTrue:
			return tTrue
		case tNull:
			r = tNull
		}
	}
	return r
}

type notNode struct{ x node }

func (n *notNode) eval(row rowFunc) tri { return n.x.eval(row).not() }

// boolColNode is a bare boolean column.
type boolColNode struct{ col string }

func (n *boolColNode) eval(row rowFunc) tri {
	v := row(n.col)
	if v == nil {
		return tNull
	}
	if *v == "t" {
		return tTrue
	}
	if *v == "f" {
		return tFalse
	}
	b, err := parseBool(*v)
	if err != nil {
		return tNull
	}
	return triOf(b)
}

// nullTestNode is IS [NOT] NULL on a column.
type nullTestNode struct {
	col string
	not bool
}

func (n *nullTestNode) eval(row rowFunc) tri {
	return triOf((row(n.col) == nil) != n.not)
}

// exprNullTestNode is IS [NOT] NULL (IS [NOT] UNKNOWN) on a boolean expression.
type exprNullTestNode struct {
	x   node
	not bool
}

func (n *exprNullTestNode) eval(row rowFunc) tri {
	return triOf((n.x.eval(row) == tNull) != n.not)
}

// boolTestNode is IS [NOT] TRUE / IS [NOT] FALSE.
type boolTestNode struct {
	x    node
	want tri // tTrue or tFalse
	not  bool
}

func (n *boolTestNode) eval(row rowFunc) tri {
	return triOf((n.x.eval(row) == n.want) != n.not)
}

// operand is one side of a comparison: a column read and converted to the
// comparison's representation, or a constant (possibly NULL).
type operand[V any] struct {
	col  string
	conv func(string) (V, bool)
	v    V
	null bool
}

func (o *operand[V]) get(row rowFunc) (V, bool) {
	if o.col == "" {
		return o.v, !o.null
	}
	s := row(o.col)
	if s == nil {
		var zero V
		return zero, false
	}
	return o.conv(*s)
}

type cmpOp uint8

const (
	opEq cmpOp = iota
	opNe
	opLt
	opLe
	opGt
	opGe
)

var opText = [...]string{opEq: "=", opNe: "<>", opLt: "<", opLe: "<=", opGt: ">", opGe: ">="}

// flip is the operator with its operands swapped: a < b ⇔ b > a.
func (op cmpOp) flip() cmpOp {
	switch op {
	case opLt:
		return opGt
	case opLe:
		return opGe
	case opGt:
		return opLt
	case opGe:
		return opLe
	}
	return op
}

func (op cmpOp) holds(c int) bool {
	switch op {
	case opEq:
		return c == 0
	case opNe:
		return c != 0
	case opLt:
		return c < 0
	case opLe:
		return c <= 0
	case opGt:
		return c > 0
	}
	return c >= 0
}

// cmpNode is l op r.
type cmpNode[V any] struct {
	l, r operand[V]
	op   cmpOp
	cmp  func(a, b V) int
}

func (n *cmpNode[V]) eval(row rowFunc) tri {
	a, ok := n.l.get(row)
	if !ok {
		return tNull
	}
	b, ok := n.r.get(row)
	if !ok {
		return tNull
	}
	return triOf(n.op.holds(n.cmp(a, b)))
}

// distinctNode is IS [NOT] DISTINCT FROM: NULL-safe, never NULL.
type distinctNode[V any] struct {
	l, r operand[V]
	not  bool // IS NOT DISTINCT FROM
	cmp  func(a, b V) int
}

func (n *distinctNode[V]) eval(row rowFunc) tri {
	a, aok := n.l.get(row)
	b, bok := n.r.get(row)
	var same bool
	switch {
	case !aok || !bok:
		same = aok == bok
	default:
		same = n.cmp(a, b) == 0
	}
	return triOf(same == n.not)
}

// inNode is x IN (constants): the value is read once and compared with each.
type inNode[V any] struct {
	x       operand[V]
	list    []V
	hasNull bool
	cmp     func(a, b V) int
}

func (n *inNode[V]) eval(row rowFunc) tri {
	a, ok := n.x.get(row)
	if !ok {
		return tNull
	}
	for _, b := range n.list {
		if n.cmp(a, b) == 0 {
			return tTrue
		}
	}
	if n.hasNull {
		return tNull
	}
	return tFalse
}

// likeNode is x [NOT] LIKE / ILIKE pattern.
type likeNode struct {
	x    operand[string]
	m    likePattern
	fold func(string) string // ILIKE: lower-case the subject; nil for LIKE
	neg  bool
}

func (n *likeNode) eval(row rowFunc) tri {
	s, ok := n.x.get(row)
	if !ok {
		return tNull
	}
	if n.fold != nil {
		s = n.fold(s)
	}
	return triOf(n.m.match(s) != n.neg)
}

// likePattern is a compiled LIKE pattern: literal runes, _ (one character) and %
// (any run of characters).
type likePattern struct {
	toks []likeTok
	// fast paths: the pattern is lit, lit%, %lit or %lit%
	fast           bool
	lit            string
	prefix, suffix bool // % before / after lit
}

type likeTok struct {
	r    rune
	kind uint8 // 0 literal, 1 _, 2 %
}

// compileLike reads a pattern with backslash as the escape character.
func compileLike(p string) (likePattern, error) {
	var lp likePattern
	var lit strings.Builder
	nAny := 0
	for i := 0; i < len(p); {
		r, size := utf8.DecodeRuneInString(p[i:])
		i += size
		switch r {
		case '\\':
			if i >= len(p) {
				return lp, errorf(-1, "LIKE pattern must not end with escape character")
			}
			r, size = utf8.DecodeRuneInString(p[i:])
			i += size
			lp.toks = append(lp.toks, likeTok{r: r})
		case '_':
			lp.toks = append(lp.toks, likeTok{kind: 1})
			nAny++
		case '%':
			if n := len(lp.toks); n > 0 && lp.toks[n-1].kind == 2 {
				continue
			}
			lp.toks = append(lp.toks, likeTok{kind: 2})
		default:
			lp.toks = append(lp.toks, likeTok{r: r})
		}
	}
	if nAny > 0 {
		return lp, nil
	}
	toks := lp.toks
	if len(toks) > 0 && toks[0].kind == 2 {
		lp.prefix, toks = true, toks[1:]
	}
	if len(toks) > 0 && toks[len(toks)-1].kind == 2 {
		lp.suffix, toks = true, toks[:len(toks)-1]
	}
	for _, t := range toks {
		if t.kind != 0 {
			return lp, nil
		}
		lit.WriteRune(t.r)
	}
	lp.fast, lp.lit = true, lit.String()
	return lp, nil
}

func (lp *likePattern) match(s string) bool {
	if lp.fast {
		switch {
		case lp.prefix && lp.suffix:
			return strings.Contains(s, lp.lit)
		case lp.prefix:
			return strings.HasSuffix(s, lp.lit)
		case lp.suffix:
			return strings.HasPrefix(s, lp.lit)
		}
		return s == lp.lit
	}
	p := lp.toks
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		r, size := utf8.DecodeRuneInString(s[si:])
		switch {
		case pi < len(p) && p[pi].kind == 2:
			starP, starS = pi, si
			pi++
		case pi < len(p) && (p[pi].kind == 1 || p[pi].r == r):
			pi++
			si += size
		case starP >= 0:
			_, size = utf8.DecodeRuneInString(s[starS:])
			starS += size
			pi, si = starP+1, starS
		default:
			return false
		}
	}
	for pi < len(p) && p[pi].kind == 2 {
		pi++
	}
	return pi == len(p)
}

// asciiLower lower-cases A–Z only, as lower() does under the C collation.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// unicodeLower lower-cases every letter, approximating lower() under a libc or ICU
// collation.
func unicodeLower(s string) string {
	return strings.Map(unicode.ToLower, s)
}
