package ddl

import (
	"errors"
	"fmt"
	"strings"
)

// A peer's expression text (a default, a domain CHECK, a generation expression) is
// never pasted into SQL. It is read by the small parser below, which knows only a
// strict subset of what pg_get_expr prints, and the SQL is written anew from what it
// understood: literals re-quoted, identifiers quoted, every function and operator
// qualified with pg_catalog and taken from an allowlist, every cast's type checked
// like a column type. Anything outside the subset is an error, and the caller drops
// the expression with a warning.

// tokKind is the kind of a token.
type tokKind int

const (
	tEOF    tokKind = iota
	tIdent          // unquoted identifier or keyword, as written
	tQIdent         // quoted identifier, unescaped
	tString         // string constant, unescaped
	tNumber         // unsigned numeric constant
	tOp             // operator
	tPunct          // ( ) [ ] , . ::
)

type token struct {
	kind tokKind
	text string
}

// opChars are the characters PostgreSQL operators are made of.
const opChars = "+-*/<>=~!@#%^&|`?"

// numberLen is the length of the numeric constant s starts with (s starts with a
// digit, or a dot and a digit): digits, an optional fraction, an optional exponent —
// ([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?, read without a regexp so a long
// expression of numbers costs its length.
func numberLen(s string) int {
	digits := func(i int) int {
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i
	}
	i := digits(0)
	if i < len(s) && s[i] == '.' {
		i = digits(i + 1)
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if k := digits(j); k > j {
			i = k
		}
	}
	return i
}

// tokenize splits s into tokens. It refuses what the subset never needs: comments,
// dollar quoting, escape-string and bit-string prefixes, semicolons, backslashes and
// anything non-ASCII outside quotes.
func tokenize(s string) ([]token, error) {
	if len(s) > maxExprText {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrExprTooLong, len(s), maxExprText)
	}
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '\'':
			v, n, err := quoted(s[i:], '\'')
			if err != nil {
				return nil, err
			}
			if len(out) > 0 && out[len(out)-1].kind == tIdent && i > 0 && s[i-1] != ' ' {
				return nil, errors.New("prefixed string constants are not accepted")
			}
			out = append(out, token{tString, v})
			i += n
		case c == '"':
			v, n, err := quoted(s[i:], '"')
			if err != nil {
				return nil, err
			}
			if v == "" {
				return nil, errors.New("empty quoted identifier")
			}
			out = append(out, token{tQIdent, v})
			i += n
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			m := s[i : i+numberLen(s[i:])]
			out = append(out, token{tNumber, m})
			i += len(m)
			if i < len(s) && isIdentChar(s[i]) {
				return nil, fmt.Errorf("malformed number near %q", s[i-len(m):])
			}
		case isIdentStart(c):
			j := i + 1
			for j < len(s) && isIdentChar(s[j]) {
				j++
			}
			out = append(out, token{tIdent, s[i:j]})
			i = j
		case c == ':' && i+1 < len(s) && s[i+1] == ':':
			out = append(out, token{tPunct, "::"})
			i += 2
		case strings.IndexByte("()[],.", c) >= 0:
			out = append(out, token{tPunct, s[i : i+1]})
			i++
		case strings.IndexByte(opChars, c) >= 0:
			j := i
			for j < len(s) && strings.IndexByte(opChars, s[j]) >= 0 {
				j++
			}
			op := s[i:j]
			if strings.Contains(op, "--") || strings.Contains(op, "/*") {
				return nil, errors.New("comments are not accepted")
			}
			out = append(out, token{tOp, op})
			i = j
		default:
			return nil, fmt.Errorf("unexpected character %q", c)
		}
	}
	return append(out, token{kind: tEOF}), nil
}

func isIdentStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isIdentChar(c byte) bool  { return isIdentStart(c) || c >= '0' && c <= '9' || c == '$' }

// quoted reads a quote-delimited token (doubled quotes inside) at the start of s and
// returns its unescaped value and length.
func quoted(s string, q byte) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] == 0 {
			return "", 0, errors.New("NUL byte in a quoted token")
		}
		if s[i] != q {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == q {
			b.WriteByte(q)
			i++
			continue
		}
		return b.String(), i + 1, nil
	}
	return "", 0, errors.New("unterminated quoted token")
}

// quoteString writes v as an escape-string constant, which reads the same whatever
// standard_conforming_strings is.
func quoteString(v string) string {
	return "E'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(v) + "'"
}

// exprRules say what an expression may contain.
type exprRules struct {
	// value allows the VALUE of a domain check.
	value bool
	// columns are the column names a generation expression may read.
	columns map[string]bool
	// operators allows operators, boolean logic and IS [NOT] NULL.
	operators bool
	// funcs are the pg_catalog functions that may be called.
	funcs map[string]bool
	// clock allows CURRENT_TIMESTAMP, CURRENT_DATE and the like.
	clock bool
}

// defaultFuncs are the functions a column or domain default may call: no arguments,
// no side effects.
func defaultRules() exprRules {
	return exprRules{clock: true, funcs: map[string]bool{
		"now": true, "clock_timestamp": true, "statement_timestamp": true, "transaction_timestamp": true,
		"gen_random_uuid": true, "random": true,
	}}
}

// pureFuncs are immutable pg_catalog functions a check or generation expression may
// call.
func pureFuncs() map[string]bool {
	m := map[string]bool{}
	for _, f := range strings.Fields(`lower upper length char_length character_length octet_length bit_length
		btrim ltrim rtrim lpad rpad left right reverse replace split_part substr strpos md5 initcap
		abs ceil ceiling floor round trunc sign sqrt mod div
		cardinality array_length array_ndims array_lower array_upper`) {
		m[f] = true
	}
	return m
}

// checkRules are for a domain's CHECK expression.
func checkRules() exprRules {
	return exprRules{value: true, operators: true, funcs: pureFuncs()}
}

// generatedRules are for a stored generated column reading columns.
func generatedRules(columns map[string]bool) exprRules {
	return exprRules{columns: columns, operators: true, funcs: pureFuncs()}
}

// comparison and arithmetic operators accepted between two operands.
var binaryOps = map[string]int{
	"=": 3, "<>": 3, "!=": 3, "<": 3, "<=": 3, ">": 3, ">=": 3,
	"~": 4, "~*": 4, "!~": 4, "!~*": 4, "~~": 4, "~~*": 4, "!~~": 4, "!~~*": 4, "||": 4,
	"+": 5, "-": 5,
	"*": 6, "/": 6, "%": 6,
}

// Limits on one expression, so a hostile one costs time and memory in proportion to
// its length, bounded, and never overflows the stack: the rewriter refuses text longer
// than maxExprText, nesting deeper than maxExprDepth, and more than maxExprSQL bytes
// of SQL written in all (every piece counted, however often it is wrapped).
const (
	maxExprText = 256 << 10
	// maxExprDepth bounds the parser's recursion and the nesting of the SQL it writes:
	// one level per parenthesis, function call, array, NOT, unary minus, and per
	// operator, AND, OR or IS in a chain (each wraps the chain so far in parentheses).
	maxExprDepth = 200
	maxExprSQL   = 1 << 20
)

// Errors for an expression refused for its size; the caller leaves it out with a
// warning like any other expression it does not rebuild.
var (
	ErrExprTooDeep = errors.New("expression nested too deep")
	ErrExprTooLong = errors.New("expression too long")
)

// parser reads one expression and writes its SQL anew.
type parser struct {
	toks  []token
	pos   int
	rules exprRules
	// typ resolves a cast's type to safe SQL.
	typ func(p *parser) (string, error)
	// depth is the current nesting (see maxExprDepth), written the bytes of SQL
	// produced so far (see maxExprSQL).
	depth   int
	written int
}

// enter goes one level deeper, or refuses when the expression is too deep or has
// already produced too much SQL. Each enter is matched by a leave.
func (p *parser) enter() error {
	p.depth++
	if p.depth > maxExprDepth {
		return ErrExprTooDeep
	}
	if p.written > maxExprSQL {
		return ErrExprTooLong
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

// restore sets the depth back to d, after a chain entered once per link.
func (p *parser) restore(d int) { p.depth = d }

// cat joins parts into a piece of the SQL and counts its bytes against maxExprSQL;
// past the cap it returns "" and the next enter (or parseExpr) refuses the
// expression, so no piece is copied more often than the depth allows.
func (p *parser) cat(parts ...string) string {
	n := 0
	for _, s := range parts {
		n += len(s)
	}
	p.written += n
	if p.written > maxExprSQL {
		return ""
	}
	return strings.Join(parts, "")
}

// chain writes l followed by links, each closing one parenthesis: "((l op r1) op r2)".
// Built once at the end, so a chain costs its length, not its length squared.
func (p *parser) chain(l string, links []string) string {
	if len(links) == 0 {
		return l
	}
	return p.cat(strings.Repeat("(", len(links)), l, strings.Join(links, ""))
}

func (p *parser) peek() token { return p.toks[p.pos] }
func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tEOF {
		p.pos++
	}
	return t
}

// is reports whether the next token is the keyword or punctuation s.
func (p *parser) is(s string) bool {
	t := p.peek()
	switch t.kind {
	case tIdent:
		return strings.EqualFold(t.text, s)
	case tPunct, tOp:
		return t.text == s
	}
	return false
}

func (p *parser) accept(s string) bool {
	if p.is(s) {
		p.pos++
		return true
	}
	return false
}

func (p *parser) expect(s string) error {
	if !p.accept(s) {
		return fmt.Errorf("expected %q, found %q", s, p.peek().text)
	}
	return nil
}

// parseExpr parses a whole expression (nothing may follow it).
func (p *parser) parseExpr() (string, error) {
	s, err := p.or()
	if err != nil {
		return "", err
	}
	if p.written > maxExprSQL {
		return "", ErrExprTooLong
	}
	if p.peek().kind != tEOF {
		return "", fmt.Errorf("unexpected %q", p.peek().text)
	}
	return s, nil
}

func (p *parser) or() (string, error) {
	if err := p.enter(); err != nil {
		return "", err
	}
	defer p.leave()
	return p.logical("OR", p.and)
}

func (p *parser) and() (string, error) { return p.logical("AND", p.not) }

// logical parses operands joined by the keyword op (AND or OR), left associative.
func (p *parser) logical(op string, operand func() (string, error)) (string, error) {
	l, err := operand()
	if err != nil {
		return "", err
	}
	var links []string
	defer p.restore(p.depth)
	for p.rules.operators && p.accept(op) {
		links = append(links, "")
		if err := p.enter(); err != nil {
			return "", err
		}
		r, err := operand()
		if err != nil {
			return "", err
		}
		links[len(links)-1] = p.cat(" ", op, " ", r, ")")
	}
	return p.chain(l, links), nil
}

func (p *parser) not() (string, error) {
	if p.rules.operators && p.accept("NOT") {
		if err := p.enter(); err != nil {
			return "", err
		}
		defer p.leave()
		x, err := p.not()
		if err != nil {
			return "", err
		}
		return p.cat("(NOT ", x, ")"), nil
	}
	return p.is_()
}

func (p *parser) is_() (string, error) {
	x, err := p.binary(3)
	if err != nil {
		return "", err
	}
	var links []string
	defer p.restore(p.depth)
	for p.rules.operators && p.accept("IS") {
		links = append(links, "")
		if err := p.enter(); err != nil {
			return "", err
		}
		neg := p.accept("NOT")
		if err := p.expect("NULL"); err != nil {
			return "", err
		}
		if neg {
			links[len(links)-1] = " IS NOT NULL)"
		} else {
			links[len(links)-1] = " IS NULL)"
		}
	}
	return p.chain(x, links), nil
}

// binary parses operators of precedence min and above (left associative).
func (p *parser) binary(min int) (string, error) {
	l, err := p.unary()
	if err != nil {
		return "", err
	}
	var links []string
	defer p.restore(p.depth)
	for p.rules.operators {
		t := p.peek()
		prec, ok := binaryOps[t.text]
		if t.kind != tOp || !ok || prec < min {
			break
		}
		p.next()
		links = append(links, "")
		if err := p.enter(); err != nil {
			return "", err
		}
		if prec == 3 && (p.is("ANY") || p.is("ALL")) {
			// x = ANY (array)
			q := strings.ToUpper(p.next().text)
			if err := p.expect("("); err != nil {
				return "", err
			}
			r, err := p.or()
			if err != nil {
				return "", err
			}
			if err := p.expect(")"); err != nil {
				return "", err
			}
			links[len(links)-1] = p.cat(" OPERATOR(pg_catalog.", t.text, ") ", q, " (", r, "))")
			continue
		}
		r, err := p.binary(prec + 1)
		if err != nil {
			return "", err
		}
		links[len(links)-1] = p.cat(" OPERATOR(pg_catalog.", t.text, ") ", r, ")")
	}
	return p.chain(l, links), nil
}

func (p *parser) unary() (string, error) {
	if p.is("-") {
		p.next()
		if t := p.peek(); t.kind == tNumber {
			p.next()
			return p.casts(p.cat("(-", t.text, ")"))
		}
		if !p.rules.operators {
			return "", errors.New("unary minus is accepted only before a number")
		}
		if err := p.enter(); err != nil {
			return "", err
		}
		defer p.leave()
		x, err := p.unary()
		if err != nil {
			return "", err
		}
		return p.cat("(OPERATOR(pg_catalog.-) ", x, ")"), nil
	}
	x, err := p.primary()
	if err != nil {
		return "", err
	}
	return p.casts(x)
}

// casts parses any number of ::type after x.
func (p *parser) casts(x string) (string, error) {
	for n := 0; p.accept("::"); n++ {
		if n == 2 {
			return "", errors.New("more than two casts in a row")
		}
		t, err := p.typ(p)
		if err != nil {
			return "", err
		}
		x = p.cat("CAST(", x, " AS ", t, ")")
	}
	return x, nil
}

// sqlValueFuncs are the SQL clock keywords a default may use.
var sqlValueFuncs = map[string]bool{
	"CURRENT_TIMESTAMP": true, "CURRENT_DATE": true, "CURRENT_TIME": true, "LOCALTIMESTAMP": true, "LOCALTIME": true,
}

// sqlVariadic are SQL constructs that look like functions.
var sqlVariadic = map[string]bool{"COALESCE": true, "GREATEST": true, "LEAST": true, "NULLIF": true}

func (p *parser) primary() (string, error) {
	if err := p.enter(); err != nil {
		return "", err
	}
	defer p.leave()
	t := p.next()
	switch t.kind {
	case tString:
		return quoteString(t.text), nil
	case tNumber:
		return t.text, nil
	case tPunct:
		if t.text != "(" {
			break
		}
		x, err := p.or()
		if err != nil {
			return "", err
		}
		if err := p.expect(")"); err != nil {
			return "", err
		}
		return p.cat("(", x, ")"), nil
	case tQIdent:
		return p.column(t.text)
	case tIdent:
		up := strings.ToUpper(t.text)
		switch {
		case up == "TRUE" || up == "FALSE" || up == "NULL":
			return up, nil
		case up == "VALUE" && p.rules.value:
			return "VALUE", nil
		case sqlValueFuncs[up] && p.rules.clock:
			return up, nil
		case up == "ARRAY" && p.is("["):
			p.next()
			var elems []string
			for !p.is("]") {
				if len(elems) > 0 {
					if err := p.expect(","); err != nil {
						return "", err
					}
				}
				e, err := p.or()
				if err != nil {
					return "", err
				}
				elems = append(elems, e)
			}
			p.next()
			return p.cat("ARRAY[", strings.Join(elems, ", "), "]"), nil
		case p.is("("):
			return p.call(t.text)
		case p.is("."):
			// Only pg_catalog.f(…) is a qualified name the subset reads.
			p.next()
			f := p.next()
			if !strings.EqualFold(t.text, "pg_catalog") || f.kind != tIdent || !p.is("(") {
				return "", fmt.Errorf("qualified name %s.%s is not accepted", t.text, f.text)
			}
			return p.call(f.text)
		}
		return p.column(strings.ToLower(t.text))
	}
	return "", fmt.Errorf("unexpected %q", t.text)
}

// call parses the arguments of function name (the next token is "(").
func (p *parser) call(name string) (string, error) {
	lower, upper := strings.ToLower(name), strings.ToUpper(name)
	variadic := sqlVariadic[upper] && p.rules.operators
	if !p.rules.funcs[lower] && !variadic {
		return "", fmt.Errorf("function %s is not accepted", name)
	}
	p.next() // (
	var args []string
	for !p.is(")") {
		if len(args) > 0 {
			if err := p.expect(","); err != nil {
				return "", err
			}
		}
		a, err := p.or()
		if err != nil {
			return "", err
		}
		args = append(args, a)
		if len(args) > 8 {
			return "", errors.New("too many arguments")
		}
	}
	p.next() // )
	if variadic {
		return p.cat(upper, "(", strings.Join(args, ", "), ")"), nil
	}
	return p.cat("pg_catalog.", lower, "(", strings.Join(args, ", "), ")"), nil
}

// column accepts a reference to one of the table's columns.
func (p *parser) column(name string) (string, error) {
	if !p.rules.columns[name] {
		return "", fmt.Errorf("%q is not accepted here", name)
	}
	return quoteIdent(name), nil
}
