package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/capture"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/jackc/pgx/v5/pgxpool"
)

// sweepFollowersEvery is how often the follow slots of connections that may no
// longer follow are dropped.
const sweepFollowersEvery = time.Minute

// sweepFollowers drops, every sweepFollowersEvery until ctx ends, the follow slots
// (and their publications) that no connection may use any more: the connection
// was revoked, expired, deleted, or lost its follow permission. A slot keeps the
// sending database's WAL from being recycled, so one nobody will read again must
// go. A suspended connection keeps its slot: reactivated, its follow resumes.
func (s *Server) sweepFollowers(ctx context.Context, st *site.Site) {
	t := time.NewTicker(sweepFollowersEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur, err := s.current() // the settings as they are now
		if err != nil || cur.Pool != st.Pool {
			continue
		}
		if err := dropStaleFollowers(ctx, cur.Pool, cur.Settings.Number("follow_max_idle_hours")); err != nil && ctx.Err() == nil {
			s.log.Warn("drop stale follow slots", "err", err)
		}
	}
}

// dropStaleFollowers drops this database's follow slots without a connection that
// may follow, and, when idleHours > 0, those no receiver used for that long.
func dropStaleFollowers(ctx context.Context, pool *pgxpool.Pool, idleHours float64) error {
	idle := idleHours
	rows, err := pool.Query(ctx, `SELECT s.slot_name FROM pg_replication_slots s
		LEFT JOIN fiberkit_sync_followers f ON f.slot = s.slot_name
		LEFT JOIN fiberkit_sync_connections c ON c.id = f.connection_id
		WHERE s.database = current_database() AND s.slot_name LIKE 'fiberkit\_follow\_%'
			AND (c.id IS NULL OR c.status IN ('revoked', 'expired')
				OR (c.limits->>'expires_at')::timestamptz <= now()
				OR coalesce((c.limits->>'follow')::boolean, false) = false
				OR $1 > 0 AND NOT s.active AND greatest(f.acked_at, f.started_at) < now() - make_interval(secs => $1 * 3600))`, idle)
	if err != nil {
		return err
	}
	var slots []string
	for rows.Next() {
		var slot string
		if err := rows.Scan(&slot); err != nil {
			rows.Close()
			return err
		}
		slots = append(slots, slot)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	// One slot that cannot go does not keep the others.
	var errs []error
	for _, slot := range slots {
		if err := capture.Teardown(ctx, pool, slot); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := pool.Exec(ctx, `DELETE FROM fiberkit_sync_followers WHERE slot = $1`, slot); err != nil {
			errs = append(errs, fmt.Errorf("forget follower of slot %s: %w", slot, err))
		}
	}
	return errors.Join(errs...)
}
