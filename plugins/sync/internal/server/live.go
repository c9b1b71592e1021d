package server

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/capture"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/plugins/sync/live"
)

// applyLive starts or stops this replica's live sync to match st's live setting
// and returns st with it. Turning the setting off drops the site's shapes, slot and
// publication. A database that cannot do logical replication leaves live sync off
// with the reason (site.LiveNotReady); the rest of Sync works as before.
func (s *Server) applyLive(ctx context.Context, st *site.Site) *site.Site {
	on := st.Settings.Bool("live")
	s.liveMu.Lock()
	defer s.liveMu.Unlock()
	if s.engine != nil && (!on || s.enginePool != st.Pool) {
		s.engine.Close()
		s.engine, s.enginePool = nil, nil
	}
	s.liveNotReady = ""
	switch {
	case on && s.engine == nil:
		e, err := live.Start(ctx, live.Config{Pool: st.Pool, Log: s.log})
		var nr *capture.NotReadyError
		switch {
		case errors.As(err, &nr):
			s.liveNotReady = nr.Error()
			s.log.Warn("live sync is on but cannot run", "reason", s.liveNotReady)
		case err != nil:
			s.liveNotReady = err.Error()
			s.log.Warn("live sync did not start", "err", err)
		default:
			s.engine, s.enginePool = e, st.Pool
		}
	case !on:
		// Only when something is there to remove: the slot would hold WAL for ever.
		var exists bool
		name, err := live.NameFor(ctx, st.Pool)
		if err == nil {
			err = st.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)
				OR EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, name).Scan(&exists)
		}
		if err == nil && exists {
			err = live.Disable(ctx, st.Pool, name)
		}
		if err != nil {
			s.log.Warn("live sync: removing the slot and publication failed", "err", err)
		}
	}
	next := *st
	next.Live, next.LiveNotReady = s.engine, s.liveNotReady
	return &next
}

// closeLive stops live sync before the pool it runs on closes.
func (s *Server) closeLive(pool *pgxpool.Pool) {
	s.liveMu.Lock()
	defer s.liveMu.Unlock()
	if s.engine != nil && s.enginePool == pool {
		s.engine.Close()
		s.engine, s.enginePool = nil, nil
	}
}
