// Package server is the Sync module's plugin side: it keeps the module's database
// pool and session store in step with its settings, serves the sender's WebSocket
// endpoint (package wire's protocol), and answers the module's operations.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/session"
	"github.com/fiberkit/fiberkit/sdk"
)

// Server is the Sync module. Build one with New and serve Module().
type Server struct {
	log *slog.Logger

	mu    sync.RWMutex
	st    *state
	dbURL string

	pages *pageOwners
	jobs  *jobs
}

// state is what Configure sets up; replaced as a whole when settings change.
type state struct {
	pool        *pgxpool.Pool
	sessions    *session.Store
	conns       *connection.Store
	history     *history.Log
	settings    sdk.Settings
	host        *sdk.Host
	public      string // this site's public URL
	adminPrefix string // where the host mounts this module's admin pages
}

// New returns a Server.
func New(log *slog.Logger) *Server {
	s := &Server{log: log, jobs: newJobs()}
	s.pages = newPageOwners(s)
	return s
}

// Module returns the sdk.Module to serve.
func (s *Server) Module() sdk.Module {
	return sdk.Module{
		ID:         "sync",
		Version:    "0.1.0",
		Logger:     s.log,
		HTTP:       s.handler(),
		WebSockets: map[string]sdk.WebSocketHandler{"/websocket": s.serveSender, "/live": s.serveLive},
		Operations: s.operations(),
		Configure:  s.configure,
	}
}

func (s *Server) configure(ctx context.Context, env *sdk.Env) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st != nil && s.dbURL == env.DatabaseURL {
		next := *s.st
		next.settings, next.host, next.public, next.adminPrefix = env.Settings, env.Host, env.PublicURL, env.AdminPrefix
		s.st = &next
		return nil
	}
	pool, err := pgxpool.New(ctx, env.DatabaseURL)
	if err != nil {
		return fmt.Errorf("sync: connect database: %w", err)
	}
	store, err := session.Open(ctx, pool, session.Limits{})
	if err != nil {
		pool.Close()
		return fmt.Errorf("sync: %w", err)
	}
	hist, err := history.Open(ctx, pool)
	if err != nil {
		pool.Close()
		return fmt.Errorf("sync: %w", err)
	}
	conns, err := connection.Open(ctx, pool)
	if err != nil {
		pool.Close()
		return fmt.Errorf("sync: %w", err)
	}
	if s.st != nil {
		old := s.st.pool
		defer old.Close()
	}
	s.st, s.dbURL = &state{pool: pool, sessions: store, conns: conns, history: hist, settings: env.Settings, host: env.Host, public: env.PublicURL, adminPrefix: env.AdminPrefix}, env.DatabaseURL
	return nil
}

// errNotReady is returned before the first Configure.
var errNotReady = errors.New("sync: not configured yet")

func (s *Server) state() (*state, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.st == nil {
		return nil, errNotReady
	}
	return s.st, nil
}

// policy returns the incoming-connection policy of the current settings.
func (st *state) policy() session.Policy {
	return session.Policy{
		Mode:            st.settings.String("incoming_mode"),
		PasswordMatches: func(c string) bool { return st.settings.SecretMatches("incoming_password", c) },
	}
}
