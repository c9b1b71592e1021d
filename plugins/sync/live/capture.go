package live

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/fiberkit/fiberkit/plugins/sync/capture"
	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/shape"
	"github.com/fiberkit/fiberkit/plugins/sync/shapelog"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// logged is a shape as the capture loop keeps it.
type logged struct {
	handle string
	shape  *shape.Shape
	// snap is the shape's snapshot; nil while it is being taken, when changes wait
	// in pending.
	snap    *shapelog.Snapshot
	pending []pendingTxn
	last    shapelog.Offset
	// changeBytes is what its log holds beyond the snapshot.
	changeBytes int64
	gone        bool
}

// pendingTxn is a transaction's entries for a shape whose snapshot is being taken.
type pendingTxn struct {
	xid     uint32
	entries []shapelog.Entry
}

// capturer is the capture loop's state.
type capturer struct {
	e      *Engine
	reg    *shape.Registry[*logged]
	shapes map[string]*logged // by handle
	tables []catalog.Ident    // in the publication
	setUp  bool               // publication and slot set up by this loop
	snaps  chan snapshotResult
}

// capture runs while this replica holds the capture lock.
func (e *Engine) capture(ctx context.Context) error {
	c := &capturer{e: e, reg: shape.NewRegistry[*logged](), shapes: map[string]*logged{}, snaps: make(chan snapshotResult)}
	// The first reload sets up the publication and slot, whatever the tables.
	if err := c.reload(ctx); err != nil {
		return err
	}
	stream, err := capture.Start(ctx, e.cfg.Pool.Config().ConnConfig.ConnString(), capture.Options{
		Slot: e.cfg.Name, Publication: e.cfg.Name, Buffer: 256})
	if err != nil {
		return err
	}
	defer stream.Close()
	e.cfg.Log.Info("live: capturing", "slot", e.cfg.Name)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-e.kick:
			if err := c.reload(ctx); err != nil {
				return err
			}
		case r := <-c.snaps:
			if err := c.snapshotDone(ctx, r); err != nil {
				return err
			}
		case txn, ok := <-stream.Txns():
			if !ok {
				return fmt.Errorf("replication stream ended: %w", stream.Err())
			}
			batch := []capture.Txn{txn}
			// What is already queued goes in the same write transaction.
			for len(batch) < 256 {
				select {
				case t, ok := <-stream.Txns():
					if !ok {
						return fmt.Errorf("replication stream ended: %w", stream.Err())
					}
					batch = append(batch, t)
					continue
				default:
				}
				break
			}
			if err := c.handle(ctx, batch); err != nil {
				return err
			}
			stream.Ack(batch[len(batch)-1].EndLSN)
		}
	}
}

// reload brings the loop's shapes in line with the store: new ones are registered
// (their tables added to the publication, REPLICA IDENTITY FULL) and snapshotted,
// gone ones dropped.
func (c *capturer) reload(ctx context.Context) error {
	recs, err := c.e.store.List(ctx)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	var fresh []*logged
	for _, r := range recs {
		seen[r.Handle] = true
		if c.shapes[r.Handle] != nil {
			continue
		}
		s, err := shape.Normalize(ctx, c.e.cfg.Pool, r.Spec)
		if err != nil {
			// Its table or a column went: the shape can't be served.
			c.e.cfg.Log.Warn("live: shape no longer valid; retiring it", "handle", r.Handle, "err", err)
			if err := c.e.store.Retire(ctx, r.Handle); err != nil {
				return err
			}
			continue
		}
		l := &logged{handle: r.Handle, shape: s, snap: r.Snap, last: r.Last, changeBytes: r.LogBytes - r.SnapBytes}
		if r.State == shapelog.StateCreating {
			l.snap = nil
			fresh = append(fresh, l)
		}
		c.shapes[r.Handle] = l
		c.reg.Add(s, l)
	}
	for h, l := range c.shapes {
		if !seen[h] {
			c.drop(l)
		}
	}
	if err := c.publish(ctx); err != nil {
		return err
	}
	if len(fresh) == 0 {
		return nil
	}
	// Transactions that changed these tables before the publication and replica
	// identity did must end before the snapshots, which then see them.
	var horizon int64
	if err := c.e.cfg.Pool.QueryRow(ctx, `SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint`).Scan(&horizon); err != nil {
		return fmt.Errorf("snapshot horizon: %w", err)
	}
	for _, l := range fresh {
		go func(l *logged) {
			r := c.e.takeSnapshot(ctx, l.handle, l.shape, uint64(horizon))
			select {
			case c.snaps <- r:
			case <-ctx.Done():
			}
		}(l)
	}
	return nil
}

func (c *capturer) drop(l *logged) {
	l.gone = true
	c.reg.Remove(l.shape, func(o *logged) bool { return o == l })
	delete(c.shapes, l.handle)
}

// publish puts the shapes' tables in the publication and gives them REPLICA
// IDENTITY FULL (an update's or delete's old row tells whether it was in a shape).
func (c *capturer) publish(ctx context.Context) error {
	var tables []catalog.Ident
	for _, t := range c.reg.Tables() {
		id, err := catalog.ResolveIn(ctx, c.e.cfg.Pool, t.Schema, t.Name)
		if err != nil {
			return err
		}
		tables = append(tables, id)
	}
	slices.SortFunc(tables, func(a, b catalog.Ident) int { return int(a.OID) - int(b.OID) })
	if c.setUp && slices.EqualFunc(tables, c.tables, func(a, b catalog.Ident) bool { return a.OID == b.OID }) {
		return nil
	}
	for _, t := range tables {
		var full bool
		if err := c.e.cfg.Pool.QueryRow(ctx, `SELECT relreplident = 'f' FROM pg_class WHERE oid = $1`, t.OID).Scan(&full); err != nil {
			return err
		}
		if !full {
			if _, err := c.e.cfg.Pool.Exec(ctx, "ALTER TABLE "+t.Quoted()+" REPLICA IDENTITY FULL"); err != nil {
				return fmt.Errorf("live sync needs REPLICA IDENTITY FULL on %s (so an update or delete tells which shapes the row was in); run ALTER TABLE %s REPLICA IDENTITY FULL as its owner: %w", t, t.Quoted(), err)
			}
		}
	}
	if err := capture.Setup(ctx, c.e.cfg.Pool, c.e.cfg.Name, tables); err != nil {
		return err
	}
	c.tables, c.setUp = tables, true
	return nil
}

// snapshotDone logs the changes that waited for a shape's snapshot (those of
// transactions it did not see), or retires a shape whose snapshot failed.
func (c *capturer) snapshotDone(ctx context.Context, r snapshotResult) error {
	l := c.shapes[r.handle]
	if r.err != nil {
		c.e.cfg.Log.Warn("live: snapshot failed; retiring the shape", "handle", r.handle, "err", r.err)
		if l != nil {
			c.drop(l)
		}
		return c.e.store.Retire(ctx, r.handle)
	}
	if l == nil || l.gone {
		return nil
	}
	l.snap, l.last = &r.snap, r.last
	var entries []shapelog.Entry
	for _, p := range l.pending {
		if !contains(l.snap, p.xid) {
			entries = append(entries, p.entries...)
		}
	}
	l.pending = nil
	if len(entries) == 0 {
		return nil
	}
	return c.write(ctx, map[*logged][]shapelog.Entry{l: entries})
}

// handle logs a batch of captured transactions for the shapes they concern.
func (c *capturer) handle(ctx context.Context, batch []capture.Txn) error {
	out := map[*logged][]shapelog.Entry{}
	var retire []*logged
	for ti := range batch {
		txn := &batch[ti]
		// This transaction's messages per shape, in order: the last one is marked.
		type item struct {
			off shapelog.Offset
			msg syncapi.Message
		}
		var touched []*logged
		msgs := map[*logged][]item{}
		for i := range txn.Changes {
			ch := &txn.Changes[i]
			if ch.Kind == capture.Truncate {
				for _, t := range ch.Tables {
					c.reg.Each(&t, func(_ *shape.Shape, l *logged) { retire = append(retire, l) })
				}
				continue
			}
			if ch.SchemaChanged {
				c.reg.Each(&capture.Table{Schema: ch.Schema, Name: ch.Table}, func(_ *shape.Shape, l *logged) { retire = append(retire, l) })
				continue
			}
			c.reg.Candidates(ch, func(s *shape.Shape, l *logged) {
				if l.snap != nil && contains(l.snap, txn.XID) {
					return // the snapshot has it
				}
				for k, m := range s.Apply(ch) {
					off := shapelog.Offset{LSN: uint64(txn.CommitLSN), Op: i*2 + k + 1}
					if l.snap != nil && !l.last.Less(off) {
						return // logged before a restart
					}
					if msgs[l] == nil {
						touched = append(touched, l)
					}
					msgs[l] = append(msgs[l], item{off, m})
				}
			})
		}
		for _, l := range touched {
			items := msgs[l]
			items[len(items)-1].msg.Headers.Last = true
			entries := make([]shapelog.Entry, 0, len(items))
			for _, it := range items {
				it.msg.Headers.Txids = []int64{int64(txn.XID)}
				it.msg.Headers.LSN = strconv.FormatUint(uint64(txn.CommitLSN), 10)
				it.msg.Headers.OpPosition = it.off.Op
				body, err := json.Marshal(it.msg)
				if err != nil {
					return fmt.Errorf("encode a change of %s: %w", l.shape.Table, err)
				}
				entries = append(entries, shapelog.Entry{Offset: it.off, Body: body})
			}
			if l.snap == nil {
				l.pending = append(l.pending, pendingTxn{xid: txn.XID, entries: entries})
				continue
			}
			out[l] = append(out[l], entries...)
		}
	}
	if err := c.write(ctx, out); err != nil {
		return err
	}
	for _, l := range retire {
		if l.gone {
			continue
		}
		c.e.cfg.Log.Info("live: table truncated or altered; shape must be refetched", "handle", l.handle, "table", l.shape.Table)
		c.drop(l)
		if err := c.e.store.Retire(ctx, l.handle); err != nil {
			return err
		}
	}
	return nil
}

// write logs entries per shape in one transaction, announces them, and retires
// shapes whose log outgrew the cap.
func (c *capturer) write(ctx context.Context, out map[*logged][]shapelog.Entry) error {
	if len(out) == 0 {
		return nil
	}
	tx, err := c.e.cfg.Pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("log changes: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	handles := make([]string, 0, len(out))
	for l, es := range out {
		if err := shapelog.Append(ctx, tx, l.handle, es); err != nil {
			return err
		}
		handles = append(handles, l.handle)
	}
	if err := shapelog.Notify(ctx, tx, handles); err != nil {
		return fmt.Errorf("log changes: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("log changes: %w", err)
	}
	c.e.hub.wake(handles...)
	for l, es := range out {
		l.last = es[len(es)-1].Offset
		for _, e := range es {
			l.changeBytes += int64(len(e.Body))
		}
		if l.changeBytes > c.e.cfg.LogCap {
			c.e.cfg.Log.Info("live: shape log over its cap; replacing the shape", "handle", l.handle, "bytes", l.changeBytes)
			c.drop(l)
			if err := c.e.store.Retire(ctx, l.handle); err != nil {
				return err
			}
		}
	}
	return nil
}
