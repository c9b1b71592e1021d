package mask

import (
	"context"
	"errors"
	"fmt"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
)

// Normalize checks s's shape and then every rule against the tables of the
// database q reaches, as they are now, and returns s with each table named as
// the sender lists it (catalog.Resolve: "public.users" becomes "users"): a rule
// naming a table must name one that exists and a column of it the rule fits; a
// "*" rule must fit every public table with its column. The first rule that does
// not fit is returned as a *RuleError (or, for an unknown table, an error
// matching catalog.ErrUnknownTable).
func Normalize(ctx context.Context, q Querier, s Set) (Set, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	out := make(Set, 0, len(s))
	var tables []string
	seen := map[string]bool{}
	for _, r := range s {
		if r.Table != AnyTable {
			id, err := catalog.Resolve(ctx, q, r.Table)
			if err != nil {
				return nil, fmt.Errorf("mask rule %q: %w", Format(r), err)
			}
			r.Table = id.String()
			if !seen[r.Table] {
				seen[r.Table] = true
				tables = append(tables, r.Table)
			}
		} else {
			rows, err := q.Query(ctx, `SELECT c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
				WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND a.attname = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1`, r.Column)
			if err != nil {
				return nil, fmt.Errorf("mask rule %q: tables with the column: %w", Format(r), err)
			}
			var names []string
			for rows.Next() {
				var n string
				if err := rows.Scan(&n); err != nil {
					rows.Close()
					return nil, fmt.Errorf("mask rule %q: %w", Format(r), err)
				}
				names = append(names, n)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, fmt.Errorf("mask rule %q: %w", Format(r), err)
			}
			for _, n := range names {
				if !catalog.IsSecretTable(n) && !seen[n] {
					seen[n] = true
					tables = append(tables, n)
				}
			}
		}
		out = append(out, r)
	}
	if err := out.Validate(); err != nil {
		return nil, err // two spellings of one table's column
	}
	for _, t := range tables {
		sch, err := catalog.GetSchema(ctx, q, t)
		if errors.Is(err, catalog.ErrUnknownTable) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("mask rules: %w", err)
		}
		if err := out.Check(ctx, q, sch); err != nil {
			return nil, err
		}
	}
	return out, nil
}
