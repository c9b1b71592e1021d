package catalog

import (
	"context"
	"fmt"
)

// Sequence is a sequence some of a table's columns draw their values from.
type Sequence struct {
	// Ident is the sequence's schema, name and oid.
	Ident
	// Increment is its increment: negative for a descending sequence.
	Increment int64
	// Columns are the table's integer columns (smallint, integer, bigint, or a domain
	// over one) that draw from it, in column order.
	Columns []string
}

// Sequences returns every sequence the columns of table draw from, found through
// the dependencies PostgreSQL records rather than by reading the default's text: a
// default that names a sequence (nextval('s'), whether the sequence is owned by the
// column as serial makes it, or free-standing as pg_dump output and older schemas
// have it) depends on it, and an identity column's sequence depends on the column.
// Only integer columns are listed, as only their values can be compared with the
// sequence's; sequences with none are left out. Sorted by schema and name.
func Sequences(ctx context.Context, q Querier, table string) ([]Sequence, error) {
	id, err := Resolve(ctx, q, table)
	if err != nil {
		return nil, err
	}
	rows, err := q.Query(ctx, `
WITH uses(attnum, seq) AS (
	SELECT ad.adnum, dep.refobjid FROM pg_attrdef ad
	JOIN pg_depend dep ON dep.classid = 'pg_attrdef'::regclass AND dep.objid = ad.oid AND dep.refclassid = 'pg_class'::regclass
	WHERE ad.adrelid = $1
	UNION
	SELECT dep.refobjsubid, dep.objid FROM pg_depend dep
	WHERE dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass AND dep.refobjid = $1
		AND dep.refobjsubid > 0 AND dep.deptype = 'i'
)
SELECT n.nspname, s.relname, s.oid, ps.seqincrement, array_agg(a.attname::text ORDER BY a.attnum)
FROM uses u
JOIN pg_class s ON s.oid = u.seq AND s.relkind = 'S'
JOIN pg_namespace n ON n.oid = s.relnamespace
JOIN pg_sequence ps ON ps.seqrelid = s.oid
JOIN pg_attribute a ON a.attrelid = $1 AND a.attnum = u.attnum AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
WHERE (CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END) IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)
GROUP BY n.nspname, s.relname, s.oid, ps.seqincrement
ORDER BY n.nspname, s.relname`, id.OID)
	if err != nil {
		return nil, fmt.Errorf("sequences of %s: %w", id, err)
	}
	defer rows.Close()
	var out []Sequence
	for rows.Next() {
		var s Sequence
		if err := rows.Scan(&s.Schema, &s.Name, &s.OID, &s.Increment, &s.Columns); err != nil {
			return nil, fmt.Errorf("sequences of %s: %w", id, err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sequences of %s: %w", id, err)
	}
	return out, nil
}
