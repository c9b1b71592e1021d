// Package server is the Sync module's plugin side: it keeps the module's database
// pool and session store in step with its settings, serves the sender's WebSocket
// endpoint (package wire's protocol), and answers the module's operations.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/remote"
	"github.com/fiberkit/fiberkit/plugins/sync/session"
	"github.com/fiberkit/fiberkit/sdk"
)

// Server is the Sync module. Build one with New and serve Module().
type Server struct {
	log *slog.Logger

	mu    sync.RWMutex
	st    *state
	dbURL string

	pages   *pageOwners
	jobs    *jobs
	limiter *limiter
	// stopSchedule stops the scheduler bound to the current pool (guarded by mu).
	stopSchedule context.CancelFunc
	// receiverIdle ends a receiver's connection when nothing (not even a heartbeat)
	// has come from it for this long, so a vanished peer does not hold a snapshot.
	receiverIdle time.Duration
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

// defaultReceiverIdle is three of the client's 30 s heartbeats.
const defaultReceiverIdle = 90 * time.Second

// New returns a Server.
func New(log *slog.Logger) *Server {
	s := &Server{log: log, jobs: newJobs(), limiter: newLimiter(10, time.Minute), receiverIdle: defaultReceiverIdle}
	// FIBERKIT_SYNC_RECEIVER_IDLE (a Go duration) overrides it; receivers heartbeat
	// every 30 s, so keep it well above that.
	if d, err := time.ParseDuration(os.Getenv("FIBERKIT_SYNC_RECEIVER_IDLE")); err == nil && d > 0 {
		s.receiverIdle = d
	}
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

// configure applies the module's settings. A new database URL gets a new pool (and
// stores on it); the scheduler is rebound to it and the old pool closed once the old
// scheduler has stopped.
func (s *Server) configure(ctx context.Context, env *sdk.Env) error {
	s.mu.Lock()
	if s.st != nil && s.dbURL == env.DatabaseURL {
		next := *s.st
		next.settings, next.host, next.public, next.adminPrefix = env.Settings, env.Host, env.PublicURL, env.AdminPrefix
		s.st = &next
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	st, err := s.open(ctx, env)
	if err != nil {
		return err
	}
	s.mu.Lock()
	var oldPool *pgxpool.Pool
	if s.st != nil {
		oldPool = s.st.pool
	}
	stopOld := s.stopSchedule
	sctx, stop := context.WithCancel(context.Background())
	s.st, s.dbURL, s.stopSchedule = st, env.DatabaseURL, stop
	s.mu.Unlock()
	go s.schedule(sctx, st)
	if stopOld != nil {
		stopOld() // a pull in progress is cancelled and gives its connections back
	}
	if oldPool != nil {
		oldPool.Close()
	}
	return nil
}

// open connects to the database and opens the stores on it.
func (s *Server) open(ctx context.Context, env *sdk.Env) (*state, error) {
	pool, err := pgxpool.New(ctx, env.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("sync: connect database: %w", err)
	}
	store, err := session.Open(ctx, pool, session.Limits{})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("sync: %w", err)
	}
	hist, err := history.Open(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("sync: %w", err)
	}
	conns, err := connection.Open(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("sync: %w", err)
	}
	remotes, err := remote.Open(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("sync: %w", err)
	}
	return &state{pool: pool, sessions: store, conns: conns, remotes: remotes, history: hist, settings: env.Settings,
		host: env.Host, public: env.PublicURL, adminPrefix: env.AdminPrefix}, nil
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

// schedule runs the remotes' scheduled pulls on st's database until ctx ends (the
// database changed, and a scheduler for the new one took over). Replicas share the
// work through the remote store's claims and locks; nothing is claimed while the
// module is disabled.
func (s *Server) schedule(ctx context.Context, st *state) {
	st.remotes.Schedule(ctx, remote.ScheduleOptions{
		Active: func() bool {
			cur, err := s.state()
			return err == nil && cur.settings.Enabled()
		},
	}, func(ctx context.Context, r remote.Remote, token string) error {
		_, err := s.pullRemote(ctx, r, token)
		return err
	})
}

// pullRemote pulls a remote's tables with its token.
func (s *Server) pullRemote(ctx context.Context, r remote.Remote, token string) (map[string]client.Result, error) {
	st, err := s.state()
	if err != nil {
		return nil, err
	}
	opts, err := st.outgoing(r.URL, client.Options{Token: token, ReceiverInfo: map[string]any{"site": st.public, "via": "remote " + r.Name}})
	if err != nil {
		return nil, err
	}
	c, err := client.Connect(ctx, r.URL, "", opts)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	strategy, err := importer.ParseStrategy(r.Strategy)
	if err != nil {
		return nil, err
	}
	res, err := c.TransferAll(ctx, st.pool, client.TransferAllOptions{Tables: r.Tables, Strategy: strategy,
		TransferOptions: client.TransferOptions{CreateMissing: true}})
	recordPulls(st, r.URL, "remote:"+r.Name, strategy, nil, res)
	return res, err
}
