package history

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// The statuses of a receiving pull's entries beyond a transfer's outcome.
const (
	// Running: the pull is moving rows (or its process died and no Sweep has seen it).
	Running = "running"
	// Interrupted: the process that ran the pull stopped before it ended.
	Interrupted = "interrupted"
	// Resumed: an interrupted pull a later pull took over.
	Resumed = "resumed"
)

// InterruptedError is the error an interrupted entry records.
const InterruptedError = "the receiving plugin stopped mid-pull (killed, crashed or restarted); resume with a new code from the sender"

// pullLock is the first key of a running pull's advisory lock (the second is its id's hash).
const pullLock = "fiberkit_sync_pull"

// Pull is a receiving pull in progress, recorded: an entry per table, running,
// under one pull id. While it runs, a connection of its own holds the pull's
// advisory lock; a process that dies lets it go with its connection, which is how
// Sweep tells a dead pull from a live one (in this process or another replica).
type Pull struct {
	log  *Log
	ID   string
	lock *pgx.Conn
}

// Begin records a pull about to move rows: one running entry per table of entries
// (direction, peer, table, strategy, started by, last key for a resumed table),
// fresh naming the tables that were missing or empty here when it began. Call
// Finish when it ends.
func (l *Log) Begin(ctx context.Context, entries []Transfer, fresh map[string]bool) (*Pull, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("history: begin pull: %w", err)
	}
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	id := fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
	lock, err := pgx.ConnectConfig(ctx, l.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("history: begin pull: lock connection: %w", err)
	}
	if _, err := lock.Exec(ctx, `SELECT pg_advisory_lock(hashtext($1), hashtext($2))`, pullLock, id); err != nil {
		_ = lock.Close(ctx)
		return nil, fmt.Errorf("history: begin pull: lock: %w", err)
	}
	p := &Pull{log: l, ID: id, lock: lock}
	err = pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		for _, t := range entries {
			if _, err := tx.Exec(ctx, `INSERT INTO fiberkit_sync_transfers (direction, peer, table_name, strategy, requested, status, started_by, pull_id, last_key, fresh_target, ranges)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
				t.Direction, t.Peer, t.Table, t.Strategy, t.Requested, Running, t.StartedBy, id, t.LastKey, fresh[t.Table], rangesArg(t.Ranges)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		p.release()
		return nil, fmt.Errorf("history: begin pull: %w", err)
	}
	return p, nil
}

// Checkpoint records how far table got: rows applied and, when known (non-nil),
// the key of the last one.
func (p *Pull) Checkpoint(ctx context.Context, table string, rows int64, lastKey []string) error {
	_, err := p.log.pool.Exec(ctx, `UPDATE fiberkit_sync_transfers SET rows = $3, last_key = coalesce($4, last_key),
			duration_ms = (extract(epoch FROM clock_timestamp() - at) * 1000)::bigint
		WHERE pull_id = $1 AND table_name = $2 AND status = $5`, p.ID, table, rows, lastKey, Running)
	if err != nil {
		return fmt.Errorf("history: checkpoint %s: %w", table, err)
	}
	return nil
}

// CheckpointRanges records how far each key range of a split table got.
func (p *Pull) CheckpointRanges(ctx context.Context, table string, ranges []syncapi.RangeState) error {
	_, err := p.log.pool.Exec(ctx, `UPDATE fiberkit_sync_transfers SET ranges = $3
		WHERE pull_id = $1 AND table_name = $2 AND status = $4`, p.ID, table, rangesArg(ranges), Running)
	if err != nil {
		return fmt.Errorf("history: checkpoint the ranges of %s: %w", table, err)
	}
	return nil
}

// SetRanges records the key ranges of entry id, as far as each got.
func (l *Log) SetRanges(ctx context.Context, id int64, ranges []syncapi.RangeState) error {
	if _, err := l.pool.Exec(ctx, `UPDATE fiberkit_sync_transfers SET ranges = $2 WHERE id = $1`, id, rangesArg(ranges)); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return nil
}

// Finish records each table's outcome in its entry (one the pull did not begin
// with is added) and lets the pull's lock go.
func (p *Pull) Finish(ctx context.Context, outcomes []Transfer) error {
	defer p.release()
	err := pgx.BeginFunc(ctx, p.log.pool, func(tx pgx.Tx) error {
		for _, t := range outcomes {
			tag, err := tx.Exec(ctx, `UPDATE fiberkit_sync_transfers SET strategy = $3, requested = $4, rows = $5, created = $6, updated = $7,
					skipped = $8, failed = $9, bytes = $10, duration_ms = $11, status = $12, error = $13, last_key = coalesce($14, last_key),
					ranges = coalesce($15, ranges)
				WHERE pull_id = $1 AND table_name = $2`,
				p.ID, t.Table, t.Strategy, t.Requested, t.Rows, t.Created, t.Updated, t.Skipped, t.Failed, t.Bytes, t.Duration.Milliseconds(), t.Status, t.Error, t.LastKey,
				rangesArg(t.Ranges))
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				t.PullID = p.ID
				if _, err := insert(ctx, tx, t); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("history: finish pull: %w", err)
	}
	return nil
}

// release closes the lock connection, letting the pull's lock go.
func (p *Pull) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.lock.Close(ctx) // a lock whose connection is gone is released by the server
}

// Sweep marks interrupted the running entries of every pull no live process owns
// (its lock is free: the process died, or was killed, mid-pull), and returns them.
func (l *Log) Sweep(ctx context.Context) ([]Transfer, error) {
	conn, err := l.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("history: sweep: %w", err)
	}
	defer conn.Release()
	rows, err := conn.Query(ctx, `SELECT DISTINCT pull_id::text FROM fiberkit_sync_transfers WHERE status = $1 AND pull_id IS NOT NULL`, Running)
	if err != nil {
		return nil, fmt.Errorf("history: sweep: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("history: sweep: %w", err)
	}
	var swept []int64
	for _, id := range ids {
		var free bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))`, pullLock, id).Scan(&free); err != nil {
			return nil, fmt.Errorf("history: sweep: %w", err)
		}
		if !free {
			continue // its process lives
		}
		r, err := conn.Query(ctx, `UPDATE fiberkit_sync_transfers SET status = $2, error = $3 WHERE pull_id = $1 AND status = $4 RETURNING id`,
			id, Interrupted, InterruptedError, Running)
		var got []int64
		if err == nil {
			got, err = pgx.CollectRows(r, pgx.RowTo[int64])
		}
		_, uerr := conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtext($1), hashtext($2))`, pullLock, id)
		if err = errors.Join(err, uerr); err != nil {
			return nil, fmt.Errorf("history: sweep pull %s: %w", id, err)
		}
		swept = append(swept, got...)
	}
	if len(swept) == 0 {
		return nil, nil
	}
	return l.query(ctx, `WHERE id = ANY($1) ORDER BY id`, swept)
}

// SetLastKey records the key of the last row an entry applied.
func (l *Log) SetLastKey(ctx context.Context, id int64, key []string) error {
	if _, err := l.pool.Exec(ctx, `UPDATE fiberkit_sync_transfers SET last_key = $2 WHERE id = $1`, id, key); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return nil
}

// FreshTarget reports whether entry id's local table was missing or empty when its
// pull began.
func (l *Log) FreshTarget(ctx context.Context, id int64) (bool, error) {
	var fresh bool
	if err := l.pool.QueryRow(ctx, `SELECT fresh_target FROM fiberkit_sync_transfers WHERE id = $1`, id).Scan(&fresh); err != nil {
		return false, fmt.Errorf("history: %w", err)
	}
	return fresh, nil
}

// Interrupted returns the entries of the interrupted receiving pulls, oldest first
// (group them by PullID).
func (l *Log) Interrupted(ctx context.Context) ([]Transfer, error) {
	return l.query(ctx, `WHERE status = $1 AND direction = 'receive' ORDER BY id LIMIT 1000`, Interrupted)
}

// MarkResumed marks an interrupted pull's entries resumed (a later pull took over).
func (l *Log) MarkResumed(ctx context.Context, pullID string) error {
	if _, err := l.pool.Exec(ctx, `UPDATE fiberkit_sync_transfers SET status = $2 WHERE pull_id = $1::uuid AND status = $3`, pullID, Resumed, Interrupted); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return nil
}
