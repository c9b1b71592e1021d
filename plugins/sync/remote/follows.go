package remote

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// FollowOptions configure RunFollows.
type FollowOptions struct {
	// Tick is how often the remotes are looked at (follows to start or to end).
	// Default 2s.
	Tick time.Duration
	// Active, when set, is asked every tick; while it says false (the module is
	// disabled) no follow runs.
	Active func() bool
}

// RefusedWait is how long RunFollows waits before following a remote again after
// its follow returned by itself (the sender refused it, say).
const RefusedWait = time.Minute

// RunFollows runs run for every remote whose schedule is follow, each under its
// remote's advisory lock so that one replica follows it, until ctx ends. A follow
// whose remote is deleted or no longer set to follow is cancelled; one whose run
// returned is started again at the next tick (run is expected to retry what is
// worth retrying itself, and return for what is not). Its outcome goes to the
// remote's last status.
func (s *Store) RunFollows(ctx context.Context, o FollowOptions, run Run) {
	if o.Tick <= 0 {
		o.Tick = 2 * time.Second
	}
	var mu sync.Mutex
	running := map[string]context.CancelFunc{}
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(o.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		want := map[string]bool{}
		if o.Active == nil || o.Active() {
			ids, err := s.followed(ctx)
			if err != nil {
				continue
			}
			for _, id := range ids {
				want[id] = true
			}
		}
		mu.Lock()
		for id, cancel := range running {
			if !want[id] {
				cancel()
			}
		}
		mu.Unlock()
		for id := range want {
			mu.Lock()
			_, on := running[id]
			mu.Unlock()
			if on {
				continue
			}
			unlock, locked, err := s.lock(ctx, id)
			if err != nil || !locked {
				continue // another replica follows it
			}
			// The list was read before the lock: a follow that just ended (on
			// this replica or another) may have failed since, and must wait.
			if ok, err := s.stillFollowed(ctx, id); err != nil || !ok {
				unlock()
				continue
			}
			fctx, cancel := context.WithCancel(ctx)
			mu.Lock()
			running[id] = cancel
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer unlock()
				_ = s.Finished(fctx, id, "following")
				r, token, err := s.Get(fctx, id)
				if err == nil {
					err = run(fctx, r, token)
				}
				s.finish(ctx, id, err)
				mu.Lock()
				delete(running, id)
				mu.Unlock()
				cancel()
			}()
		}
	}
}

// followedWhere selects the remotes to follow now ($1: RefusedWait in seconds).
const followedWhere = `follow AND NOT (last_status LIKE 'failed%' AND last_run_at > now() - make_interval(secs => $1))`

// stillFollowed says whether remote id is still one to follow now, read again
// under its lock.
func (s *Store) stillFollowed(ctx context.Context, id string) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM fiberkit_sync_remotes WHERE id::text = $2 AND `+followedWhere+`)`,
		RefusedWait.Seconds(), id).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("check followed remote %s: %w", id, err)
	}
	return ok, nil
}

// followed lists the ids of the remotes whose schedule is follow, but those whose
// follow failed less than RefusedWait ago (on any replica: the remote's last
// status says so).
func (s *Store) followed(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT id::text FROM fiberkit_sync_remotes WHERE `+followedWhere, RefusedWait.Seconds())
	if err != nil {
		return nil, fmt.Errorf("list followed remotes: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
