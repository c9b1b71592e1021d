// Package exporter reads table rows for another site, from one consistent snapshot:
// every table of a transfer is read inside one REPEATABLE READ, READ ONLY transaction,
// so rows inserted or deleted meanwhile never appear half-way. The snapshot is taken
// when Begin returns.
//
// Rows leave in PostgreSQL's own text representation — COPY text format for bulk
// batches, and the same per-value text (column::text) for the JSON records API — so
// the receiving database parses every value with its own input function and nothing
// is guessed from strings. The snapshot fixes the settings that shape that text
// (DateStyle, IntervalStyle, extra_float_digits, bytea_output, TimeZone,
// standard_conforming_strings), so it is the same whatever the database's defaults.
// money is the exception: its text follows lc_monetary, which both sites must share.
// See docs/data-encoding.md.
//
// Paging is keyset by primary key (by ctid for tables without one); offset/limit is
// kept for the PhoenixKit-compatible records API. A batch is capped by rows and by
// bytes. A ctid is only meaningful inside the snapshot that produced it, so a table
// without a primary key cannot be resumed from another snapshot (ErrNoResume).
package exporter

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/mask"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// DefaultBatchBytes is a batch's byte budget when StreamOptions.BatchBytes is not set.
const DefaultBatchBytes = 16 << 20

// ErrNoResume is returned (wrapped) by NextBatch for a table without a primary key
// when the key to resume after was not handed out by this snapshot: ctids of another
// snapshot may name other rows, so resuming would skip or repeat rows.
var ErrNoResume = errors.New("a table without a primary key cannot be resumed from another snapshot; transfer it again from the start")

// exportSettings fixes, for the snapshot's transaction, the settings the importer
// fixes too (catalog.TextSettings) plus standard_conforming_strings, and takes the
// snapshot (a SELECT needs one; SET does not).
const exportSettings = catalog.TextSettings + `, set_config('standard_conforming_strings', 'on', true)`

// Snapshot is a consistent, read-only view of the database for one transfer.
// It holds one connection until Close. Not safe for concurrent use.
type Snapshot struct {
	conn *pgxpool.Conn
	tx   pgx.Tx
	// PageBytes caps a page of the records API (0 means DefaultPageBytes), likewise.
	PageBytes int
	// issued are the ctid keys handed out, per table, for tables without a key
	// (TableStream.Run adds to them from its own goroutine, hence imu).
	imu    sync.Mutex
	issued map[string]bool
	// exported names the snapshot for other connections, once asked (export).
	exported string
	// leftOut are, per table, the tables below it (partitions, inheritance
	// children) whose rows a read of it leaves out (LeaveOut).
	leftOut map[string][]uint32
	// masks are, per table, the masks its reads apply (Mask).
	masks map[string]*mask.Table
}

// Mask makes every later read of sch's table that sends values (batches, pages
// of records, checksums) read each column t masks through its mask expression
// (mask.Table.Expr), so unmasked values never leave the database. The reads see
// the table as if it held the masked values: a masked primary-key column (only
// hash may mask one) is also what rows are ordered, paged, resumed and checksummed
// by, and what batches' LastKey carry — never the real key. nil: no masks.
// The snapshot's transaction (and each stream's) gets the masking key as a
// setting (mask.Table.UseKey), so the key is in no statement's text.
func (s *Snapshot) Mask(ctx context.Context, sch *catalog.Schema, t *mask.Table) error {
	table := catalog.IdentOf(sch).Quoted()
	if t == nil {
		delete(s.masks, table)
		return nil
	}
	if err := t.UseKey(ctx, s.tx); err != nil {
		return err
	}
	s.masks[table] = t
	return nil
}

// KeyMasked reports whether a column of sch's primary key is masked: its reads
// order, page and resume by the masked key, so key ranges cut from the real key
// (Ranges) do not apply to it and must not be sent.
func (s *Snapshot) KeyMasked(sch *catalog.Schema) bool {
	t := s.masks[catalog.IdentOf(sch).Quoted()]
	for _, k := range sch.PrimaryKey {
		if t.Masked(k) {
			return true
		}
	}
	return false
}

// source is what reads of sch's table select from (as src): the table, or with
// masks a subquery giving each column (masked or not) under its own name and the
// table's tableoid and ctid, so every clause written against the table reads the
// masked values.
func (s *Snapshot) source(sch *catalog.Schema) string {
	table := catalog.IdentOf(sch).Quoted()
	t := s.masks[table]
	if t == nil {
		return table
	}
	sel := []string{"src.tableoid AS tableoid", "src.ctid AS ctid"}
	for _, c := range sch.Columns {
		id := pgx.Identifier{c.Name}.Sanitize()
		e, ok := t.Expr(c.Name, "src."+id)
		if !ok {
			e = "src." + id
		}
		sel = append(sel, e+" AS "+id)
	}
	return "(SELECT " + strings.Join(sel, ", ") + " FROM " + table + " AS src)"
}

// LeaveOut makes every later read of sch's table (batches, pages, checksums,
// counts) leave out the rows that live in the tables oids — partitions or
// inheritance children of it a receiver may not see. None: read them all again.
func (s *Snapshot) LeaveOut(sch *catalog.Schema, oids []uint32) {
	table := catalog.IdentOf(sch).Quoted()
	if len(oids) == 0 {
		delete(s.leftOut, table)
		return
	}
	s.leftOut[table] = append([]uint32(nil), oids...)
}

// leftOutCond is the condition that keeps the rows of table that are not left
// out (on column, the table's tableoid), or "" when none are.
func (s *Snapshot) leftOutCond(table, column string) string {
	oids := s.leftOut[table]
	if len(oids) == 0 {
		return ""
	}
	list := make([]string, len(oids))
	for i, o := range oids {
		list[i] = fmt.Sprint(o)
	}
	return column + " <> ALL ('{" + strings.Join(list, ",") + "}'::oid[])"
}

// addCond adds cond to a " WHERE …" clause (or makes one of it).
func addCond(where, cond string) string {
	switch {
	case cond == "":
		return where
	case where == "":
		return " WHERE " + cond
	}
	return where + " AND " + cond
}

// Count returns the number of rows of sch's table in the snapshot, those of the
// tables LeaveOut names left out.
func (s *Snapshot) Count(ctx context.Context, sch *catalog.Schema) (n int64, err error) {
	err = s.Isolate(ctx, func() error {
		if catalog.IsSecretTable(sch.Name) {
			return fmt.Errorf("export: %w: %q", catalog.ErrUnknownTable, sch.Name)
		}
		table := catalog.IdentOf(sch).Quoted()
		if err := s.tx.QueryRow(ctx, "SELECT count(*) FROM "+table+addCond("", s.leftOutCond(table, "tableoid"))).Scan(&n); err != nil {
			return fmt.Errorf("export %s: count: %w", sch.Name, err)
		}
		return nil
	})
	return n, err
}

// Begin opens a snapshot. The snapshot is taken before Begin returns: rows committed
// afterwards are not seen.
func Begin(ctx context.Context, pool *pgxpool.Pool) (*Snapshot, error) {
	return begin(ctx, pool, "")
}

// BeginAt opens a snapshot that imports the exported snapshot named id (one a
// replication slot exported at its start: capture.CreateSlotWithSnapshot), so the
// rows read are exactly those committed before the slot's changes begin.
func BeginAt(ctx context.Context, pool *pgxpool.Pool, id string) (*Snapshot, error) {
	if !snapshotID.MatchString(id) {
		return nil, fmt.Errorf("export: %q is not a snapshot name", id)
	}
	return begin(ctx, pool, id)
}

// snapshotID is what pg_export_snapshot names look like ("00000003-0000001B-1").
var snapshotID = regexp.MustCompile(`^[0-9A-F]+(-[0-9A-F]+)+$`)

func begin(ctx context.Context, pool *pgxpool.Pool, id string) (*Snapshot, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("export: acquire connection: %w", err)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		conn.Release()
		return nil, fmt.Errorf("export: begin snapshot: %w", err)
	}
	if id != "" {
		// Must be the transaction's first statement; id is checked above.
		if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+id+"'"); err != nil {
			_ = tx.Rollback(ctx)
			conn.Release()
			return nil, fmt.Errorf("export: import snapshot %s: %w", id, err)
		}
	}
	// Literals in COPY queries are quoted for standard_conforming_strings = on.
	if _, err := tx.Exec(ctx, exportSettings); err != nil {
		_ = tx.Rollback(ctx)
		conn.Release()
		return nil, fmt.Errorf("export: begin snapshot: %w", err)
	}
	return &Snapshot{conn: conn, tx: tx, issued: map[string]bool{}, leftOut: map[string][]uint32{}, masks: map[string]*mask.Table{}}, nil
}

// Querier returns the snapshot's transaction, for catalog look-ups inside it.
func (s *Snapshot) Querier() catalog.Querier { return s.tx }

// Isolate runs fn, which works inside the snapshot, under a savepoint: when fn
// fails, the snapshot is rolled back to where it was, so one request that fails in
// SQL (a malformed key, a cast that does not hold) does not abort the transaction
// for the requests after it. The snapshot's methods isolate themselves; callers
// isolate their own look-ups through Querier.
func (s *Snapshot) Isolate(ctx context.Context, fn func() error) error {
	if _, err := s.tx.Exec(ctx, "SAVEPOINT fiberkit_request"); err != nil {
		return fmt.Errorf("export: savepoint: %w", err)
	}
	if err := fn(); err != nil {
		if _, rerr := s.tx.Exec(ctx, "ROLLBACK TO SAVEPOINT fiberkit_request"); rerr != nil {
			return errors.Join(err, fmt.Errorf("export: roll back to the savepoint: %w", rerr))
		}
		_, _ = s.tx.Exec(ctx, "RELEASE SAVEPOINT fiberkit_request")
		return err
	}
	if _, err := s.tx.Exec(ctx, "RELEASE SAVEPOINT fiberkit_request"); err != nil {
		return fmt.Errorf("export: release the savepoint: %w", err)
	}
	return nil
}

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
	// Binary is set when Data holds COPY binary tuples instead of text lines.
	Binary bool
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

// issue records that ctid key of table was handed out by this snapshot.
func (s *Snapshot) issue(table, key string) {
	s.imu.Lock()
	s.issued[table+"\x00"+key] = true
	s.imu.Unlock()
}

// wasIssued reports whether this snapshot handed out ctid key of table.
func (s *Snapshot) wasIssued(table, key string) bool {
	s.imu.Lock()
	defer s.imu.Unlock()
	return s.issued[table+"\x00"+key]
}

// unescapeCopy decodes a COPY text field (backslash escapes).
func unescapeCopy(b []byte) string {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b)
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' || i+1 == len(b) {
			out = append(out, c)
			continue
		}
		i++
		switch b[i] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'v':
			out = append(out, '\v')
		default:
			out = append(out, b[i])
		}
	}
	return string(out)
}

// Page is one page of the records API (syncapi.Page).
type Page = syncapi.Page

// Records returns rows offset..offset+limit in key order, as text values. A page
// holds at least one row and stops once its values pass PageBytes (HasMore true).
func (s *Snapshot) Records(ctx context.Context, sch *catalog.Schema, offset, limit int) (p Page, err error) {
	err = s.Isolate(ctx, func() error {
		p, err = s.records(ctx, sch, offset, limit)
		return err
	})
	return p, err
}

func (s *Snapshot) records(ctx context.Context, sch *catalog.Schema, offset, limit int) (Page, error) {
	cols := sch.Writable()
	sel := make([]string, len(cols))
	for i, c := range cols {
		sel[i] = "src." + pgx.Identifier{c.Name}.Sanitize() + "::text"
	}
	p := Page{Offset: offset, Records: []map[string]*string{}}
	more, err := s.page(ctx, sch, strings.Join(sel, ", "), "", offset, limit, func(rows pgx.Rows) (int, error) {
		vals := make([]*string, len(cols))
		dest := make([]any, len(cols))
		for i := range vals {
			dest[i] = &vals[i]
		}
		if err := rows.Scan(dest...); err != nil {
			return 0, err
		}
		rec := make(map[string]*string, len(cols))
		size := 0
		for i, c := range cols {
			rec[c.Name] = vals[i]
			if vals[i] != nil {
				size += len(*vals[i])
			}
		}
		p.Records = append(p.Records, rec)
		return size, nil
	})
	if err != nil {
		return Page{}, err
	}
	p.HasMore = more
	return p, nil
}

// Checksum returns the md5 of the table's rows in COPY text format, in key order, over
// the given columns (default: every written column), under the same settings as a
// snapshot. Two tables with the same checksum hold the same bytes. Called inside a
// transaction, it leaves those settings in place for the rest of it.
func Checksum(ctx context.Context, q interface {
	Conn() *pgx.Conn
}, sch *catalog.Schema, columns []string) (string, error) {
	return checksum(ctx, q, sch, columns, "", catalog.IdentOf(sch).Quoted())
}

// checksum is Checksum over the rows of source (the table, or what
// Snapshot.source reads it through) that meet filter (a condition; "" for all).
func checksum(ctx context.Context, q interface {
	Conn() *pgx.Conn
}, sch *catalog.Schema, columns []string, filter, source string) (string, error) {
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
	if catalog.IsSecretTable(sch.Name) {
		return "", fmt.Errorf("checksum: %w: %q", catalog.ErrUnknownTable, sch.Name)
	}
	conn := q.Conn()
	if conn.PgConn().TxStatus() == 'I' {
		// Outside a transaction: open one, so the settings below stay in it.
		tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
		if err != nil {
			return "", fmt.Errorf("checksum %s: %w", sch.Name, err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
	}
	if _, err := conn.Exec(ctx, exportSettings); err != nil {
		return "", fmt.Errorf("checksum %s: %w", sch.Name, err)
	}
	exprs, _ := keyColumns(sch)
	h := md5.New()
	sql := fmt.Sprintf("COPY (SELECT %s FROM %s AS src%s ORDER BY %s) TO STDOUT", catalog.QuotedColumns(cols), source, addCond("", filter), strings.Join(exprs, ", "))
	if _, err := conn.PgConn().CopyTo(ctx, h, sql); err != nil {
		return "", fmt.Errorf("checksum %s: %w", sch.Name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Checksum returns the table's checksum as of the snapshot.
func (s *Snapshot) Checksum(ctx context.Context, sch *catalog.Schema) (sum string, err error) {
	err = s.Isolate(ctx, func() error {
		sum, err = s.checksum(ctx, sch)
		return err
	})
	return sum, err
}

func (s *Snapshot) checksum(ctx context.Context, sch *catalog.Schema) (string, error) {
	return checksum(ctx, s.tx, sch, nil, s.leftOutCond(catalog.IdentOf(sch).Quoted(), "tableoid"), s.source(sch))
}
