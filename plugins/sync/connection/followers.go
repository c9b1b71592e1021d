package connection

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// Follower is a connection following this site (syncapi.Follower).
type Follower = syncapi.Follower

// Followers lists the permanent connections that follow this site, with their lag.
// The sender records a follower when its receiver asks to follow, then every few
// seconds its acknowledged position and its lag as the streaming replica sees it
// (what was sent and not acknowledged: none when caught up, however far the WAL
// moved for other tables). A follower not connected lags by the WAL its slot
// holds since its last acknowledgement, and the time since then.
func (s *Store) Followers(ctx context.Context) ([]Follower, error) {
	rows, err := s.pool.Query(ctx, `SELECT f.connection_id::text, c.name, f.tables, f.acked_lsn::text, f.acked_at,
			CASE WHEN s.slot_name IS NULL THEN 0 WHEN s.active THEN f.lag_bytes ELSE greatest(pg_current_wal_lsn() - f.acked_lsn, 0)::bigint END,
			CASE WHEN s.active THEN f.lag_ms / 1000.0
				WHEN s.slot_name IS NOT NULL AND f.acked_at IS NOT NULL AND pg_current_wal_lsn() > f.acked_lsn THEN extract(epoch FROM now() - f.acked_at)
				ELSE 0 END::float8,
			coalesce(s.active, false)
		FROM fiberkit_sync_followers f JOIN fiberkit_sync_connections c ON c.id = f.connection_id
		LEFT JOIN pg_replication_slots s ON s.slot_name = f.slot ORDER BY c.name`)
	if err != nil {
		return nil, fmt.Errorf("list followers: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Follower, error) {
		var f Follower
		var at *time.Time
		err := r.Scan(&f.ConnectionID, &f.Name, &f.Tables, &f.Acknowledged, &at, &f.LagBytes, &f.LagSeconds, &f.Active)
		if at != nil {
			f.AckedAt = *at
		}
		return f, err
	})
	if err != nil {
		return nil, fmt.Errorf("list followers: %w", err)
	}
	return out, nil
}
