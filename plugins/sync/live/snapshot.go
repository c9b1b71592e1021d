package live

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/shape"
	"github.com/fiberkit/fiberkit/plugins/sync/shapelog"
)

// contains reports whether the transaction with the 32-bit id xid (as pgoutput
// gives it) is visible in snap, whose ids are 64-bit: the epoch is the one that puts
// xid nearest to Xmax.
func contains(snap *shapelog.Snapshot, xid uint32) bool {
	full := snap.Xmax&^0xFFFFFFFF | uint64(xid)
	switch {
	case full > snap.Xmax && full-snap.Xmax > 1<<31 && full >= 1<<32:
		full -= 1 << 32
	case full < snap.Xmax && snap.Xmax-full > 1<<31:
		full += 1 << 32
	}
	if full < snap.Xmin {
		return true
	}
	return full < snap.Xmax && !slices.Contains(snap.Xip, full)
}

// snapshotResult is what a snapshot goroutine reports to the capture loop.
type snapshotResult struct {
	handle string
	snap   shapelog.Snapshot
	last   shapelog.Offset
	bytes  int64
	err    error
}

// snapshotBatch is how many rows go to the log per COPY batch, bounding memory.
const snapshotBatch = 2000

// takeSnapshot reads a shape's rows in a REPEATABLE READ transaction and logs them
// as its first entries, then marks it ready — all in one write transaction, so a
// crash leaves the shape still creating and its log empty. horizon is a transaction
// id every transaction older than which must have ended first: the publication and
// REPLICA IDENTITY were changed before it, so no change made earlier is left for
// capture to miss.
func (e *Engine) takeSnapshot(ctx context.Context, handle string, s *shape.Shape, horizon uint64) snapshotResult {
	res := snapshotResult{handle: handle}
	res.err = func() error {
		if err := e.waitHorizon(ctx, horizon); err != nil {
			return err
		}
		select {
		case e.snapshots <- struct{}{}:
			defer func() { <-e.snapshots }()
		case <-ctx.Done():
			return ctx.Err()
		}
		rconn, err := e.cfg.Pool.Acquire(ctx)
		if err != nil {
			return err
		}
		defer rconn.Release()
		rtx, err := rconn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return err
		}
		defer rtx.Rollback(context.WithoutCancel(ctx))
		if _, err := rtx.Exec(ctx, catalog.TextSettings); err != nil {
			return err
		}
		var xip []int64
		var xmin, xmax int64
		if err := rtx.QueryRow(ctx, `SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint,
			coalesce(array(SELECT x::text::bigint FROM pg_snapshot_xip(s) x), '{}') FROM pg_current_snapshot() s`).Scan(&xmin, &xmax, &xip); err != nil {
			return fmt.Errorf("snapshot ids: %w", err)
		}
		res.snap = shapelog.Snapshot{Xmin: uint64(xmin), Xmax: uint64(xmax)}
		for _, x := range xip {
			res.snap.Xip = append(res.snap.Xip, uint64(x))
		}
		cols := s.Columns()
		sel := make([]string, len(cols))
		formats := make(pgx.QueryResultFormats, len(cols))
		for i, c := range cols {
			sel[i] = pgx.Identifier{c}.Sanitize()
			formats[i] = pgx.TextFormatCode
		}
		q := "SELECT " + strings.Join(sel, ", ") + " FROM " + s.Table.Quoted()
		if w := s.WhereSQL(); w != "" {
			q += " WHERE " + w
		}
		q += " ORDER BY " + catalog.QuoteNames(s.Key)
		// Values in text format as the type's output function writes them — what
		// pgoutput sends for a change (a cast to text is not always the same: a
		// boolean casts to "true", prints as "t").
		rows, err := rtx.Query(ctx, q, formats)
		if err != nil {
			return fmt.Errorf("snapshot of %s: %w", s.Table, err)
		}
		defer rows.Close()

		wtx, err := e.cfg.Pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer wtx.Rollback(context.WithoutCancel(ctx))
		var batch []shapelog.Entry
		op := 0
		flush := func() error {
			if err := shapelog.Append(ctx, wtx, handle, batch); err != nil {
				return err
			}
			batch = batch[:0]
			return nil
		}
		for rows.Next() {
			raw := rows.RawValues()
			row := make(map[string]*string, len(cols))
			for i, c := range cols {
				if raw[i] != nil {
					v := string(raw[i])
					row[c] = &v
				} else {
					row[c] = nil
				}
			}
			// The query applied the where clause; the shape's own evaluation is the
			// one changes get, and the two agree (package where's tests).
			body, err := json.Marshal(s.Row(row))
			if err != nil {
				return err
			}
			op++
			res.bytes += int64(len(body))
			batch = append(batch, shapelog.Entry{Offset: shapelog.Offset{Op: op}, Body: body})
			if len(batch) == snapshotBatch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("snapshot of %s: %w", s.Table, err)
		}
		if err := flush(); err != nil {
			return err
		}
		res.last = shapelog.Offset{Op: op}
		if err := shapelog.MarkReady(ctx, wtx, handle, res.snap, res.bytes); err != nil {
			return err
		}
		if err := shapelog.Notify(ctx, wtx, []string{handle}); err != nil {
			return err
		}
		return wtx.Commit(ctx)
	}()
	return res
}

// waitHorizon waits until every transaction older than horizon has ended.
func (e *Engine) waitHorizon(ctx context.Context, horizon uint64) error {
	for {
		var xmin int64
		if err := e.cfg.Pool.QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint`).Scan(&xmin); err != nil {
			return fmt.Errorf("wait for older transactions: %w", err)
		}
		if uint64(xmin) >= horizon {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
