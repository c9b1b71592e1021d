// Package history records every Sync transfer, on both sides: who moved which table,
// with what strategy and outcome. The overview page lists the recent ones. A
// receiving pull is recorded before it moves rows (Begin: running, with its rows
// and last key as batches land), so a receiver that dies mid-pull keeps the record;
// Sweep marks such a pull interrupted once no live process owns it.
package history

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/migrate"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// Transfer is one table moved (or attempted) in one direction (syncapi.Transfer).
type Transfer = syncapi.Transfer

// Log is the transfer history.
type Log struct {
	pool *pgxpool.Pool
}

// Open brings Sync's tables to the current schema (migrate.Up) and returns the log
// over pool.
func Open(ctx context.Context, pool *pgxpool.Pool) (*Log, error) {
	if err := migrate.Up(ctx, pool); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	return &Log{pool: pool}, nil
}

// Record appends t and returns its id.
func (l *Log) Record(ctx context.Context, t Transfer) (int64, error) {
	id, err := insert(ctx, l.pool, t)
	if err != nil {
		return 0, fmt.Errorf("history: record: %w", err)
	}
	return id, nil
}

// insert appends t through q.
func insert(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, t Transfer) (int64, error) {
	var id int64
	var pullID *string
	if t.PullID != "" {
		pullID = &t.PullID
	}
	err := q.QueryRow(ctx, `INSERT INTO fiberkit_sync_transfers (direction, peer, table_name, strategy, requested, rows, created, updated, skipped, failed, bytes, duration_ms, status, error, started_by, pull_id, last_key, masks, lag_bytes, lag_ms, ranges)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16::uuid, $17, $18, $19, $20, $21) RETURNING id`,
		t.Direction, t.Peer, t.Table, t.Strategy, t.Requested, t.Rows, t.Created, t.Updated, t.Skipped, t.Failed, t.Bytes, t.Duration.Milliseconds(), t.Status, t.Error, t.StartedBy,
		pullID, t.LastKey, masksArg(t.Masks), t.LagBytes, int64(t.LagSeconds*1000), rangesArg(t.Ranges)).Scan(&id)
	return id, err
}

// SetStatus updates the status of entry id (a request waiting for approval, decided).
func (l *Log) SetStatus(ctx context.Context, id int64, status string) error {
	if _, err := l.pool.Exec(ctx, `UPDATE fiberkit_sync_transfers SET status = $2 WHERE id = $1`, id, status); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return nil
}

// Filter selects history entries (syncapi.HistoryFilter).
type Filter = syncapi.HistoryFilter

// Recent returns the newest transfers, newest first.
func (l *Log) Recent(ctx context.Context, limit int) ([]Transfer, error) {
	return l.Find(ctx, Filter{}, limit)
}

// Find returns the newest transfers matching f, newest first, at most limit. The
// filter runs in PostgreSQL, over the whole history.
func (l *Log) Find(ctx context.Context, f Filter, limit int) ([]Transfer, error) {
	return l.query(ctx, `WHERE ($1 = '' OR direction = $1) AND ($2 = '' OR table_name = $2) AND ($3 = '' OR status = $3)
			AND ($4 = '' OR strpos(peer, $4) > 0) AND ($5 = '' OR strpos(started_by, $5) > 0) AND ($6::timestamptz IS NULL OR at >= $6)
		ORDER BY id DESC LIMIT $7`, f.Direction, f.Table, f.Status, f.Peer, f.StartedBy, sinceArg(f.Since), limit)
}

// query returns the entries the SQL after FROM (where, order, limit) selects.
func (l *Log) query(ctx context.Context, where string, args ...any) ([]Transfer, error) {
	rows, err := l.pool.Query(ctx, `SELECT id, at, direction, peer, table_name, strategy, requested, rows, created, updated, skipped, failed, bytes,
			duration_ms, status, error, started_by, coalesce(pull_id::text, ''), last_key, masks, lag_bytes, lag_ms, ranges
		FROM fiberkit_sync_transfers `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer rows.Close()
	var out []Transfer
	for rows.Next() {
		var t Transfer
		var ms, lagMs int64
		if err := rows.Scan(&t.ID, &t.At, &t.Direction, &t.Peer, &t.Table, &t.Strategy, &t.Requested, &t.Rows, &t.Created, &t.Updated, &t.Skipped, &t.Failed, &t.Bytes,
			&ms, &t.Status, &t.Error, &t.StartedBy, &t.PullID, &t.LastKey, &t.Masks, &t.LagBytes, &lagMs, &t.Ranges); err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
		t.Duration = time.Duration(ms) * time.Millisecond
		t.LagSeconds = float64(lagMs) / 1000
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	return out, nil
}

// rangesArg stores no ranges as NULL (a table pulled by one stream).
func rangesArg(r []syncapi.RangeState) any {
	if len(r) == 0 {
		return nil
	}
	return r
}

// masksArg stores no masks as an empty array (the column is NOT NULL).
func masksArg(m []string) []string {
	if m == nil {
		return []string{}
	}
	return m
}

// UpdateFollow records a follow's progress on its entry id: the rows (changes)
// applied or sent so far, how long it has run, and its lag.
func (l *Log) UpdateFollow(ctx context.Context, id int64, t Transfer) error {
	if _, err := l.pool.Exec(ctx, `UPDATE fiberkit_sync_transfers SET rows = $2, created = $3, updated = $4, skipped = $5, bytes = $6,
			duration_ms = $7, status = $8, error = $9, lag_bytes = $10, lag_ms = $11 WHERE id = $1`,
		id, t.Rows, t.Created, t.Updated, t.Skipped, t.Bytes, t.Duration.Milliseconds(), t.Status, t.Error, t.LagBytes, int64(t.LagSeconds*1000)); err != nil {
		return fmt.Errorf("history: update follow %d: %w", id, err)
	}
	return nil
}

func sinceArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}
