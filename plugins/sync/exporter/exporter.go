// Package exporter reads table rows for another site, from one consistent snapshot:
// every table of a transfer is read inside one REPEATABLE READ, READ ONLY transaction,
// so rows inserted or deleted meanwhile never appear half-way.
//
// Rows leave in PostgreSQL's own text representation — COPY text format for bulk
// batches, and the same per-value text (column::text) for the JSON records API — so
// the receiving database parses every value with its own input function and nothing
// is guessed from strings. See docs/data-encoding.md.
//
// Paging is keyset by primary key (by ctid for tables without one); offset/limit is
// kept for the PhoenixKit-compatible records API.
package exporter

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
)

// Snapshot is a consistent, read-only view of the database for one transfer.
// It holds one connection until Close. Not safe for concurrent use.
type Snapshot struct {
	conn *pgxpool.Conn
	tx   pgx.Tx
}

// Begin opens a snapshot.
func Begin(ctx context.Context, pool *pgxpool.Pool) (*Snapshot, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("export: acquire connection: %w", err)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		conn.Release()
		return nil, fmt.Errorf("export: begin snapshot: %w", err)
	}
	// Literals in COPY queries are quoted for standard_conforming_strings = on.
	if _, err := tx.Exec(ctx, "SET LOCAL standard_conforming_strings = on"); err != nil {
		_ = tx.Rollback(ctx)
		conn.Release()
		return nil, fmt.Errorf("export: %w", err)
	}
	return &Snapshot{conn: conn, tx: tx}, nil
}

// Querier returns the snapshot's transaction, for catalog look-ups inside it.
func (s *Snapshot) Querier() catalog.Querier { return s.tx }

// Close ends the snapshot and returns its connection.
func (s *Snapshot) Close(ctx context.Context) {
	_ = s.tx.Rollback(ctx)
	s.conn.Release()
}

// Batch is a page of rows in COPY text format.
type Batch struct {
	// Columns are the columns of each row, in order (generated columns excluded).
	Columns []string
	// Data holds Rows lines of COPY text format.
	Data []byte
	Rows int
	// LastKey is the key of the last row (text representation of each key column, or
	// the ctid for tables without a primary key). Resume after it.
	LastKey []string
	// Done is true when no rows follow this batch.
	Done bool
}

// keyColumns returns the key used for paging: the primary key, or ctid.
func keyColumns(sch *catalog.Schema) (exprs []string, types []string) {
	if len(sch.PrimaryKey) == 0 {
		return []string{"ctid"}, []string{"tid"}
	}
	for _, k := range sch.PrimaryKey {
		c, _ := sch.Column(k)
		exprs = append(exprs, pgx.Identifier{k}.Sanitize())
		types = append(types, c.Type)
	}
	return exprs, types
}

// quoteLiteral quotes s as a string literal for standard_conforming_strings = on.
func quoteLiteral(s string) (string, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return "", errors.New("key contains a NUL byte")
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'", nil
}

// afterClause returns "WHERE (k1, k2) > ('v1'::t1, 'v2'::t2)" for keyset paging.
// Key types come from the local catalog, values are quoted literals: nothing from the
// peer reaches the SQL text unquoted.
func afterClause(sch *catalog.Schema, after []string, op string) (string, error) {
	exprs, types := keyColumns(sch)
	if after == nil {
		return "", nil
	}
	if len(after) != len(exprs) {
		return "", fmt.Errorf("export %s: key has %d values, table key has %d columns", sch.Name, len(after), len(exprs))
	}
	lits := make([]string, len(after))
	for i, v := range after {
		q, err := quoteLiteral(v)
		if err != nil {
			return "", fmt.Errorf("export %s: %w", sch.Name, err)
		}
		lits[i] = q + "::" + types[i]
	}
	return fmt.Sprintf(" WHERE (%s) %s (%s)", strings.Join(exprs, ", "), op, strings.Join(lits, ", ")), nil
}

// NextBatch returns up to limit rows after key after (nil = from the start), in key order.
func (s *Snapshot) NextBatch(ctx context.Context, sch *catalog.Schema, after []string, limit int) (Batch, error) {
	if limit <= 0 {
		return Batch{}, fmt.Errorf("export %s: batch size must be positive", sch.Name)
	}
	exprs, _ := keyColumns(sch)
	order := strings.Join(exprs, ", ")
	where, err := afterClause(sch, after, ">")
	if err != nil {
		return Batch{}, err
	}
	// Find the batch's last key first (an index-only scan), then COPY exactly the rows
	// up to it: the COPY query needs literals, and this way the last key is known
	// without parsing COPY output.
	keyText := make([]string, len(exprs))
	for i, e := range exprs {
		keyText[i] = e + "::text"
	}
	var last []string
	row := s.tx.QueryRow(ctx, fmt.Sprintf("SELECT ARRAY[%s] FROM %s%s ORDER BY %s OFFSET %d LIMIT 1",
		strings.Join(keyText, ", "), sch.Ident().Quoted(), where, order, limit-1))
	switch err := row.Scan(&last); {
	case errors.Is(err, pgx.ErrNoRows):
		last = nil
	case err != nil:
		return Batch{}, fmt.Errorf("export %s: find batch end: %w", sch.Name, err)
	}
	cond := where
	if last != nil {
		upper, err := afterClause(sch, last, "<=")
		if err != nil {
			return Batch{}, err
		}
		if cond == "" {
			cond = upper
		} else {
			cond += " AND" + strings.TrimPrefix(upper, " WHERE")
		}
	}
	cols := sch.Writable()
	var buf bytes.Buffer
	sql := fmt.Sprintf("COPY (SELECT %s FROM %s%s ORDER BY %s) TO STDOUT", catalog.QuotedColumns(cols), sch.Ident().Quoted(), cond, order)
	if _, err := s.tx.Conn().PgConn().CopyTo(ctx, &buf, sql); err != nil {
		return Batch{}, fmt.Errorf("export %s: %w", sch.Name, err)
	}
	b := Batch{Data: buf.Bytes(), Rows: bytes.Count(buf.Bytes(), []byte{'\n'})}
	for _, c := range cols {
		b.Columns = append(b.Columns, c.Name)
	}
	if last == nil {
		// Fewer than limit rows were left: this is the end. Its last key still matters
		// to a receiver that resumes after importing it.
		b.Done = true
		b.LastKey = after
		if b.Rows > 0 {
			desc := make([]string, len(exprs))
			for i, e := range exprs {
				desc[i] = e + " DESC"
			}
			err := s.tx.QueryRow(ctx, fmt.Sprintf("SELECT ARRAY[%s] FROM %s ORDER BY %s LIMIT 1",
				strings.Join(keyText, ", "), sch.Ident().Quoted(), strings.Join(desc, ", "))).Scan(&b.LastKey)
			if err != nil {
				return Batch{}, fmt.Errorf("export %s: last key: %w", sch.Name, err)
			}
		}
		return b, nil
	}
	b.LastKey = last
	return b, nil
}

// Page is one page of the records API.
type Page struct {
	// Records map column name → text representation (nil for NULL).
	Records []map[string]*string `json:"records"`
	Offset  int                  `json:"offset"`
	HasMore bool                 `json:"has_more"`
}

// Records returns rows offset..offset+limit in key order, as text values.
func (s *Snapshot) Records(ctx context.Context, sch *catalog.Schema, offset, limit int) (Page, error) {
	if offset < 0 || limit <= 0 {
		return Page{}, fmt.Errorf("export %s: offset must be ≥ 0 and limit > 0", sch.Name)
	}
	exprs, _ := keyColumns(sch)
	cols := sch.Writable()
	sel := make([]string, len(cols))
	for i, c := range cols {
		sel[i] = pgx.Identifier{c.Name}.Sanitize() + "::text"
	}
	// Order by the table's own columns (src.…), not the ::text outputs of the same name.
	order := make([]string, len(exprs))
	for i, e := range exprs {
		order[i] = "src." + e
	}
	rows, err := s.tx.Query(ctx, fmt.Sprintf("SELECT %s FROM %s AS src ORDER BY %s OFFSET $1 LIMIT $2",
		strings.Join(sel, ", "), sch.Ident().Quoted(), strings.Join(order, ", ")), offset, limit+1)
	if err != nil {
		return Page{}, fmt.Errorf("export %s: %w", sch.Name, err)
	}
	defer rows.Close()
	p := Page{Offset: offset, Records: []map[string]*string{}}
	for rows.Next() {
		if len(p.Records) == limit {
			p.HasMore = true
			break
		}
		vals := make([]*string, len(cols))
		dest := make([]any, len(cols))
		for i := range vals {
			dest[i] = &vals[i]
		}
		if err := rows.Scan(dest...); err != nil {
			return Page{}, fmt.Errorf("export %s: %w", sch.Name, err)
		}
		rec := make(map[string]*string, len(cols))
		for i, c := range cols {
			rec[c.Name] = vals[i]
		}
		p.Records = append(p.Records, rec)
	}
	if err := rows.Err(); err != nil {
		return Page{}, fmt.Errorf("export %s: %w", sch.Name, err)
	}
	return p, nil
}

// Checksum returns the md5 of the table's rows in COPY text format, in key order, over
// the given columns (default: every written column). Two tables with the same
// checksum hold the same bytes.
func Checksum(ctx context.Context, q interface {
	Conn() *pgx.Conn
}, sch *catalog.Schema, columns []string) (string, error) {
	var cols []catalog.Column
	if len(columns) == 0 {
		cols = sch.Writable()
	} else {
		for _, n := range columns {
			c, ok := sch.Column(n)
			if !ok {
				return "", fmt.Errorf("checksum %s: no column %q", sch.Name, n)
			}
			cols = append(cols, c)
		}
	}
	exprs, _ := keyColumns(sch)
	h := md5.New()
	sql := fmt.Sprintf("COPY (SELECT %s FROM %s ORDER BY %s) TO STDOUT", catalog.QuotedColumns(cols), sch.Ident().Quoted(), strings.Join(exprs, ", "))
	if _, err := q.Conn().PgConn().CopyTo(ctx, h, sql); err != nil {
		return "", fmt.Errorf("checksum %s: %w", sch.Name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Checksum returns the table's checksum as of the snapshot.
func (s *Snapshot) Checksum(ctx context.Context, sch *catalog.Schema) (string, error) {
	return Checksum(ctx, s.tx, sch, nil)
}
