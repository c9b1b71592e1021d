package admin

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
)

// pageOwners looks after Send pages' sessions. A page's session lives while the
// page's live socket renews its lease in the database (Store.Touch) — from whichever
// replica the socket reached — and is released once the lease went unrenewed: for
// grace after a socket closed (a reconnecting page renews it at once), or for window
// after the page was served (its first socket never came). What this process
// remembers (one pending check per owner) only avoids duplicate checks; whether a
// page is gone is decided from the database alone.
type pageOwners struct {
	log     *slog.Logger
	current site.Current
	// grace is how long a closed socket's page has to reconnect (on any replica).
	grace time.Duration
	// window is how long a served page has to open its socket.
	window time.Duration
	// touchEvery is how often a page's socket renews the lease; well under grace.
	touchEvery time.Duration

	mu     sync.Mutex
	checks map[string]*time.Timer // owner → its pending check
}

// leaseTimeout bounds a lease check's database calls.
const leaseTimeout = 5 * time.Second

func newPageOwners(log *slog.Logger, current site.Current) *pageOwners {
	return &pageOwners{log: log, current: current, grace: 5 * time.Second, window: 30 * time.Second, touchEvery: 2 * time.Second,
		checks: map[string]*time.Timer{}}
}

// expect watches a page just served (ctx is its request's) whose session's lease
// runs to lease.
func (p *pageOwners) expect(ctx context.Context, owner string, lease time.Time) {
	p.checkAfter(ctx, owner, lease, p.window)
}

// disconnected is called when a page's socket closes (ctx is the socket's): unless
// the lease is renewed within grace (the page reconnected, here or on another
// replica), the page's sessions are released.
func (p *pageOwners) disconnected(ctx context.Context, owner string) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaseTimeout)
	defer cancel()
	lease, _, err := p.lease(lctx, owner)
	if err != nil {
		lease = time.Time{} // unknown: the check after grace decides on the lease alone
	}
	p.checkAfter(ctx, owner, lease, p.grace)
}

// checkAfter schedules owner's check in d, replacing a pending one: if the lease has
// not moved past mark by then (nobody touched it), owner's sessions are released.
// The check outlives ctx (a page's request or socket).
func (p *pageOwners) checkAfter(ctx context.Context, owner string, mark time.Time, d time.Duration) {
	ctx = context.WithoutCancel(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.checks[owner]; t != nil {
		t.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		p.mu.Lock()
		if p.checks[owner] != t {
			p.mu.Unlock()
			return // replaced by a later check
		}
		delete(p.checks, owner)
		p.mu.Unlock()
		p.check(ctx, owner, mark)
	})
	p.checks[owner] = t
}

// check releases owner's sessions unless their lease moved past mark; when it did
// (a socket somewhere renews it), it checks again once that lease would have run out.
func (p *pageOwners) check(ctx context.Context, owner string, mark time.Time) {
	st, err := p.current()
	if err != nil {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, leaseTimeout)
	defer cancel()
	lease, live, err := p.lease(lctx, owner)
	switch {
	case err != nil:
		p.checkAfter(ctx, owner, mark, p.grace) // the database did not answer: ask again later
	case live && lease.After(mark):
		p.checkAfter(ctx, owner, lease, time.Until(lease)+p.grace)
	default:
		if err := st.Sessions.ReleaseOwner(lctx, owner); err != nil {
			p.log.Warn("release page sessions", "owner", owner, "err", err)
		}
	}
}

// lease returns the latest lease of owner's live sessions; live is false when it has
// none (released, or every lease ran out).
func (p *pageOwners) lease(ctx context.Context, owner string) (time.Time, bool, error) {
	st, err := p.current()
	if err != nil {
		return time.Time{}, false, err
	}
	all, err := st.Sessions.List(ctx)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("page sessions: %w", err)
	}
	var until time.Time
	live := false
	for _, se := range all {
		if se.Owner == owner {
			live = true
			if se.LeaseUntil.After(until) {
				until = se.LeaseUntil
			}
		}
	}
	return until, live, nil
}
