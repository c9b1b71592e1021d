// Package live runs a site's live sync: one replica of the site (elected by an
// advisory lock) captures changes from logical replication and logs them for each
// shape they concern (package shapelog, in PostgreSQL); every replica serves shape
// streams from those logs, woken by NOTIFY. A shape's first entries are a snapshot
// taken after the shape was registered with capture; changes of transactions the
// snapshot already saw are skipped, so a reader gets each change once.
package live

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/capture"
	"github.com/fiberkit/fiberkit/plugins/sync/shapelog"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// Config configures an Engine.
type Config struct {
	// Pool is the site's database.
	Pool *pgxpool.Pool
	// Name names the publication and the replication slot (lower case, digits, _);
	// empty means NameFor the database.
	Name string
	// Log receives what capture does and why it stopped.
	Log *slog.Logger
	// LogCap is how many bytes of changes a shape's log holds (beyond its snapshot)
	// before the shape is replaced by a fresh one; 0 means 64 MiB.
	LogCap int64
	// ElectEvery is how often a replica that does not capture tries to take over;
	// 0 means 2 s.
	ElectEvery time.Duration
}

// NameFor returns the publication and slot name of live sync on pool's database:
// "fiberkit_live_" and a digest of the database's name, since replication slots are
// per cluster and two apps' databases may share one.
func NameFor(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	var db string
	if err := pool.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		return "", fmt.Errorf("live sync name: %w", err)
	}
	sum := sha256.Sum256([]byte(db))
	return "fiberkit_live_" + hex.EncodeToString(sum[:8]), nil
}

// maxSnapshots is how many shape snapshots are taken at once.
const maxSnapshots = 4

// lockKey is the advisory lock that elects the capturing replica.
const lockKey = int64(0x46_4b_4c_49_56_45) // "FKLIVE"

// Engine is a replica's live sync.
type Engine struct {
	cfg   Config
	store *shapelog.Store
	hub   *hub

	shapes shapeCache // checked definitions, for readers

	capturing atomic.Bool
	// snapshots bounds the snapshots taken at once: each holds two connections
	// (its read and its write), and a pool shared by many at once would deadlock.
	snapshots chan struct{}
	// kick asks the capture loop to reload the shapes (one was created or went).
	kick chan struct{}

	mu      sync.Mutex
	lastErr string

	cancel context.CancelFunc
	done   sync.WaitGroup
	// closed is closed by Close: streams end with ErrClosed.
	closed    chan struct{}
	closeOnce sync.Once
}

// ErrClosed ends the streams of an engine that was closed (live sync turned off, or
// the module reconfigured onto another database).
var ErrClosed = errors.New("live sync stopped on this replica")

// Start checks that the database can do logical replication (a
// *capture.NotReadyError says what to fix), creates the publication and slot if
// missing, and starts this replica's share of live sync: it serves streams, and
// captures when elected.
func Start(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.Name == "" {
		name, err := NameFor(ctx, cfg.Pool)
		if err != nil {
			return nil, err
		}
		cfg.Name = name
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.LogCap <= 0 {
		cfg.LogCap = 64 << 20
	}
	if cfg.ElectEvery <= 0 {
		cfg.ElectEvery = 2 * time.Second
	}
	if err := capture.Check(ctx, cfg.Pool); err != nil {
		return nil, err
	}
	store, err := shapelog.Open(ctx, cfg.Pool)
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, store: store, hub: newHub(), kick: make(chan struct{}, 1), closed: make(chan struct{}), snapshots: make(chan struct{}, maxSnapshots)}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	e.done.Add(2)
	go func() { defer e.done.Done(); e.listen(runCtx) }()
	go func() { defer e.done.Done(); e.elect(runCtx) }()
	return e, nil
}

// Close stops this replica's live sync (capture and streams); the slot and the
// shapes stay for the next start. See Disable to remove them.
func (e *Engine) Close() {
	e.closeOnce.Do(func() { close(e.closed) })
	e.cancel()
	e.hub.wakeAll()
	e.done.Wait()
}

// Disable removes a site's live sync: every shape goes (readers refetch, and find
// live sync off), and the slot and publication are dropped so no WAL is held.
// Close the site's engines first.
func Disable(ctx context.Context, pool *pgxpool.Pool, name string) error {
	if name == "" {
		n, err := NameFor(ctx, pool)
		if err != nil {
			return err
		}
		name = n
	}
	store, err := shapelog.Open(ctx, pool)
	if err != nil {
		return err
	}
	recs, err := store.List(ctx)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := store.Retire(ctx, r.Handle); err != nil {
			return err
		}
	}
	return capture.Teardown(ctx, pool, name)
}

// listen relays NOTIFY on shapelog.Channel to this replica's readers, and to its
// capture loop when a shape was created or went.
func (e *Engine) listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := func() error {
			pc, err := e.cfg.Pool.Acquire(ctx)
			if err != nil {
				return err
			}
			// The connection is LISTENing: it never goes back to the pool.
			conn := pc.Hijack()
			defer conn.Close(context.Background())
			if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{shapelog.Channel}.Sanitize()); err != nil {
				return err
			}
			// Whatever was announced while not listening: wake everyone to look.
			e.hub.wakeAll()
			e.kickCapture()
			for {
				n, err := conn.WaitForNotification(ctx)
				if err != nil {
					return err
				}
				e.hub.notified(n.Payload)
				if n.Payload == "*" || len(n.Payload) > 0 && (n.Payload[0] == '+' || n.Payload[0] == '-') {
					e.kickCapture()
				}
			}
		}()
		if ctx.Err() != nil {
			return
		}
		e.cfg.Log.Warn("live: listening for shape changes failed; retrying", "err", err)
		sleep(ctx, time.Second)
	}
}

func (e *Engine) kickCapture() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// elect tries for the capture lock until ctx ends; holding it, this replica
// captures. The lock is a session lock on a connection of its own, so a replica that
// dies lets go of it, and of the slot, with its connections.
func (e *Engine) elect(ctx context.Context) {
	for ctx.Err() == nil {
		err := func() error {
			conn, err := pgx.ConnectConfig(ctx, e.cfg.Pool.Config().ConnConfig.Copy())
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			var got bool
			if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, lockKey).Scan(&got); err != nil || !got {
				return err
			}
			e.capturing.Store(true)
			defer e.capturing.Store(false)
			cctx, cancel := context.WithCancel(ctx)
			pinged := make(chan struct{})
			defer func() { cancel(); <-pinged }() // before conn.Close
			// Losing the lock's connection ends capture: another replica may take it.
			go func() {
				defer close(pinged)
				for cctx.Err() == nil {
					sleep(cctx, e.cfg.ElectEvery)
					if err := conn.Ping(cctx); err != nil && cctx.Err() == nil {
						e.cfg.Log.Warn("live: lost the capture lock's connection", "err", err)
						cancel()
						return
					}
				}
			}()
			return e.capture(cctx)
		}()
		if err != nil && ctx.Err() == nil {
			e.setErr(err)
			e.cfg.Log.Warn("live: capture stopped", "err", err)
		}
		sleep(ctx, e.cfg.ElectEvery)
	}
}

func (e *Engine) setErr(err error) {
	e.mu.Lock()
	e.lastErr = err.Error()
	e.mu.Unlock()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Status reports live sync on this replica.
func (e *Engine) Status(ctx context.Context) (syncapi.LiveStatus, error) {
	st := syncapi.LiveStatus{Enabled: true, Capturing: e.capturing.Load()}
	var lag *int64
	err := e.cfg.Pool.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1`,
		e.cfg.Name).Scan(&lag)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return st, fmt.Errorf("slot lag: %w", err)
	}
	if lag != nil {
		st.LagBytes = *lag
	}
	recs, err := e.store.List(ctx)
	if err != nil {
		return st, err
	}
	st.Shapes = len(recs)
	return st, nil
}
