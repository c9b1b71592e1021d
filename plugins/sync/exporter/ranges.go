package exporter

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
)

// ErrNoRange is returned (wrapped) by Stream for an upper bound on a table without
// a primary key: such a table is never split (Ranges gives it no bounds), and a
// ctid bound would only hold inside one snapshot.
var ErrNoRange = errors.New("a table without a primary key is read whole, not by key range")

// rangeSamplePages is how many of a table's pages Ranges samples (TABLESAMPLE
// SYSTEM reads whole pages): enough rows for even quantiles whatever the row size,
// few enough that cutting a large table costs a few milliseconds. A table of at
// most this many pages is read whole, so its bounds are exact.
const rangeSamplePages = 256

// Ranges are the cut points of a table (see Snapshot.Ranges).
type Ranges struct {
	// Bounds are the keys ending each range but the last, ascending, in text form
	// (as Batch.LastKey and Stream's after and until take them).
	Bounds [][]string
	// Bytes is the table's size on disk: heap and TOAST, without indexes, its
	// partitions' summed for a partitioned table.
	Bytes int64
}

// Ranges cuts sch's rows in the snapshot into at most parts ranges of about the
// same number of rows: the keys of a sample of the table's pages (TABLESAMPLE
// SYSTEM, inside the snapshot, the rows LeaveOut names left out) are sorted by the
// primary key and cut into parts quantiles, whose last keys are the bounds. Any
// key works, single or composite, of any type with a btree order: the bounds
// compare as the stream's ORDER BY does. Range i is then Stream(after
// Bounds[i-1], until Bounds[i]); the ranges cover the table exactly, whatever rows
// the sample happened to hold. A table without a primary key, or too small to
// cut, gets no bounds (one range).
func (s *Snapshot) Ranges(ctx context.Context, sch *catalog.Schema, parts int) (r Ranges, err error) {
	err = s.Isolate(ctx, func() error {
		r, err = s.ranges(ctx, sch, parts)
		return err
	})
	return r, err
}

func (s *Snapshot) ranges(ctx context.Context, sch *catalog.Schema, parts int) (Ranges, error) {
	if catalog.IsSecretTable(sch.Name) {
		return Ranges{}, fmt.Errorf("export: %w: %q", catalog.ErrUnknownTable, sch.Name)
	}
	if parts < 1 {
		return Ranges{}, fmt.Errorf("export %s: ranges: parts must be positive", sch.Name)
	}
	id := catalog.IdentOf(sch)
	table := id.Quoted()
	var bytes, pages int64
	// Sizes of the table and, partitioned, of its partitions (pg_partition_tree
	// lists none for a plain table); the name is passed as a value, never as SQL.
	if err := s.tx.QueryRow(ctx, `SELECT coalesce(sum(pg_table_size(relid)), 0)::bigint,
			coalesce(sum(pg_relation_size(relid)), 0)::bigint / current_setting('block_size')::bigint
		FROM (SELECT relid FROM pg_partition_tree($1::text::regclass) UNION SELECT $1::text::regclass) t`, table).Scan(&bytes, &pages); err != nil {
		return Ranges{}, fmt.Errorf("export %s: ranges: size: %w", sch.Name, err)
	}
	r := Ranges{Bytes: bytes}
	if len(sch.PrimaryKey) == 0 || parts == 1 || s.KeyMasked(sch) {
		// A masked key orders the reads (Mask): bounds of the real key would
		// neither cut them nor stay on this site.
		return r, nil
	}
	exprs, _ := keyColumns(sch)
	// The subquery names its columns k0 (the quantile), k1… (the key's), so no
	// column name of the table can clash with them.
	keys := make([]string, len(exprs))
	named := make([]string, len(exprs))
	text := make([]string, len(exprs))
	desc := make([]string, len(exprs))
	for i, e := range exprs {
		keys[i] = "src." + e
		named[i] = fmt.Sprintf("src.%s AS k%d", e, i+1)
		text[i] = fmt.Sprintf("q.k%d::text", i+1)
		desc[i] = fmt.Sprintf("q.k%d DESC", i+1)
	}
	sample := ""
	if pages > rangeSamplePages {
		// A share of the pages, as a literal of our own making.
		sample = fmt.Sprintf(" TABLESAMPLE SYSTEM (%.6f)", 100*float64(rangeSamplePages)/float64(pages))
	}
	where := addCond("", s.leftOutCond(table, "src.tableoid"))
	// Each sampled key's quantile (ntile), then the last key of every quantile
	// but the last: ascending, distinct (keys are unique), at most parts-1.
	sql := fmt.Sprintf(`SELECT ARRAY[%s] FROM (
			SELECT DISTINCT ON (q.k0) q.*
			FROM (SELECT ntile(%d) OVER (ORDER BY %s) AS k0, %s FROM %s AS src%s%s) q
			ORDER BY q.k0, %s
		) q WHERE q.k0 < %d ORDER BY q.k0`,
		strings.Join(text, ", "), parts, strings.Join(keys, ", "), strings.Join(named, ", "), table, sample, where,
		strings.Join(desc, ", "), parts)
	rows, err := s.tx.Query(ctx, sql)
	if err != nil {
		return Ranges{}, fmt.Errorf("export %s: ranges: sample the key: %w", sch.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var key []string
		if err := rows.Scan(&key); err != nil {
			return Ranges{}, fmt.Errorf("export %s: ranges: %w", sch.Name, err)
		}
		r.Bounds = append(r.Bounds, key)
	}
	if err := rows.Err(); err != nil {
		return Ranges{}, fmt.Errorf("export %s: ranges: sample the key: %w", sch.Name, err)
	}
	return r, nil
}

// untilCond is the condition "(k1, k2) <= ('v1'::t1, 'v2'::t2)" that ends a
// range at until (inclusive), or "" without one.
func untilCond(sch *catalog.Schema, until []string) (string, error) {
	if until == nil {
		return "", nil
	}
	if len(sch.PrimaryKey) == 0 {
		return "", fmt.Errorf("export %s: %w", sch.Name, ErrNoRange)
	}
	where, err := afterClause(sch, until, "<=")
	if err != nil {
		return "", err
	}
	return strings.TrimPrefix(where, " WHERE "), nil
}
