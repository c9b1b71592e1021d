package follow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// RunOptions configure Run.
type RunOptions struct {
	// Follow is what to follow (its ID names it in the Store).
	Follow Follow
	// Connect opens a connection to the sender, as a permanent connection allowed
	// to follow.
	Connect func(ctx context.Context) (*client.Client, error)
	// Copy pulls tables on c: the first copy, read by the sender from the snapshot
	// its change stream starts at. It fails when any table did not arrive whole.
	Copy func(ctx context.Context, c *client.Client, tables []string) error
	// Report, when set, is called with the follow's status every ReportEvery while
	// it runs, and once when Run returns.
	Report      func(ctx context.Context, s syncapi.FollowStatus)
	ReportEvery time.Duration
	// Log receives reconnects (nil: slog.Default).
	Log *slog.Logger
	// MinBackoff and MaxBackoff bound the wait before a reconnect (defaults 1 s, 30 s).
	MinBackoff, MaxBackoff time.Duration
}

// ErrRefused wraps the errors Run gives up on: the sender refused the follow (not
// allowed, its database cannot stream changes, the connection revoked, a table not
// allowed) or cannot follow at all. Anything else is retried.
var ErrRefused = errors.New("the sender refused the follow")

// refusals are the sender's error codes that no retry changes.
var refusals = []string{wire.ErrFollowNotAllowed, wire.ErrLiveUnavailable, wire.ErrUnknownTable,
	"invalid_token", "connection_inactive", "connection_expired", "address_not_allowed", "table_not_allowed", "record_limit"}

// Run follows o.Follow until ctx ends (it returns nil) or the sender refuses (an
// error wrapping ErrRefused): it copies the tables once, then applies the sender's
// changes as they come. A cut connection, a restart of either site or of either
// database, or a failed apply is retried with backoff, resuming from the position
// recorded with the last transaction applied — or, when the sender no longer holds
// the changes after it, by copying again.
func Run(ctx context.Context, pool *pgxpool.Pool, store *Store, o RunOptions) error {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	minB, maxB := o.MinBackoff, o.MaxBackoff
	if minB <= 0 {
		minB = time.Second
	}
	if maxB <= 0 {
		maxB = 30 * time.Second
	}
	if o.Report != nil {
		every := o.ReportEvery
		if every <= 0 {
			every = 2 * time.Second
		}
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					if s, err := store.Get(ctx, o.Follow.ID); err == nil {
						o.Report(ctx, s)
					}
				}
			}
		}()
		defer func() {
			close(stop)
			<-done
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if s, err := store.Get(rctx, o.Follow.ID); err == nil {
				o.Report(rctx, s)
			}
		}()
	}
	backoff := minB
	for {
		began := time.Now()
		err := runOnce(ctx, pool, store, o)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		switch {
		case ctx.Err() != nil:
			_ = store.SetState(rctx, o.Follow.ID, syncapi.FollowStopped, "")
			cancel()
			return nil
		case errors.Is(err, ErrRefused):
			_ = store.SetState(rctx, o.Follow.ID, syncapi.FollowFailed, err.Error())
			cancel()
			return err
		}
		msg := "the connection ended"
		if err != nil {
			msg = err.Error()
		}
		_ = store.SetState(rctx, o.Follow.ID, syncapi.FollowFailed, msg)
		cancel()
		if time.Since(began) > time.Minute {
			backoff = minB // it ran a while: a fresh failure
		}
		log.Warn("follow interrupted; reconnecting", "follow", o.Follow.ID, "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = store.SetState(rctx, o.Follow.ID, syncapi.FollowStopped, "")
			cancel()
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxB)
	}
}

// runOnce connects, resumes or starts the follow, and applies changes until the
// connection or ctx ends.
func runOnce(ctx context.Context, pool *pgxpool.Pool, store *Store, o RunOptions) error {
	f := o.Follow
	c, err := o.Connect(ctx)
	if err != nil {
		return refused(err)
	}
	defer c.Close()
	caps, err := c.Capabilities(ctx)
	if err != nil {
		return err
	}
	if !caps.Follow() {
		return fmt.Errorf("%w: the sender cannot stream changes (it has no follow.v1)", ErrRefused)
	}
	from, err := resume(ctx, c, store, f)
	if err != nil {
		return refused(err)
	}
	if from == "" {
		if from, err = start(ctx, c, store, o); err != nil {
			return refused(err)
		}
	}
	if err := store.SetState(ctx, f.ID, syncapi.FollowFollowing, ""); err != nil {
		return err
	}
	schema := f.Schema
	if schema == "" {
		schema = "public"
	}
	tables := make(map[string]catalog.Ident, len(f.Tables))
	for _, t := range f.Tables {
		tables[t] = catalog.Ident{Schema: schema, Name: t}
	}
	ap, err := NewApplier(ctx, pool, store, f.ID, tables, f.Strategy)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	defer ap.Close()
	err = c.Follow(ctx, from, client.FollowOptions{
		Apply: func(ctx context.Context, part wire.Txn) (bool, error) {
			a, err := ap.Apply(ctx, part)
			return a.Committed || a.Skipped && part.Last, err
		},
		Keepalive: func(ctx context.Context, k wire.Keepalive) {
			if k.CaughtUp {
				_ = store.CaughtUp(ctx, f.ID)
			} else if pos, err := wire.ParseLSN(k.SenderPosition); err == nil {
				_ = store.Heard(ctx, f.ID, pos)
			}
		},
	})
	return refused(err)
}

// resume asks the sender to go on from the follow's recorded position, and returns
// it; "" when there is none to go on from (a new follow, one whose first copy did
// not finish, other tables) or the sender lost the changes after it.
func resume(ctx context.Context, c *client.Client, store *Store, f Follow) (string, error) {
	st, err := store.Get(ctx, f.ID)
	switch {
	case errors.Is(err, ErrNotFound):
		return "", nil
	case err != nil:
		return "", err
	case st.State == syncapi.FollowCopying || st.Position == "" || st.Position == "0/0" || !sameTables(st.Tables, f.Tables):
		return "", nil
	}
	if _, err := c.RequestFollow(ctx, f.Tables, st.Position); err != nil {
		var re *client.RemoteError
		if errors.As(err, &re) && re.Code == wire.ErrFollowLost {
			return "", nil // copy again
		}
		return "", err
	}
	return st.Position, nil
}

// start begins a new follow: the sender's change stream starts at a snapshot, the
// tables are copied from that snapshot, and the changes apply from its position.
func start(ctx context.Context, c *client.Client, store *Store, o RunOptions) (string, error) {
	f := o.Follow
	if err := store.Start(ctx, f); err != nil {
		return "", err
	}
	reply, err := c.RequestFollow(ctx, f.Tables, "")
	if err != nil {
		return "", err
	}
	pos, err := wire.ParseLSN(reply.Position)
	if err != nil {
		return "", fmt.Errorf("follow %s: %w", f.ID, err)
	}
	if err := o.Copy(ctx, c, f.Tables); err != nil {
		return "", fmt.Errorf("follow %s: first copy: %w", f.ID, err)
	}
	if err := store.Following(ctx, f.ID, pos); err != nil {
		return "", err
	}
	return reply.Position, nil
}

// refused marks the sender's refusals (ErrRefused); other errors stay as they are.
func refused(err error) error {
	var re *client.RemoteError
	if errors.As(err, &re) && slices.Contains(refusals, re.Code) {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return err
}

func sameTables(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
