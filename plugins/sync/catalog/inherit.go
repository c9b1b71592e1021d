package catalog

import (
	"context"
	"fmt"
)

// Ancestors returns the tables id inherits from — the partitioned tables a
// partition belongs to and the parents of an inheritance child — nearest first,
// all the way up. A plain table has none. Limits that exclude a table exclude
// what hangs below it too, so they are judged on a table and its ancestors.
func Ancestors(ctx context.Context, q Querier, id Ident) ([]Ident, error) {
	return related(ctx, q, id, `WITH RECURSIVE up(oid, depth) AS (
			SELECT i.inhparent, 1 FROM pg_inherits i WHERE i.inhrelid = $1
			UNION SELECT i.inhparent, up.depth + 1 FROM pg_inherits i JOIN up ON i.inhrelid = up.oid WHERE up.depth < 64)
		SELECT n.nspname, c.relname, c.oid FROM (SELECT oid, min(depth) AS depth FROM up GROUP BY oid) u
		JOIN pg_class c ON c.oid = u.oid JOIN pg_namespace n ON n.oid = c.relnamespace
		ORDER BY u.depth, n.nspname, c.relname`)
}

// Descendants returns the tables that inherit from id — its partitions (and
// theirs) and its inheritance children — whose rows a read of id includes, in
// name order. A plain table has none.
func Descendants(ctx context.Context, q Querier, id Ident) ([]Ident, error) {
	return related(ctx, q, id, `WITH RECURSIVE down(oid, depth) AS (
			SELECT i.inhrelid, 1 FROM pg_inherits i WHERE i.inhparent = $1
			UNION SELECT i.inhrelid, down.depth + 1 FROM pg_inherits i JOIN down ON i.inhparent = down.oid WHERE down.depth < 64)
		SELECT n.nspname, c.relname, c.oid FROM (SELECT DISTINCT oid FROM down) d
		JOIN pg_class c ON c.oid = d.oid JOIN pg_namespace n ON n.oid = c.relnamespace
		ORDER BY n.nspname, c.relname`)
}

// related runs a query of the tables related to id by pg_inherits.
func related(ctx context.Context, q Querier, id Ident, sql string) ([]Ident, error) {
	oid := id.OID
	if oid == 0 {
		r, err := ResolveIn(ctx, q, id.Schema, id.Name)
		if err != nil {
			return nil, err
		}
		oid = r.OID
	}
	rows, err := q.Query(ctx, sql, oid)
	if err != nil {
		return nil, fmt.Errorf("tables related to %s: %w", id, err)
	}
	defer rows.Close()
	var out []Ident
	for rows.Next() {
		var r Ident
		if err := rows.Scan(&r.Schema, &r.Name, &r.OID); err != nil {
			return nil, fmt.Errorf("tables related to %s: %w", id, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tables related to %s: %w", id, err)
	}
	return out, nil
}
