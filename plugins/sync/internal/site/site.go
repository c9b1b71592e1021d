// Package site is what the Sync module works on, as its settings last configured
// it: this site's database pool and the stores on it (sessions, connections,
// remotes, history), its settings, its public URL and where the host mounts its
// admin pages. Every other part of the module reads the current Site.
package site

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/follow"
	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/urlguard"
	"github.com/fiberkit/fiberkit/plugins/sync/live"
	"github.com/fiberkit/fiberkit/plugins/sync/remote"
	"github.com/fiberkit/fiberkit/plugins/sync/session"
	"github.com/fiberkit/fiberkit/plugins/sync/syncmetrics"
	"github.com/fiberkit/fiberkit/sdk"
)

// Site is the module's configured state; replaced as a whole when settings change.
type Site struct {
	Pool     *pgxpool.Pool
	Sessions *session.Store
	Conns    *connection.Store
	Remotes  *remote.Store
	History  *history.Log
	// Follows are this site's follows of other sites (the receiving side).
	Follows  *follow.Store
	Settings sdk.Settings
	// Revision is the settings revision Settings are of.
	Revision int64
	Host     *sdk.Host
	// Public is this site's public URL.
	Public string
	// AdminPrefix is where the host mounts this module's admin pages.
	AdminPrefix string
	// Metrics is the module's metric set (nil records nothing).
	Metrics *syncmetrics.Metrics
	// Live is the site's live sync while the live setting is on (nil otherwise);
	// LiveNotReady says why it could not start (wal_level, REPLICATION, …).
	Live         *live.Engine
	LiveNotReady string
}

// defaultMaxConns is the plugin's database pool size when the URL sets none.
const defaultMaxConns = 32

// Current returns the Site as last configured, or ErrNotReady before that.
type Current func() (*Site, error)

// ErrNotReady is returned before the first Configure.
var ErrNotReady = errors.New("sync: not configured yet")

// Open connects to env's database and opens the stores on it; they report to
// metrics (nil: nowhere).
func Open(ctx context.Context, env *sdk.Env, metrics *syncmetrics.Metrics) (*Site, error) {
	cfg, err := pgxpool.ParseConfig(env.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("sync: connect database: %w", err)
	}
	if !strings.Contains(env.DatabaseURL, "pool_max_conns") {
		// Each receiver holds a snapshot's connection and each of its streams (up to
		// wire.MaxStreams) one more while it reads; pgxpool's default (4 on a small
		// machine) would make a second receiver wait for the first.
		cfg.MaxConns = max(cfg.MaxConns, defaultMaxConns)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("sync: connect database: %w", err)
	}
	s := &Site{Pool: pool, Metrics: metrics}
	if s.Sessions, err = session.Open(ctx, pool, session.Limits{OnLockout: metrics.LockedOut}); err == nil {
		if s.History, err = history.Open(ctx, pool); err == nil {
			if s.Conns, err = connection.Open(ctx, pool); err == nil {
				if s.Remotes, err = remote.Open(ctx, pool); err == nil {
					s.Follows, err = follow.Open(ctx, pool)
				}
			}
		}
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("sync: %w", err)
	}
	return s.With(env), nil
}

// With returns a copy of s that takes env's settings (and their revision), host,
// public URL and admin prefix (the database stays s's).
func (s *Site) With(env *sdk.Env) *Site {
	next := *s
	next.Settings, next.Revision, next.Host, next.Public, next.AdminPrefix = env.Settings, env.Revision, env.Host, env.PublicURL, env.AdminPrefix
	return &next
}

// ExcludedPatterns are the excluded_tables setting's patterns: tables no code-based
// request is ever served.
func (s *Site) ExcludedPatterns() []string {
	var out []string
	for _, p := range strings.Split(s.Settings.String("excluded_tables"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Excluded reports whether the excluded_tables setting names table (by a name or a
// pattern where * matches any run of characters; a name like "sales.t" matches as
// a whole). A malformed pattern matches nothing but its exact text.
func (s *Site) Excluded(table string) bool {
	for _, p := range s.ExcludedPatterns() {
		if p == table {
			return true
		}
		if ok, err := path.Match(strings.ReplaceAll(p, "/", ""), strings.ReplaceAll(table, "/", "")); err == nil && ok {
			return true
		}
	}
	return false
}

// IncomingMode is how the site treats receivers: auto_accept, require_approval,
// require_password or deny_all.
func (s *Site) IncomingMode() string { return s.Settings.String("incoming_mode") }

// Policy returns the incoming-connection policy of the current settings.
func (s *Site) Policy() session.Policy {
	return session.Policy{
		Mode:            s.IncomingMode(),
		PasswordMatches: func(c string) bool { return s.Settings.SecretMatches("incoming_password", c) },
	}
}

// Outgoing returns o guarded for a connection from this site to target (pull, the
// Receive page, scheduled pulls, token notices): see urlguard. A refusal matches
// urlguard.Refused.
func (s *Site) Outgoing(ctx context.Context, target string, o client.Options) (client.Options, error) {
	g := urlguard.Guard{Public: s.Public, AllowInternal: s.Settings.Bool("allow_internal_urls")}
	check, err := g.Check(ctx, target)
	if err != nil {
		return o, err
	}
	o.CheckAddr = check
	return o, nil
}
