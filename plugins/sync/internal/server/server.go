// Package server wires the Sync module together for its plugin binary: it keeps
// the current site (package site) in step with the module's settings, runs the
// remotes' scheduled pulls on it, and mounts the sender's endpoint (package
// sender), the admin pages and their socket (package admin), the public token
// endpoint (package tokenchange) and the operations (package ops).
package server

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fiberkit/fiberkit/plugins/sync/internal/admin"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/ops"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/pull"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/ratelimit"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/sender"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/tokenchange"
	"github.com/fiberkit/fiberkit/plugins/sync/live"
	"github.com/fiberkit/fiberkit/plugins/sync/remote"
	"github.com/fiberkit/fiberkit/plugins/sync/syncmetrics"
	"github.com/fiberkit/fiberkit/sdk"
)

// Server is the Sync module. Build one with New and serve Module().
type Server struct {
	log *slog.Logger

	mu    sync.RWMutex
	st    *site.Site
	dbURL string
	// stopSchedule stops the scheduler bound to the current pool (guarded by mu).
	stopSchedule context.CancelFunc

	sender *sender.Sender
	admin  *admin.Admin
	// tokenLimiter limits the public token endpoint per client address.
	tokenLimiter *ratelimit.Limiter
	// registry holds the module's metrics (metrics), which the host gathers.
	registry *prometheus.Registry
	metrics  *syncmetrics.Metrics

	// liveMu guards this replica's live sync engine, which runs on enginePool.
	liveMu       sync.Mutex
	engine       *live.Engine
	enginePool   *pgxpool.Pool
	liveNotReady string
}

// defaultReceiverIdle is three of the client's 30 s heartbeats.
const defaultReceiverIdle = 90 * time.Second

// New returns a Server.
func New(log *slog.Logger) *Server {
	// FIBERKIT_SYNC_RECEIVER_IDLE (a Go duration) overrides the sender's idle cut;
	// receivers heartbeat every 30 s, so keep it well above that.
	receiverIdle := defaultReceiverIdle
	if d, err := time.ParseDuration(os.Getenv("FIBERKIT_SYNC_RECEIVER_IDLE")); err == nil && d > 0 {
		receiverIdle = d
	}
	reg := prometheus.NewRegistry()
	metrics, err := syncmetrics.New(reg)
	if err != nil {
		// The set is fixed: a clash is a programming error, seen in every test run.
		panic(err)
	}
	s := &Server{log: log, tokenLimiter: ratelimit.New(10, time.Minute), registry: reg, metrics: metrics}
	s.sender = sender.New(log, s.current, receiverIdle)
	s.admin = admin.New(log, s.current)
	return s
}

// Module returns the sdk.Module to serve.
func (s *Server) Module() sdk.Module {
	mux := http.NewServeMux()
	s.admin.Routes(mux)
	tokenchange.Routes(mux, s.current, s.tokenLimiter)
	return sdk.Module{
		ID:         "sync",
		Version:    "0.1.0",
		Logger:     s.log,
		HTTP:       mux,
		WebSockets: map[string]sdk.WebSocketHandler{"/websocket": s.sender.Serve, "/live": s.admin.ServeLive},
		Operations: ops.Operations(s.log, s.current),
		Streams:    ops.Streams(s.current),
		Configure:  s.configure,
		Metrics:    s.registry,
	}
}

// configure applies the module's settings. A new database URL gets a new site
// (pool and stores); the scheduler is rebound to it and the old pool closed once
// the old scheduler has stopped.
func (s *Server) configure(ctx context.Context, env *sdk.Env) error {
	s.mu.Lock()
	if s.st != nil && s.dbURL == env.DatabaseURL {
		st := s.st.With(env)
		s.mu.Unlock()
		st = s.applyLive(ctx, st)
		s.mu.Lock()
		s.st = st
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	st, err := site.Open(ctx, env, s.metrics)
	if err != nil {
		return err
	}
	st = s.applyLive(ctx, st)
	s.mu.Lock()
	old := s.st
	stopOld := s.stopSchedule
	// The scheduler outlives this call: it runs until the database changes again.
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.st, s.dbURL, s.stopSchedule = st, env.DatabaseURL, stop
	s.mu.Unlock()
	go s.schedule(sctx, st)
	go s.follow(sctx, st)
	go s.sweepFollowers(sctx, st)
	go s.recover(sctx, st)
	if stopOld != nil {
		stopOld() // a pull in progress is cancelled and gives its connections back
	}
	if old != nil {
		s.closeLive(old.Pool)
		old.Pool.Close()
	}
	return nil
}

// recoverTimeout bounds looking for pulls a previous process left running.
const recoverTimeout = time.Minute

// recover marks interrupted the pulls a previous process of this module (or a
// replica since gone) left running when it stopped mid-pull.
func (s *Server) recover(ctx context.Context, st *site.Site) {
	ctx, cancel := context.WithTimeout(ctx, recoverTimeout)
	defer cancel()
	if err := pull.Recover(ctx, s.log, st); err != nil {
		s.log.Warn("recover interrupted pulls", "err", err)
	}
}

// current returns the current site (a site.Current).
func (s *Server) current() (*site.Site, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.st == nil {
		return nil, site.ErrNotReady
	}
	return s.st, nil
}

// follow runs the follows of the remotes whose schedule is follow on st's database
// until ctx ends; replicas share them through the remotes' locks, and none runs
// while the module is disabled.
func (s *Server) follow(ctx context.Context, st *site.Site) {
	st.Remotes.RunFollows(ctx, remote.FollowOptions{Active: s.enabled}, func(ctx context.Context, r remote.Remote, token string) error {
		cur, err := s.current()
		if err != nil {
			return err
		}
		return pull.FollowRemote(ctx, s.log, cur, r, token)
	})
}

// enabled reports whether the module is on, as its settings are now.
func (s *Server) enabled() bool {
	cur, err := s.current()
	return err == nil && cur.Settings.Enabled()
}

// schedule runs the remotes' scheduled pulls on st's database until ctx ends (the
// database changed, and a scheduler for the new one took over). Replicas share the
// work through the remote store's claims and locks; nothing is claimed while the
// module is disabled. Each run pulls with the settings current when it starts.
func (s *Server) schedule(ctx context.Context, st *site.Site) {
	st.Remotes.Schedule(ctx, remote.ScheduleOptions{Active: s.enabled}, func(ctx context.Context, r remote.Remote, token string) error {
		cur, err := s.current()
		if err != nil {
			return err
		}
		_, err = pull.Remote(ctx, s.log, cur, r, token)
		return err
	})
}
