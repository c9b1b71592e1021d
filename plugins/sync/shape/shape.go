// Package shape turns a shape's definition (syncapi.ShapeSpec: a table, a where
// clause, columns, replica mode) into a Shape checked against the catalog, and a
// captured row change into the messages the shape's log gets: an insert, update or
// delete, or a move into or out of the shape when an update changes whether the row
// matches. Registry finds the shapes a change can concern without evaluating every
// shape's where clause: shapes with an equality condition are indexed by its value.
package shape

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/shape/where"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// Error is a definition that cannot be a shape; its message says why.
type Error struct{ Msg string }

func (e *Error) Error() string { return "shape: " + e.Msg }

func errorf(format string, args ...any) error { return &Error{Msg: fmt.Sprintf(format, args...)} }

// Shape is a checked shape definition.
type Shape struct {
	// Spec is the definition as normalized: namespace and table resolved, columns
	// in table order (none still means all, so a column added later belongs to a
	// shape made again), replica set.
	Spec syncapi.ShapeSpec
	// Table is the shape's table.
	Table catalog.Ident
	// Key are the primary key's columns, in key order.
	Key []string
	// Hash identifies the definition: two specs that normalize alike share it.
	Hash string

	where    *where.Expr // nil: every row
	columns  []string    // sent, in table order
	cols     map[string]where.Column
	full     bool
	canonWh  string // the where clause as package where normalizes it (for Hash)
	whereSQL string // the where clause as SQL, params inlined (for the snapshot)
}

// Normalize checks spec against the catalog and compiles its where clause. A spec
// that is not a shape (unknown table or column, no primary key, columns without the
// key, a where clause outside what shapes support) is an *Error.
func Normalize(ctx context.Context, q catalog.Querier, spec syncapi.ShapeSpec) (*Shape, error) {
	if spec.Table == "" {
		return nil, errorf("a table is required")
	}
	var id catalog.Ident
	var err error
	if spec.Namespace != "" {
		id, err = catalog.ResolveIn(ctx, q, spec.Namespace, spec.Table)
	} else {
		id, err = catalog.Resolve(ctx, q, spec.Table)
	}
	if errors.Is(err, catalog.ErrUnknownTable) {
		return nil, &Error{Msg: err.Error()}
	}
	if err != nil {
		return nil, err
	}
	sch, err := catalog.GetSchemaIn(ctx, q, id.Schema, id.Name)
	if err != nil {
		return nil, err
	}
	if len(sch.PrimaryKey) == 0 {
		return nil, errorf("table %s has no primary key: a shape's rows are identified by it", id)
	}
	colls, dbColl, err := collations(ctx, q, id)
	if err != nil {
		return nil, err
	}
	s := &Shape{Table: id, Key: sch.PrimaryKey, cols: map[string]where.Column{}}
	var all []string
	var wcols []where.Column
	for _, c := range sch.Columns {
		wc := where.Column{Name: c.Name, Type: c.BaseType, Collation: colls[c.Name]}
		s.cols[c.Name] = wc
		wcols = append(wcols, wc)
		all = append(all, c.Name)
	}
	cols := all
	if len(spec.Columns) > 0 {
		want := map[string]bool{}
		for _, c := range spec.Columns {
			if _, ok := s.cols[c]; !ok {
				return nil, errorf("unknown column %q in table %s", c, id)
			}
			want[c] = true
		}
		for _, k := range s.Key {
			if !want[k] {
				return nil, errorf("columns must include the primary key column %q", k)
			}
		}
		cols = nil
		for _, c := range all {
			if want[c] {
				cols = append(cols, c)
			}
		}
	}
	switch spec.Replica {
	case "", syncapi.ReplicaDefault:
		spec.Replica = syncapi.ReplicaDefault
	case syncapi.ReplicaFull:
		s.full = true
	default:
		return nil, errorf("replica must be %q or %q, not %q", syncapi.ReplicaDefault, syncapi.ReplicaFull, spec.Replica)
	}
	if strings.TrimSpace(spec.Where) != "" {
		// Values arrive from capture and snapshot with TimeZone UTC (catalog.TextSettings),
		// so a literal without an offset is UTC too.
		e, err := where.Compile(spec.Where, wcols, spec.Params, where.Options{Location: time.UTC, DefaultCollation: dbColl})
		if err != nil {
			return nil, &Error{Msg: "where: " + err.Error()}
		}
		if s.whereSQL, err = whereSQL(spec.Where, spec.Params); err != nil {
			return nil, &Error{Msg: "where: " + err.Error()}
		}
		s.where, s.canonWh = e, e.Canonical()
	} else if len(spec.Params) > 0 {
		return nil, errorf("params given without a where clause")
	} else {
		spec.Where, spec.Params = "", nil
	}
	spec.Namespace, spec.Table = id.Schema, id.Name
	if len(spec.Columns) > 0 {
		spec.Columns = cols // in table order
	}
	s.Spec, s.columns = spec, cols
	s.Hash = hashOf(id, s.canonWh, cols, spec.Replica)
	return s, nil
}

// collations returns each collatable column's collation name ("default" for the
// database's) and the database's default collation.
func collations(ctx context.Context, q catalog.Querier, id catalog.Ident) (map[string]string, string, error) {
	rows, err := q.Query(ctx, `SELECT a.attname, coalesce(co.collname, '') FROM pg_attribute a
		LEFT JOIN pg_collation co ON co.oid = a.attcollation
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped`, id.OID)
	if err != nil {
		return nil, "", fmt.Errorf("collations of %s: %w", id, err)
	}
	out := map[string]string{}
	for rows.Next() {
		var name, coll string
		if err := rows.Scan(&name, &coll); err != nil {
			return nil, "", err
		}
		out[name] = coll
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("collations of %s: %w", id, err)
	}
	var db string
	if err := q.QueryRow(ctx, `SELECT datcollate FROM pg_database WHERE datname = current_database()`).Scan(&db); err != nil {
		return nil, "", fmt.Errorf("database collation: %w", err)
	}
	return out, db, nil
}

func hashOf(id catalog.Ident, where string, cols []string, replica string) string {
	b, _ := json.Marshal([]any{id.Schema, id.Name, where, cols, replica})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:10])
}

// WhereSQL is the shape's where clause as SQL for the snapshot query, params
// inlined as quoted literals, or "" for every row.
func (s *Shape) WhereSQL() string { return s.whereSQL }

// CanonicalWhere is the where clause as normalized (two spellings of one condition
// give one text), or "".
func (s *Shape) CanonicalWhere() string { return s.canonWh }

// Full says the shape sends whole rows (replica full).
func (s *Shape) Full() bool { return s.full }

// Columns are the columns the shape sends, in table order.
func (s *Shape) Columns() []string { return s.columns }

// Matches reports whether a row (text values, nil for NULL) is in the shape.
func (s *Shape) Matches(row map[string]*string) bool {
	if s.where == nil {
		return true
	}
	return s.where.Eval(func(c string) *string { return row[c] })
}

// Equalities are the shape's indexable conditions (see Registry).
func (s *Shape) Equalities() []where.Equality {
	if s.where == nil {
		return nil
	}
	return s.where.Equalities()
}

// canonical returns the canonical text of a row's value of column c for the
// equality index, and whether it has one (NULL never equals anything).
func (s *Shape) canonical(c string, v *string) (string, bool) {
	if v == nil {
		return "", false
	}
	out, err := where.CanonicalValue(s.cols[c], *v)
	if err != nil {
		return "", false
	}
	return out, true
}

// Key returns the Electric key of a row: "schema"."table"/"pk1"/"pk2".
func (s *Shape) RowKey(row map[string]*string) string {
	var b strings.Builder
	b.WriteString(quote(s.Table.Schema))
	b.WriteByte('.')
	b.WriteString(quote(s.Table.Name))
	for _, k := range s.Key {
		b.WriteByte('/')
		v := "" // a key column is never NULL
		if p := row[k]; p != nil {
			v = *p
		}
		b.WriteString(quote(v))
	}
	return b.String()
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// pick returns the named columns of row.
func pick(row map[string]*string, cols []string) map[string]*string {
	out := make(map[string]*string, len(cols))
	for _, c := range cols {
		out[c] = row[c]
	}
	return out
}

// Row makes the insert message of a snapshot row or inserted row.
func (s *Shape) Row(row map[string]*string) syncapi.Message {
	return syncapi.Message{
		Headers: syncapi.Headers{Operation: syncapi.OperationInsert, Relation: []string{s.Table.Schema, s.Table.Name}},
		Key:     s.RowKey(row),
		Value:   pick(row, s.columns),
	}
}

// keyChanged reports whether the primary key differs between two rows.
func (s *Shape) keyChanged(a, b map[string]*string) bool {
	return slices.ContainsFunc(s.Key, func(k string) bool { return !eqValue(a[k], b[k]) })
}

func eqValue(a, b *string) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}
