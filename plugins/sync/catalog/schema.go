package catalog

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// The table definition types are syncapi's: they travel as JSON between sites and
// to other modules, and this package fills them from pg_catalog.
type (
	// Schema is a table's definition (syncapi.Schema).
	Schema = syncapi.Schema
	// Column is one column (syncapi.Column).
	Column = syncapi.Column
	// Unique is a unique constraint (syncapi.Unique).
	Unique = syncapi.Unique
	// ForeignKey is a foreign key constraint (syncapi.ForeignKey).
	ForeignKey = syncapi.ForeignKey
	// Enum is an enum type a column uses (syncapi.Enum).
	Enum = syncapi.Enum
	// Domain is a domain type a column uses (syncapi.Domain).
	Domain = syncapi.Domain
	// PartitionSpec is how a partitioned table is partitioned (syncapi.PartitionSpec).
	PartitionSpec = syncapi.PartitionSpec
	// Partition is one partition of a partitioned table (syncapi.Partition).
	Partition = syncapi.Partition
)

// IdentOf returns the identifier of the table s defines.
func IdentOf(s *Schema) Ident { return Ident{Schema: s.Schema, Name: s.Name} }

// GetSchema reads a table's definition.
func GetSchema(ctx context.Context, q Querier, name string) (*Schema, error) {
	id, err := Resolve(ctx, q, name)
	if err != nil {
		return nil, err
	}
	return schemaOf(ctx, q, id)
}

// GetSchemaIn reads the definition of the table named exactly name in schema (see
// ResolveIn: a dot in name is part of the name).
func GetSchemaIn(ctx context.Context, q Querier, schema, name string) (*Schema, error) {
	id, err := ResolveIn(ctx, q, schema, name)
	if err != nil {
		return nil, err
	}
	return schemaOf(ctx, q, id)
}

// schemaOf reads the definition of the resolved table id.
func schemaOf(ctx context.Context, q Querier, id Ident) (*Schema, error) {
	s := &Schema{Schema: id.Schema, Name: id.Name, PrimaryKey: []string{}, Unique: []Unique{}, ForeignKeys: []ForeignKey{}}
	rows, err := q.Query(ctx, `
SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
       CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
       a.attidentity::text, CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) ELSE '' END,
       coalesce(format_type(bt.typbasetype, bt.typtypmod), format_type(a.atttypid, a.atttypmod)),
       t.typtype::text, t.oid, coalesce(et.typtype::text, ''), coalesce(et.oid, 0)
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type bt ON bt.oid = a.atttypid AND bt.typtype = 'd'
LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`, id.OID)
	if err != nil {
		return nil, fmt.Errorf("schema of %s: %w", id, err)
	}
	var used []uint32 // enum and domain types the columns use
	for rows.Next() {
		var c Column
		var def *string
		var identity, typKind, elemKind string
		var typOID, elemOID uint32
		if err := rows.Scan(&c.Name, &c.Type, &c.Nullable, &def, &identity, &c.Generated, &c.BaseType,
			&typKind, &typOID, &elemKind, &elemOID); err != nil {
			rows.Close()
			return nil, fmt.Errorf("schema of %s: %w", id, err)
		}
		c.Default = def
		switch identity {
		case "a":
			c.Identity = "always"
		case "d":
			c.Identity = "by_default"
		}
		c.HasDefault = def != nil || c.Identity != ""
		switch {
		case typKind == "e" || typKind == "d":
			used = append(used, typOID)
		case elemKind == "e" || elemKind == "d":
			used = append(used, elemOID)
		}
		s.Columns = append(s.Columns, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("schema of %s: %w", id, err)
	}

	// Constraints: primary key, unique, foreign keys.
	crows, err := q.Query(ctx, `
SELECT con.conname, con.contype::text,
       array(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i),
       coalesce(rn.nspname, ''), coalesce(rc.relname, ''),
       array(SELECT a.attname FROM unnest(coalesce(con.confkey, '{}')) WITH ORDINALITY k(n, i) JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i),
       pg_get_constraintdef(con.oid)
FROM pg_constraint con
LEFT JOIN pg_class rc ON rc.oid = con.confrelid
LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE con.conrelid = $1 AND con.contype IN ('p', 'u', 'f')
ORDER BY con.contype, con.conname`, id.OID)
	if err != nil {
		return nil, fmt.Errorf("constraints of %s: %w", id, err)
	}
	for crows.Next() {
		var name, kind, refSchema, refTable, def string
		var cols, refCols []string
		if err := crows.Scan(&name, &kind, &cols, &refSchema, &refTable, &refCols, &def); err != nil {
			crows.Close()
			return nil, fmt.Errorf("constraints of %s: %w", id, err)
		}
		switch kind {
		case "p":
			s.PrimaryKey = cols
		case "u":
			s.Unique = append(s.Unique, Unique{Name: name, Columns: cols})
		case "f":
			s.ForeignKeys = append(s.ForeignKeys, ForeignKey{Name: name, Columns: cols, RefSchema: refSchema, RefTable: refTable, RefColumns: refCols, Definition: def})
		}
	}
	crows.Close()
	if err := crows.Err(); err != nil {
		return nil, fmt.Errorf("constraints of %s: %w", id, err)
	}
	for i := range s.Columns {
		for _, k := range s.PrimaryKey {
			if s.Columns[i].Name == k {
				s.Columns[i].PrimaryKey = true
			}
		}
	}

	seen := map[uint32]bool{}
	for _, oid := range used {
		if err := addType(ctx, q, s, oid, seen); err != nil {
			return nil, err
		}
	}
	if s.Partition, err = partitionOf(ctx, q, id); err != nil {
		return nil, err
	}
	return s, nil
}

// partitionOf reads how the table id is partitioned — its key and its partitions
// (direct children) with their bounds, by name — or returns nil for a plain table.
func partitionOf(ctx context.Context, q Querier, id Ident) (*PartitionSpec, error) {
	var key *string
	if err := q.QueryRow(ctx, `SELECT pg_get_partkeydef($1)`, id.OID).Scan(&key); err != nil {
		return nil, fmt.Errorf("partition key of %s: %w", id, err)
	}
	if key == nil {
		return nil, nil
	}
	spec := &PartitionSpec{Key: *key, Partitions: []Partition{}}
	rows, err := q.Query(ctx, `SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1 AND c.relispartition AND c.relkind IN ('r', 'p') ORDER BY c.relname`, id.OID)
	if err != nil {
		return nil, fmt.Errorf("partitions of %s: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var p Partition
		if err := rows.Scan(&p.Name, &p.Bound); err != nil {
			return nil, fmt.Errorf("partitions of %s: %w", id, err)
		}
		spec.Partitions = append(spec.Partitions, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("partitions of %s: %w", id, err)
	}
	return spec, nil
}

// addType appends the enum or domain oid to s.Enums or s.Domains, after the types it
// is built on: a domain's base type when that is an enum or a domain (or an array of
// one), recursively, so every type can be created before the ones that use it.
func addType(ctx context.Context, q Querier, s *Schema, oid uint32, seen map[uint32]bool) error {
	if seen[oid] {
		return nil
	}
	seen[oid] = true
	var kind, schema, name string
	var base uint32
	// base: the domain's base type when it is an enum or domain, else the element
	// type of an array base when that is one.
	err := q.QueryRow(ctx, `SELECT t.typtype::text, n.nspname, t.typname,
			coalesce(CASE WHEN b.typtype IN ('e', 'd') THEN b.oid WHEN be.typtype IN ('e', 'd') THEN be.oid END, 0)
		FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
		LEFT JOIN pg_type b ON b.oid = t.typbasetype AND t.typtype = 'd'
		LEFT JOIN pg_type be ON be.oid = b.typelem AND b.typcategory = 'A'
		WHERE t.oid = $1`, oid).Scan(&kind, &schema, &name, &base)
	if err != nil {
		return fmt.Errorf("type %d: %w", oid, err)
	}
	if kind == "e" {
		e := Enum{Schema: schema, Name: name}
		if err := q.QueryRow(ctx, `SELECT array(SELECT enumlabel::text FROM pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder)`,
			oid).Scan(&e.Labels); err != nil {
			return fmt.Errorf("enum %s.%s: %w", schema, name, err)
		}
		s.Enums = append(s.Enums, e)
		return nil
	}
	if base != 0 {
		if err := addType(ctx, q, s, base, seen); err != nil {
			return err
		}
	}
	d := Domain{Schema: schema, Name: name}
	err = q.QueryRow(ctx, `SELECT format_type(t.typbasetype, t.typtypmod), t.typnotnull, t.typdefault,
			array(SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c WHERE c.contypid = t.oid AND c.contype = 'c' ORDER BY c.conname)
		FROM pg_type t WHERE t.oid = $1`, oid).Scan(&d.BaseType, &d.NotNull, &d.Default, &d.Checks)
	if err != nil {
		return fmt.Errorf("domain %s.%s: %w", schema, name, err)
	}
	s.Domains = append(s.Domains, d)
	return nil
}

// QuotedColumns returns the quoted, comma-separated names of cols.
func QuotedColumns(cols []Column) string {
	var b []byte
	for i, c := range cols {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, pgx.Identifier{c.Name}.Sanitize()...)
	}
	return string(b)
}

// QuoteNames returns the quoted, comma-separated names.
func QuoteNames(names []string) string {
	var b []byte
	for i, n := range names {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, pgx.Identifier{n}.Sanitize()...)
	}
	return string(b)
}
