package live

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/shape"
	"github.com/fiberkit/fiberkit/plugins/sync/shapelog"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// readPage is how many log entries a reader fetches at a time.
const readPage = 1000

// recheck bounds how long a waiting stream goes without looking at its shape's
// state, should a NOTIFY have been missed (the listening connection wakes every
// reader when it reconnects, so this is only a backstop: each look costs two
// queries per reader).
const recheck = 30 * time.Second

// InvalidError is a request that cannot be served as given (a bad shape or
// offset); its message says why.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// Stream sends a shape's messages to send: from the request's offset (the snapshot
// rows first for OffsetBeginning), then up-to-date, then changes as they are
// logged, until ctx ends, send fails, or — with req.Once — the first up-to-date. A
// handle that no longer exists (interrupted, dropped, truncated, replaced) gets a
// must-refetch message with the new handle, and the stream goes on from the new
// shape's beginning.
func (e *Engine) Stream(ctx context.Context, req syncapi.StreamRequest, send func(syncapi.StreamMessage) error) error {
	after, now := shapelog.Start, false
	switch {
	case req.Handle == "" && req.Offset == syncapi.OffsetNow:
		now = true
	case req.Handle == "" && req.Offset != "" && req.Offset != syncapi.OffsetBeginning:
		return &InvalidError{Err: fmt.Errorf("offset %q needs the shape's handle", req.Offset)}
	case req.Handle != "":
		var err error
		if after, err = shapelog.ParseOffset(req.Offset); err != nil {
			return &InvalidError{Err: err}
		}
	}
	for {
		// Normalized afresh after the shape went: after an ALTER TABLE it is
		// another (a column more, say).
		normalize := e.normalize
		if req.Handle != "" {
			normalize = e.normalizeFresh
		}
		s, err := normalize(ctx, req.Shape)
		if err != nil {
			return err
		}
		rec, err := e.ensure(ctx, s)
		if err != nil {
			return err
		}
		if req.Handle != "" && req.Handle != rec.Handle {
			m := syncapi.StreamMessage{Handle: rec.Handle, Offset: syncapi.OffsetBeginning,
				Message: syncapi.Message{Headers: syncapi.Headers{Control: syncapi.ControlMustRefetch}}}
			if err := send(m); err != nil {
				return err
			}
			after = shapelog.Start
		}
		req.Handle = rec.Handle
		gone, err := e.serve(ctx, rec.Handle, after, now, req.Once, send)
		if err != nil || !gone {
			return err
		}
		now = false
	}
}

// ensure returns the live shape for s, registering it (and waking the capture
// loop, here or on another replica) if there is none.
func (e *Engine) ensure(ctx context.Context, s *shape.Shape) (*shapelog.Record, error) {
	rec, err := e.store.Live(ctx, s.Hash)
	if err != nil || rec != nil {
		return rec, err
	}
	rec, err = e.store.Create(ctx, s.Hash, s.Spec)
	if err != nil {
		return nil, err
	}
	if _, err := e.cfg.Pool.Exec(ctx, `SELECT pg_notify($1, $2)`, shapelog.Channel, "+"+rec.Handle); err != nil {
		return nil, fmt.Errorf("announce shape: %w", err)
	}
	e.kickCapture()
	return rec, nil
}

// serve streams one handle's log from after; it returns gone when the shape went,
// nil when the stream is over.
func (e *Engine) serve(ctx context.Context, handle string, after shapelog.Offset, now, once bool,
	send func(syncapi.StreamMessage) error) (gone bool, err error) {
	defer e.hub.subscribe(handle)()
	ready := false
	told := false // up-to-date was sent and nothing since
	for {
		wake := e.hub.wait(handle)
		n := 0
		if ready {
			if n, err = e.sendLog(ctx, handle, &after, send); err != nil {
				return false, err
			}
		}
		if n > 0 {
			told = false
			continue // more may have come: read again before waiting
		}
		// Nothing new: is the shape still there (a retired one's log is deleted)?
		rec, err := e.store.Get(ctx, handle)
		if err != nil {
			return false, err
		}
		if rec == nil || rec.State == shapelog.StateGone {
			return true, nil
		}
		if !ready && rec.State == shapelog.StateReady {
			ready = true
			if now {
				after = rec.Last
			}
			continue
		}
		if ready && !told {
			told = true
			m := syncapi.StreamMessage{Handle: handle, Offset: after.String(),
				Message: syncapi.Message{Headers: syncapi.Headers{Control: syncapi.ControlUpToDate}}}
			if err := send(m); err != nil {
				return false, err
			}
			if once {
				return false, nil
			}
		}
		t := time.NewTimer(recheck)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, nil
		case <-e.closed:
			t.Stop()
			return false, ErrClosed
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// sendLog sends what the log holds after *after, moving it; n is how many entries.
func (e *Engine) sendLog(ctx context.Context, handle string, after *shapelog.Offset, send func(syncapi.StreamMessage) error) (int, error) {
	n := 0
	for {
		entries, err := e.store.Read(ctx, handle, *after, readPage)
		if err != nil {
			return n, err
		}
		for _, en := range entries {
			var m syncapi.Message
			if err := json.Unmarshal(en.Body, &m); err != nil {
				return n, fmt.Errorf("shape %s: entry %s: %w", handle, en.Offset, err)
			}
			if err := send(syncapi.StreamMessage{Handle: handle, Offset: en.Offset.String(), Message: m}); err != nil {
				return n, err
			}
			*after = en.Offset
			n++
		}
		if len(entries) < readPage {
			return n, nil
		}
	}
}

// Interrupt ends the streams of every live shape matching m (each field set must
// equal the shape's) and makes their readers refetch; it returns how many shapes.
func (e *Engine) Interrupt(ctx context.Context, m syncapi.ShapeMatch) (int, error) {
	recs, err := e.store.List(ctx)
	if err != nil {
		return 0, err
	}
	var where string
	if m.Where != "" && m.Table != "" {
		// A where clause is compared as normalized, like the shape's own.
		s, err := shape.Normalize(ctx, e.cfg.Pool, syncapi.ShapeSpec{Namespace: m.Namespace, Table: m.Table, Where: m.Where, Params: m.Params})
		if err != nil {
			return 0, &InvalidError{Err: err}
		}
		where = s.CanonicalWhere()
	}
	n := 0
	for _, r := range recs {
		sp := r.Spec
		if m.Namespace != "" && m.Namespace != sp.Namespace || m.Table != "" && m.Table != sp.Table ||
			len(m.Columns) > 0 && !sameSet(m.Columns, sp.Columns) {
			continue
		}
		if m.Where != "" {
			s, err := shape.Normalize(ctx, e.cfg.Pool, sp)
			if err != nil || where == "" && sp.Where != m.Where || where != "" && s.CanonicalWhere() != where {
				continue
			}
		} else if len(m.Params) > 0 && !slices.Equal(m.Params, sp.Params) {
			continue
		}
		if err := e.store.Retire(ctx, r.Handle); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// Shapes lists the live shapes.
func (e *Engine) Shapes(ctx context.Context) ([]syncapi.ShapeInfo, error) {
	recs, err := e.store.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]syncapi.ShapeInfo, 0, len(recs))
	for _, r := range recs {
		out = append(out, syncapi.ShapeInfo{Handle: r.Handle, Shape: r.Spec, Subscribers: e.hub.subscribers(r.Handle),
			LogEntries: r.LogEntries, LogBytes: r.LogBytes, Offset: r.Last.String(), CreatedAt: r.CreatedAt.UTC().Format(time.RFC3339)})
	}
	return out, nil
}

// Drop retires one shape: its readers refetch. It reports whether it was live.
func (e *Engine) Drop(ctx context.Context, handle string) (bool, error) {
	r, err := e.store.Get(ctx, handle)
	if err != nil || r == nil || r.State == shapelog.StateGone {
		return false, err
	}
	return true, e.store.Retire(ctx, handle)
}

// PollRequest is one request of a reader that polls instead of holding a stream
// open (Electric's HTTP API: a request per page, long-polls when live).
type PollRequest struct {
	Shape syncapi.ShapeSpec
	// Handle and Offset as a stream's: empty or OffsetBeginning from the start,
	// OffsetNow for changes only, else the handle and the last offset received.
	Handle, Offset string
	// Live waits up to Wait for changes when the reader is caught up.
	Live bool
	Wait time.Duration
	// Limit bounds the entries returned (0: readPage).
	Limit int
}

// PollResult is a poll's answer.
type PollResult struct {
	// Handle is the shape's handle. MustRefetch says the requested handle is gone
	// (or the offset is not one of it): start again from the beginning of Handle.
	Handle      string
	MustRefetch bool
	// Messages are the entries after the request's offset, in order.
	Messages []syncapi.StreamMessage
	// Offset is where to continue from; UpToDate says nothing more is logged yet.
	Offset   string
	UpToDate bool
}

// Poll answers one poll: the shape's entries after the offset, or — live and caught
// up — those that arrive within Wait.
func (e *Engine) Poll(ctx context.Context, req PollRequest) (PollResult, error) {
	s, err := e.normalize(ctx, req.Shape)
	if err != nil {
		return PollResult{}, err
	}
	limit := req.Limit
	if limit <= 0 {
		limit = readPage
	}
	after := shapelog.Start
	switch {
	case req.Handle == "" && (req.Offset == "" || req.Offset == syncapi.OffsetBeginning || req.Offset == syncapi.OffsetNow):
	case req.Handle == "":
		return PollResult{}, &InvalidError{Err: fmt.Errorf("offset %q needs the shape's handle", req.Offset)}
	default:
		if after, err = shapelog.ParseOffset(req.Offset); err != nil {
			return PollResult{}, &InvalidError{Err: err}
		}
	}
	// refetch answers a poll whose shape went (or whose handle is not this shape's):
	// the shape, made again if need be, from its beginning.
	refetch := func() (PollResult, error) {
		fresh, err := e.normalizeFresh(ctx, req.Shape)
		if err != nil {
			return PollResult{}, err
		}
		again, err := e.ensure(ctx, fresh)
		if err != nil {
			return PollResult{}, err
		}
		return PollResult{Handle: again.Handle, MustRefetch: true}, nil
	}
	var rec *shapelog.Record
	if req.Handle != "" {
		// A poll that resumes looks up its handle alone (the common case: one query),
		// and it must be this shape's: a handle of another shape is refused.
		if rec, err = e.store.Get(ctx, req.Handle); err != nil {
			return PollResult{}, err
		}
		if rec == nil || rec.Hash != s.Hash || rec.State == shapelog.StateGone {
			return refetch()
		}
	} else if rec, err = e.ensure(ctx, s); err != nil {
		return PollResult{}, err
	}
	res := PollResult{Handle: rec.Handle}
	defer e.hub.subscribe(rec.Handle)()
	// The shape's snapshot may still be being taken: wait for it (bounded by ctx).
	for rec.State == shapelog.StateCreating {
		wake := e.hub.wait(rec.Handle)
		if rec, err = e.store.Get(ctx, rec.Handle); err != nil {
			return res, err
		}
		if rec == nil || rec.State == shapelog.StateGone {
			return refetch()
		}
		if rec.State != shapelog.StateCreating {
			break
		}
		if err := e.waitWake(ctx, wake, recheck); err != nil {
			return res, err
		}
	}
	if req.Handle == "" && req.Offset == syncapi.OffsetNow {
		after = rec.Last
	}
	deadline := time.Now().Add(req.Wait)
	woken := false // the shape's state was last read before a wake-up
	for {
		wake := e.hub.wait(rec.Handle)
		if woken {
			// A wake-up is a change of the log, or the shape going (whose log is
			// deleted with it): which one, the record says.
			if gone, err := e.gone(ctx, rec.Handle); err != nil || gone {
				if err != nil {
					return res, err
				}
				return refetch()
			}
		}
		entries, err := e.store.Read(ctx, rec.Handle, after, limit)
		if err != nil {
			return res, err
		}
		for _, en := range entries {
			var m syncapi.Message
			if err := json.Unmarshal(en.Body, &m); err != nil {
				return res, fmt.Errorf("shape %s: entry %s: %w", rec.Handle, en.Offset, err)
			}
			res.Messages = append(res.Messages, syncapi.StreamMessage{Handle: rec.Handle, Offset: en.Offset.String(), Message: m})
			after = en.Offset
		}
		res.Offset = after.String()
		if len(entries) == limit {
			return res, nil // more to read: not up to date
		}
		if len(entries) > 0 || !req.Live {
			res.UpToDate = true
			return res, nil
		}
		// Live and caught up: wait for the log to grow (a NOTIFY wakes the hub),
		// up to the deadline. No periodic look meanwhile: thousands of idle polls
		// would cost queries for nothing.
		left := time.Until(deadline)
		if left <= 0 {
			res.UpToDate = true
			return res, nil
		}
		if err := e.waitWake(ctx, wake, left); err != nil {
			return res, err
		}
		woken = true
	}
}

// gone reports whether a shape went (its log is deleted with it).
func (e *Engine) gone(ctx context.Context, handle string) (bool, error) {
	rec, err := e.store.Get(ctx, handle)
	if err != nil {
		return false, err
	}
	return rec == nil || rec.State == shapelog.StateGone, nil
}

// waitWake waits for wake, d, ctx or the engine closing.
func (e *Engine) waitWake(ctx context.Context, wake <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-e.closed:
		return ErrClosed
	case <-wake:
	case <-t.C:
	}
	return nil
}
