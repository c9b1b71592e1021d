package ddl

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
)

// A partitioned table's key and its partitions' bounds come from the peer as SQL
// text (pg_get_partkeydef, pg_get_expr of relpartbound). Like expressions they are
// never pasted: a strict grammar reads them and the SQL is written anew.
//
//	key:   RANGE | LIST | HASH ( element [, element …] )
//	       element: a column of the table, or an expression the generation-expression
//	       rules accept (allowlisted immutable functions and operators over columns)
//	bound: DEFAULT
//	       FOR VALUES FROM ( value, … ) TO ( value, … )    value: a constant, MINVALUE, MAXVALUE
//	       FOR VALUES IN ( constant, … )
//	       FOR VALUES WITH ( MODULUS n, REMAINDER r )
//
// A constant is read by the expression rewriter with nothing allowed but constants and
// casts to types that exist here: no function, column, operator or subquery.

// maxPartitionKeys is PostgreSQL's limit on the columns of a partition key.
const maxPartitionKeys = 32

// partitionKey is a partition key rewritten as SQL.
type partitionKey struct {
	strategy string // RANGE, LIST or HASH
	sql      string // "RANGE ("payment_date")"
	keys     int
}

// partitionKey rewrites a key as pg_get_partkeydef prints it; columns are the
// columns a key may read.
func (tc *typeChecker) partitionKey(text string, columns map[string]bool) (partitionKey, error) {
	toks, err := tokenize(text)
	if err != nil {
		return partitionKey{}, err
	}
	p := &parser{toks: toks, rules: generatedRules(columns), typ: tc.parse}
	t := p.next()
	k := partitionKey{strategy: strings.ToUpper(t.text)}
	if t.kind != tIdent || (k.strategy != "RANGE" && k.strategy != "LIST" && k.strategy != "HASH") {
		return partitionKey{}, fmt.Errorf("partition strategy %q is not RANGE, LIST or HASH", t.text)
	}
	if err := p.expect("("); err != nil {
		return partitionKey{}, err
	}
	var parts []string
	for {
		if len(parts) == maxPartitionKeys {
			return partitionKey{}, fmt.Errorf("more than %d key columns", maxPartitionKeys)
		}
		part, err := p.keyElement()
		if err != nil {
			return partitionKey{}, err
		}
		parts = append(parts, part)
		if !p.accept(",") {
			break
		}
	}
	if err := p.expect(")"); err != nil {
		return partitionKey{}, err
	}
	if p.peek().kind != tEOF {
		return partitionKey{}, fmt.Errorf("unexpected %q after the key", p.peek().text)
	}
	if p.written > maxExprSQL {
		return partitionKey{}, ErrExprTooLong
	}
	if k.strategy == "LIST" && len(parts) != 1 {
		return partitionKey{}, errors.New("a list partition key has one column")
	}
	k.keys = len(parts)
	k.sql = k.strategy + " (" + strings.Join(parts, ", ") + ")"
	return k, nil
}

// keyElement reads one element of a partition key: a column of the table, or an
// expression (written in parentheses). An operator class or collation is refused.
func (p *parser) keyElement() (string, error) {
	t, after := p.peek(), p.toks[min(p.pos+1, len(p.toks)-1)]
	if (t.kind == tIdent || t.kind == tQIdent) && after.kind == tPunct && (after.text == "," || after.text == ")") {
		p.next()
		name := t.text
		if t.kind == tIdent {
			name = strings.ToLower(name)
		}
		return p.column(name)
	}
	x, err := p.or()
	if err != nil {
		return "", err
	}
	return p.cat("(", x, ")"), nil
}

// partitionBound rewrites a partition's bound, as pg_get_expr prints it, for a key k.
func (tc *typeChecker) partitionBound(text string, k partitionKey) (string, error) {
	toks, err := tokenize(text)
	if err != nil {
		return "", err
	}
	// Constants only: no functions, columns or operators; casts to existing types.
	p := &parser{toks: toks, rules: exprRules{}, typ: tc.parse}
	var sql string
	switch {
	case p.accept("DEFAULT"):
		if k.strategy == "HASH" {
			return "", errors.New("a hash-partitioned table has no default partition")
		}
		sql = "DEFAULT"
	case p.accept("FOR"):
		if err := p.expect("VALUES"); err != nil {
			return "", err
		}
		switch {
		case k.strategy == "RANGE" && p.accept("FROM"):
			from, err := p.boundValues(k.keys, true)
			if err != nil {
				return "", err
			}
			if err := p.expect("TO"); err != nil {
				return "", err
			}
			to, err := p.boundValues(k.keys, true)
			if err != nil {
				return "", err
			}
			sql = "FOR VALUES FROM (" + from + ") TO (" + to + ")"
		case k.strategy == "LIST" && p.accept("IN"):
			in, err := p.boundValues(-1, false)
			if err != nil {
				return "", err
			}
			sql = "FOR VALUES IN (" + in + ")"
		case k.strategy == "HASH" && p.accept("WITH"):
			if err := p.expect("("); err != nil {
				return "", err
			}
			modulus, err := p.hashPart("MODULUS")
			if err != nil {
				return "", err
			}
			if err := p.expect(","); err != nil {
				return "", err
			}
			remainder, err := p.hashPart("REMAINDER")
			if err != nil {
				return "", err
			}
			if err := p.expect(")"); err != nil {
				return "", err
			}
			sql = "FOR VALUES WITH (MODULUS " + modulus + ", REMAINDER " + remainder + ")"
		default:
			return "", fmt.Errorf("not a bound of a %s partition", strings.ToLower(k.strategy))
		}
	default:
		return "", fmt.Errorf("expected DEFAULT or FOR VALUES, found %q", p.peek().text)
	}
	if p.peek().kind != tEOF {
		return "", fmt.Errorf("unexpected %q after the bound", p.peek().text)
	}
	if p.written > maxExprSQL {
		return "", ErrExprTooLong
	}
	return sql, nil
}

// boundValues reads a parenthesized list of constants: exactly n of them (n ≥ 0) or
// at least one (n < 0), MINVALUE and MAXVALUE allowed when unbounded.
func (p *parser) boundValues(n int, unbounded bool) (string, error) {
	if err := p.expect("("); err != nil {
		return "", err
	}
	var vals []string
	for {
		switch {
		case unbounded && p.accept("MINVALUE"):
			vals = append(vals, "MINVALUE")
		case unbounded && p.accept("MAXVALUE"):
			vals = append(vals, "MAXVALUE")
		default:
			v, err := p.or()
			if err != nil {
				return "", err
			}
			vals = append(vals, v)
		}
		if !p.accept(",") {
			break
		}
	}
	if err := p.expect(")"); err != nil {
		return "", err
	}
	if n >= 0 && len(vals) != n {
		return "", fmt.Errorf("%d values for a key of %d columns", len(vals), n)
	}
	return strings.Join(vals, ", "), nil
}

// hashPart reads "word n", n a non-negative integer.
func (p *parser) hashPart(word string) (string, error) {
	if err := p.expect(word); err != nil {
		return "", err
	}
	t := p.next()
	if t.kind != tNumber || strings.Trim(t.text, "0123456789") != "" || len(t.text) > 9 {
		return "", fmt.Errorf("%s %q is not an integer", strings.ToLower(word), t.text)
	}
	return t.text, nil
}

// partitionPlan is what Create makes of a definition's partitioning: the key and the
// partitions it recreates, their bounds rewritten.
type partitionPlan struct {
	key        partitionKey
	partitions []catalog.Partition // Bound rewritten
}

// planPartitions reads sch's partitioning. Nil, with a warning, when the key is
// refused or every partition is (the table is then created unpartitioned, its rows
// all in it); a partition refused — its bound, its name, or a table of that name
// already here — is left out with a warning (rows of its range then have no place
// unless a default partition takes them).
func planPartitions(ctx context.Context, q Exec, tc *typeChecker, sch *catalog.Schema, columns map[string]bool, res *Result) (*partitionPlan, error) {
	spec := sch.Partition
	if spec == nil {
		return nil, nil
	}
	key, err := tc.partitionKey(spec.Key, columns)
	if err != nil {
		res.warn("partition key not recreated (%v); the table is created unpartitioned", err)
		return nil, nil
	}
	plan := &partitionPlan{key: key}
	seen := map[string]bool{sch.Name: true}
	for _, part := range spec.Partitions {
		if err := checkPartitionName(part.Name); err != nil {
			res.warn("partition %q not created: %v", part.Name, err)
			continue
		}
		if seen[part.Name] {
			res.warn("partition %q not created: the name is taken by the table or another partition", part.Name)
			continue
		}
		seen[part.Name] = true
		bound, err := tc.partitionBound(part.Bound, key)
		if err != nil {
			res.warn("partition %q not created: bound not recreated (%v)", part.Name, err)
			continue
		}
		var exists bool
		if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relname = $2)`, sch.Schema, part.Name).Scan(&exists); err != nil {
			return nil, fmt.Errorf("partition %s: %w", part.Name, err)
		}
		if exists {
			res.warn("partition %q not created: %s already exists here", part.Name, pgx.Identifier{sch.Schema, part.Name}.Sanitize())
			continue
		}
		plan.partitions = append(plan.partitions, catalog.Partition{Name: part.Name, Bound: bound})
	}
	if len(spec.Partitions) > 0 && len(plan.partitions) == 0 {
		res.warn("no partition could be created; the table is created unpartitioned")
		return nil, nil
	}
	return plan, nil
}

// checkPartitionName refuses a partition name a receiver does not create: one
// PostgreSQL would not keep as given, or a kit table's.
func checkPartitionName(name string) error {
	switch {
	case name == "" || len(name) > 63 || strings.IndexByte(name, 0) >= 0:
		return errors.New("not a name PostgreSQL keeps as given")
	case catalog.IsSecretTable(name):
		return errors.New("the name is reserved for the kit")
	}
	return nil
}

// createPartitions creates plan's partitions of the table target, beside it.
func createPartitions(ctx context.Context, q Exec, target catalog.Ident, plan *partitionPlan) error {
	for _, part := range plan.partitions {
		sql := "CREATE TABLE " + pgx.Identifier{target.Schema, part.Name}.Sanitize() + " PARTITION OF " + target.Quoted() + " " + part.Bound
		if _, err := q.Exec(ctx, sql, oneStatement); err != nil {
			return fmt.Errorf("partition %s: %w", part.Name, err)
		}
	}
	return nil
}
