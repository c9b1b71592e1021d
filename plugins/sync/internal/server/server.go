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
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/remote"
	"github.com/fiberkit/fiberkit/plugins/sync/session"
	"github.com/fiberkit/fiberkit/sdk"
	"github.com/fiberkit/fiberkit/sdk/syncclient"
)

// Server is the Sync module. Build one with New and serve Module().
type Server struct {
	log *slog.Logger

	mu    sync.RWMutex
	st    *state
	dbURL string

	pages     *pageOwners
	jobs      *jobs
	scheduler sync.Once
}

// state is what Configure sets up; replaced as a whole when settings change.
type state struct {
	pool        *pgxpool.Pool
	sessions    *session.Store
	conns       *connection.Store
	remotes     *remote.Store
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
	remotes, err := remote.Open(ctx, pool)
	if err != nil {
		pool.Close()
		return fmt.Errorf("sync: %w", err)
	}
	s.scheduler.Do(func() { go s.schedule() })
	if s.st != nil {
		old := s.st.pool
		defer old.Close()
	}
	s.st, s.dbURL = &state{pool: pool, sessions: store, conns: conns, remotes: remotes, history: hist, settings: env.Settings, host: env.Host, public: env.PublicURL, adminPrefix: env.AdminPrefix}, env.DatabaseURL
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

// schedule runs the remotes' scheduled pulls for the life of the process. Replicas
// share the work through the remote store's claims and locks.
func (s *Server) schedule() {
	for {
		st, err := s.state()
		if err == nil && st.settings.Enabled() {
			st.remotes.Schedule(context.Background(), time.Second, func(ctx context.Context, r remote.Remote, token string) error {
				_, err := s.pullRemote(ctx, r, token)
				return err
			})
		}
		time.Sleep(time.Second)
	}
}

// pullRemote pulls a remote's tables with its token.
func (s *Server) pullRemote(ctx context.Context, r remote.Remote, token string) (map[string]syncclient.Result, error) {
	st, err := s.state()
	if err != nil {
		return nil, err
	}
	opts, err := st.outgoing(r.URL, syncclient.Options{Token: token, ReceiverInfo: map[string]any{"site": st.public, "via": "remote " + r.Name}})
	if err != nil {
		return nil, err
	}
	c, err := syncclient.Connect(ctx, r.URL, "", opts)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	strategy, err := importer.ParseStrategy(r.Strategy)
	if err != nil {
		return nil, err
	}
	res, err := c.TransferAll(ctx, st.pool, syncclient.TransferAllOptions{Tables: r.Tables, Strategy: strategy,
		TransferOptions: syncclient.TransferOptions{CreateMissing: true}})
	recordPulls(st, r.URL, "remote:"+r.Name, strategy, nil, res)
	return res, err
}
