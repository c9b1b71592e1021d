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
	err := q.QueryRow(ctx, `INSERT INTO fiberkit_sync_transfers (direction, peer, table_name, strategy, requested, rows, created, updated, skipped, failed, bytes, duration_ms, status, error, started_by, pull_id, last_key)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16::uuid, $17) RETURNING id`,
		t.Direction, t.Peer, t.Table, t.Strategy, t.Requested, t.Rows, t.Created, t.Updated, t.Skipped, t.Failed, t.Bytes, t.Duration.Milliseconds(), t.Status, t.Error, t.StartedBy,
		pullID, t.LastKey).Scan(&id)
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
			duration_ms, status, error, started_by, coalesce(pull_id::text, ''), last_key
		FROM fiberkit_sync_transfers `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer rows.Close()
	var out []Transfer
	for rows.Next() {
		var t Transfer
		var ms int64
		if err := rows.Scan(&t.ID, &t.At, &t.Direction, &t.Peer, &t.Table, &t.Strategy, &t.Requested, &t.Rows, &t.Created, &t.Updated, &t.Skipped, &t.Failed, &t.Bytes,
			&ms, &t.Status, &t.Error, &t.StartedBy, &t.PullID, &t.LastKey); err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
		t.Duration = time.Duration(ms) * time.Millisecond
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	return out, nil
}

func sinceArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}
