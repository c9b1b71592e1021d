// Package catalog answers questions about a database's tables from pg_catalog: which
// user tables exist and how many rows they hold, and each table's full definition
// (columns with exact types, keys, unique constraints, foreign keys, the enums and
// domains it uses, how it is partitioned). A partition is never listed as a table of
// its own: its rows are read through its parent. Every table name is resolved against the catalog first; SQL only
// ever sees the resolved, quoted identifier.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// Querier is what this package needs of a connection, pool or transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// ErrUnknownTable is returned (wrapped) for a name that is not a user table.
var ErrUnknownTable = errors.New("unknown table")

// Ident is a table resolved against the catalog.
type Ident struct {
	Schema string
	Name   string
	OID    uint32
}

// Quoted returns the schema-qualified, quoted name, safe to put in SQL.
func (t Ident) Quoted() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// String is the name as users write it: "name" in public, "schema.name" elsewhere.
func (t Ident) String() string {
	if t.Schema == "public" {
		return t.Name
	}
	return t.Schema + "." + t.Name
}

// systemSchemas are never listed or resolved.
const systemSchemas = `('pg_catalog', 'information_schema', 'pg_toast')`

// Resolve finds a user table by name: an exact name in the public schema, or
// "schema.name". Names are matched exactly (case, quotes, spaces and all), never
// interpreted as SQL. The kit's own tables (IsSecretTable) are not user tables: they
// resolve to ErrUnknownTable, so nothing built on Resolve (schemas, counts, exports,
// imports) ever touches them.
func Resolve(ctx context.Context, q Querier, name string) (Ident, error) {
	candidates := [][2]string{{"public", name}}
	if s, n, ok := strings.Cut(name, "."); ok {
		candidates = append(candidates, [2]string{s, n})
	}
	for _, c := range candidates {
		id, err := ResolveIn(ctx, q, c[0], c[1])
		if !errors.Is(err, ErrUnknownTable) {
			return id, err
		}
	}
	return Ident{}, fmt.Errorf("%w: %q", ErrUnknownTable, name)
}

// ResolveIn finds the user table named exactly name in schema. Unlike Resolve it never
// reads a dot in name as a schema separator: a receiver writing the table a peer
// listed as "a.b" looks up public."a.b", never a.b. Kit tables and system schemas
// resolve to ErrUnknownTable, as with Resolve.
func ResolveIn(ctx context.Context, q Querier, schema, name string) (Ident, error) {
	if IsSecretTable(name) {
		return Ident{}, fmt.Errorf("%w: %q", ErrUnknownTable, name)
	}
	var id Ident
	err := q.QueryRow(ctx, `SELECT n.nspname, c.relname, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') AND n.nspname NOT IN `+systemSchemas,
		schema, name).Scan(&id.Schema, &id.Name, &id.OID)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Ident{}, fmt.Errorf("%w: %s", ErrUnknownTable, pgx.Identifier{schema, name}.Sanitize())
	case err != nil:
		return Ident{}, fmt.Errorf("resolve table %s: %w", pgx.Identifier{schema, name}.Sanitize(), err)
	}
	return id, nil
}

// TextSettings is a SELECT that fixes, for the current transaction, every setting
// that changes the text of a value or how text parses (date field order, interval
// style, float digits, bytea output, the zone of a time without offset). The
// exporter and the importer both run it, so the two ends agree whatever either
// database's defaults.
const TextSettings = `SELECT set_config('DateStyle', 'ISO, MDY', true), set_config('IntervalStyle', 'postgres', true),
	set_config('TimeZone', 'UTC', true), set_config('extra_float_digits', '3', true), set_config('bytea_output', 'hex', true)`

// Table is one entry of ListTables (defined in syncapi, where callers of the
// list_tables operation and the wire protocol read it).
type Table = syncapi.Table

// ListOptions select the tables ListTables returns.
type ListOptions struct {
	// Schemas to list; default ["public"].
	Schemas []string
	// Exclude lists table names never to list (as Resolve accepts them).
	Exclude []string
	// IncludeKit is kept for compatibility and changes nothing: every kit table
	// (fiberkit_*) may hold secrets, so none is ever listed (see IsSecretTable).
	IncludeKit bool
	// Estimate gives the planner's estimate of each table's rows (pg_class.reltuples,
	// summed over the partitions of a partitioned table) instead of counting them,
	// which is quicker on large tables but stale between ANALYZEs: a table never
	// analysed is counted all the same. Table.Exact says which rows were counted.
	Estimate bool
	// Exact counts every table with count(*), as ListTables does unless Estimate is
	// set; it wins over Estimate. Kept for callers from before counting was the default.
	Exact bool
}

// KitPrefix starts the name of every table the kit and its plugins create.
const KitPrefix = "fiberkit_"

// IsSecretTable reports whether a table (by name, in any schema) is one the kit keeps
// to itself: every table named fiberkit_*. They hold settings and their secrets,
// revisions, the audit log, CSRF tokens (fiberkit_csrf), migration records and the
// Sync plugin's connection token hashes, session codes, approvals, attempts, remotes
// and transfer history. The rule is by prefix rather than by a list so a table a
// later version adds is kept in too: such tables are never listed, resolved, read,
// written or created by sync, whatever ListOptions.IncludeKit says.
func IsSecretTable(name string) bool {
	return strings.HasPrefix(name, KitPrefix)
}

// ListTables returns the user tables with row counts, sorted by name. The counts are
// exact (count(*)) unless o.Estimate asks for the planner's estimates; every table
// is counted by one statement, whatever their number.
func ListTables(ctx context.Context, q Querier, o ListOptions) ([]Table, error) {
	schemas := o.Schemas
	if len(schemas) == 0 {
		schemas = []string{"public"}
	}
	rows, err := q.Query(ctx, `SELECT n.nspname, c.relname, CASE WHEN c.relkind = 'p' THEN
			(SELECT coalesce(sum(greatest(pc.reltuples, 0)), 0) FROM pg_partition_tree(c.oid) pt JOIN pg_class pc ON pc.oid = pt.relid WHERE pt.isleaf)
			ELSE greatest(c.reltuples, 0) END::bigint
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY($1) AND n.nspname NOT IN `+systemSchemas+`
		ORDER BY n.nspname, c.relname`, schemas)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	excluded := map[string]bool{}
	for _, e := range o.Exclude {
		excluded[e] = true
	}
	out := []Table{}
	var count []int      // the entries of out to count
	var countIDs []Ident // their tables
	exact := o.Exact || !o.Estimate
	for rows.Next() {
		var t Table
		if err := rows.Scan(&t.Schema, &t.Name, &t.Rows); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list tables: %w", err)
		}
		id := Ident{Schema: t.Schema, Name: t.Name}
		t.Name = id.String()
		if excluded[t.Name] || IsSecretTable(id.Name) {
			continue
		}
		// The estimate is 0 (-1 before greatest) for never-analysed tables: count those.
		if exact || t.Rows == 0 {
			count = append(count, len(out))
			countIDs = append(countIDs, id)
		}
		out = append(out, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	counts, err := countAll(ctx, q, countIDs)
	if err != nil {
		return nil, err
	}
	for j, i := range count {
		out[i].Rows, out[i].Exact = counts[j], true
	}
	return out, nil
}

// countAll counts the rows of each table with one statement (one per 500 tables).
func countAll(ctx context.Context, q Querier, ids []Ident) ([]int64, error) {
	const chunk = 500
	counts := make([]int64, 0, len(ids))
	for len(ids) > 0 {
		part := ids[:min(chunk, len(ids))]
		ids = ids[len(part):]
		var sql strings.Builder
		sql.WriteString("SELECT ARRAY[")
		for j, id := range part {
			if j > 0 {
				sql.WriteString(", ")
			}
			sql.WriteString("(SELECT count(*) FROM " + id.Quoted() + ")")
		}
		sql.WriteString("]::bigint[]")
		var got []int64
		if err := q.QueryRow(ctx, sql.String()).Scan(&got); err != nil {
			return nil, fmt.Errorf("count rows of %d tables: %w", len(part), err)
		}
		if len(got) != len(part) {
			return nil, fmt.Errorf("count rows of %d tables: %d counts", len(part), len(got))
		}
		counts = append(counts, got...)
	}
	return counts, nil
}

// Exists reports whether name is a user table.
func Exists(ctx context.Context, q Querier, name string) (bool, error) {
	_, err := Resolve(ctx, q, name)
	if errors.Is(err, ErrUnknownTable) {
		return false, nil
	}
	return err == nil, err
}

// Count returns the exact number of rows in a table.
func Count(ctx context.Context, q Querier, name string) (int64, error) {
	id, err := Resolve(ctx, q, name)
	if err != nil {
		return 0, err
	}
	return countIdent(ctx, q, id)
}

// CountIn returns the exact number of rows in the table named exactly name in schema
// (see ResolveIn).
func CountIn(ctx context.Context, q Querier, schema, name string) (int64, error) {
	id, err := ResolveIn(ctx, q, schema, name)
	if err != nil {
		return 0, err
	}
	return countIdent(ctx, q, id)
}

func countIdent(ctx context.Context, q Querier, id Ident) (int64, error) {
	var n int64
	if err := q.QueryRow(ctx, "SELECT count(*) FROM "+id.Quoted()).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s: %w", id, err)
	}
	return n, nil
}

// SortByDependencies orders schemas so every table comes after the tables its
// foreign keys reference (self-references and cycles are left in name order).
func SortByDependencies(tables []*Schema) []*Schema {
	byName := map[string]*Schema{}
	for _, t := range tables {
		byName[t.Schema+"."+t.Name] = t
	}
	sorted := append([]*Schema(nil), tables...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Schema+"."+sorted[i].Name < sorted[j].Schema+"."+sorted[j].Name })
	var out []*Schema
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(t *Schema)
	visit = func(t *Schema) {
		key := t.Schema + "." + t.Name
		if state[key] != 0 {
			return
		}
		state[key] = 1
		for _, fk := range t.ForeignKeys {
			if dep, ok := byName[fk.RefSchema+"."+fk.RefTable]; ok && dep != t {
				visit(dep)
			}
		}
		state[key] = 2
		out = append(out, t)
	}
	for _, t := range sorted {
		visit(t)
	}
	return out
}
