package client

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// Follow reports whether the sender can stream its tables' changes (follow.v1).
func (c Capabilities) Follow() bool { return slices.Contains(c.Features, wire.FollowFeature) }

// RequestFollow opens a follow of tables on the sender (request:follow). Without
// from, the sender starts a new one: its change stream begins exactly where the
// connection's snapshot was taken, so the tables pulled next on this client are the
// copy the changes apply to. With from (a position this site recorded) it resumes.
// A *RemoteError says why the sender refused (wire.ErrFollowNotAllowed,
// wire.ErrFollowLost, wire.ErrLiveUnavailable, …).
func (c *Client) RequestFollow(ctx context.Context, tables []string, from string) (wire.FollowReply, error) {
	var reply wire.FollowReply
	if err := c.call(ctx, wire.RequestFollow, wire.FollowRequest{Tables: tables, From: from}, &reply); err != nil {
		return reply, fmt.Errorf("follow: %w", err)
	}
	return reply, nil
}

// FollowOptions configure Follow.
type FollowOptions struct {
	// Credit is how many transactions the sender may send ahead of the acks
	// (0: wire.DefaultFollowCredit).
	Credit int
	// Apply is called with each part of each transaction, in order. When it
	// returns done (the transaction is applied and its position recorded, or it
	// was a replay already applied), the position is acknowledged to the sender.
	Apply func(ctx context.Context, part wire.Txn) (done bool, err error)
	// Keepalive, when set, is called with the sender's idle keepalives.
	Keepalive func(ctx context.Context, k wire.Keepalive)
}

// followQueue bounds the follow frames waiting for Apply; a full queue holds the
// reader (and so the sender, through TCP) until Apply catches up.
const followQueue = 256

// Follow streams the sender's changes after from (follow:start) to o.Apply until
// ctx ends (nil), the connection ends (its error), Apply fails (its error, the
// connection is then best closed) or the sender ends the follow (a *RemoteError).
// RequestFollow must have been answered first.
func (c *Client) Follow(ctx context.Context, from string, o FollowOptions) error {
	if o.Credit <= 0 {
		o.Credit = wire.DefaultFollowCredit
	}
	route := &followRoute{frames: make(chan wire.Frame, followQueue), stop: make(chan struct{})}
	ch := route.frames
	c.mu.Lock()
	if c.follow != nil {
		c.mu.Unlock()
		return fmt.Errorf("follow: already following on this connection")
	}
	c.follow = route
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.follow = nil
		c.mu.Unlock()
		close(route.stop)
	}()
	if _, err := c.request(ctx, c.topic, wire.FollowStart, wire.FollowStartPayload{From: from, Credit: o.Credit}); err != nil {
		return fmt.Errorf("follow: start: %w", err)
	}
	for {
		var f wire.Frame
		select {
		case <-ctx.Done():
			return nil
		case <-c.done:
			return c.followClosed(ch)
		case f = <-ch:
		}
		switch f.Event {
		case wire.FollowTxn:
			var t wire.Txn
			if err := json.Unmarshal(f.Payload, &t); err != nil {
				return fmt.Errorf("%w: follow:txn: %v", ErrProtocol, err)
			}
			done, err := o.Apply(ctx, t)
			if err != nil {
				return err
			}
			if done {
				if err := c.write(wire.New(nil, nil, c.topic, wire.FollowAck, wire.FollowAckPayload{Position: t.Position, Credit: 1})); err != nil {
					return err
				}
			}
		case wire.FollowKeepalive:
			var k wire.Keepalive
			if err := json.Unmarshal(f.Payload, &k); err == nil && o.Keepalive != nil {
				o.Keepalive(ctx, k)
			}
		case wire.FollowEnd:
			return followEnd(f)
		}
	}
}

// followClosed is what a Follow returns when the connection ended: the sender's
// follow:end when it came before the close (still queued: select picks among
// ready cases at random), else the close's error. Transactions still queued are
// not applied: unacknowledged, they come again after a reconnect.
func (c *Client) followClosed(ch <-chan wire.Frame) error {
	for {
		select {
		case f := <-ch:
			if f.Event == wire.FollowEnd {
				return followEnd(f)
			}
		default:
			return c.closeErr()
		}
	}
}

// followEnd is the error a follow:end frame carries.
func followEnd(f wire.Frame) error {
	var e wire.FollowEndPayload
	_ = json.Unmarshal(f.Payload, &e)
	return &RemoteError{Code: e.Error, Message: e.Message}
}

// followRoute is where the reader hands a running Follow its frames.
type followRoute struct {
	frames chan wire.Frame
	stop   chan struct{} // closed when the Follow returned
}

// routeFollow hands a follow frame to the running Follow, waiting while its queue
// is full; without a Follow running the frame is dropped.
func (c *Client) routeFollow(f wire.Frame) {
	c.mu.Lock()
	r := c.follow
	c.mu.Unlock()
	if r == nil {
		return
	}
	select {
	case r.frames <- f:
	case <-r.stop:
	}
}
