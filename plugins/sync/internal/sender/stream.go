package sender

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/exporter"
	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/session"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
	"github.com/fiberkit/fiberkit/sdk"
)

// liveStream is one running fast-path stream.
type liveStream struct {
	cancel context.CancelFunc
	// byReceiver is set when the receiver sent stream:cancel, so the history says
	// so even if its connection closes before the stream notices.
	byReceiver atomic.Bool

	// Credit is tied to sequence numbers: only an ack of a batch sent and not yet
	// acknowledged adds credit, and the batches in flight plus the credit never
	// pass wire.MaxCredit, however many acks come.
	mu     sync.Mutex
	credit int    // batches that may still be sent
	sent   uint32 // the last batch's seq
	acked  uint32 // the highest seq acknowledged
	// more wakes the streamer when credit came (one slot: the queue is bounded).
	more chan struct{}
	// auto is set for a stream started with wire.CompressionAuto, whose receiver
	// switches compress with its acks.
	auto     bool
	compress atomic.Bool
}

// switchCompression applies an ack's compression switch to an auto stream.
func (ls *liveStream) switchCompression(c string) {
	if !ls.auto {
		return
	}
	switch c {
	case wire.CompressionZstd:
		ls.compress.Store(true)
	case wire.CompressionNone:
		ls.compress.Store(false)
	}
}

// grant applies an ack of batches up to seq with credit n, and reports whether it
// added any: an ack of a seq not sent, or not past the last one acknowledged, adds
// nothing.
func (ls *liveStream) grant(seq uint32, n int) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if seq <= ls.acked || seq > ls.sent || n <= 0 {
		return false
	}
	ls.acked = seq
	inFlight := int(ls.sent - ls.acked)
	ls.credit = min(ls.credit+min(n, wire.MaxCredit), wire.MaxCredit-inFlight)
	select {
	case ls.more <- struct{}{}:
	default:
	}
	return true
}

// take waits for credit and uses one: the caller sends batch seq next.
func (ls *liveStream) take(ctx context.Context) (seq uint32, err error) {
	for {
		ls.mu.Lock()
		if ls.credit > 0 {
			ls.credit--
			ls.sent++
			seq = ls.sent
			ls.mu.Unlock()
			return seq, nil
		}
		ls.mu.Unlock()
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-ls.more:
		}
	}
}

// errCancelled is how the history words a stream the receiver cancelled.
var errCancelled = errors.New("cancelled by the receiver")

// startStream answers stream:start and begins a fast-path stream: binary batch
// frames, at most `credit` unacknowledged, each read from the connection's snapshot.
func (p *peer) startStream(ctx context.Context, f wire.Frame, req wire.Start) error {
	if req.BatchRows <= 0 {
		req.BatchRows = wire.DefaultBatchRows
	}
	if req.BatchRows > wire.MaxBatchRows || req.Credit < 0 || req.Credit > wire.MaxCredit || !knownCompression(req.Compression) || req.Encoding != "" && req.Encoding != wire.EncodingBinary {
		return p.fail(f, wire.ErrBadRequest, fmt.Sprintf("batch_rows ≤ %d, credit ≤ %d, compression zstd, auto or none, encoding binary or none", wire.MaxBatchRows, wire.MaxCredit))
	}
	if req.Credit == 0 {
		req.Credit = wire.DefaultCredit
	}
	var sch *catalog.Schema
	var err error
	p.mu.Lock()
	if _, dup := p.streams[req.Stream]; dup {
		p.mu.Unlock()
		return p.fail(f, wire.ErrBadRequest, "stream id in use")
	}
	if len(p.streams) >= wire.MaxStreams {
		p.mu.Unlock()
		return p.fail(f, wire.ErrTooManyStreams, fmt.Sprintf("at most %d streams at once per connection; start another when one ends", wire.MaxStreams))
	}
	if p.snap == nil {
		if p.snap, err = exporter.Begin(ctx, p.st.Pool); err != nil {
			p.mu.Unlock()
			return p.fail(f, wire.ErrInternal, "could not read the database")
		}
	}
	sch, err = p.schema(ctx, p.snap, req.Table)
	if err != nil {
		p.mu.Unlock()
		return p.failWith(f, err)
	}
	sctx, scancel := context.WithCancel(ctx)
	ls := &liveStream{cancel: scancel, credit: req.Credit, more: make(chan struct{}, 1), auto: req.Compression == wire.CompressionAuto}
	ls.compress.Store(req.Compression == wire.CompressionZstd)
	p.streams[req.Stream] = ls
	p.mu.Unlock()
	if err := p.ok(f, map[string]any{"stream": req.Stream, "columns": writableNames(sch)}); err != nil {
		return err
	}
	p.progress(ctx, map[string]any{"table": req.Table})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer func() {
			scancel()
			p.mu.Lock()
			delete(p.streams, req.Stream)
			p.mu.Unlock()
		}()
		p.runStream(ctx, sctx, ls, sch, req)
	}()
	return nil
}

// runStream streams req's table on sctx (ctx is the connection's), records the
// outcome in the history and tells the receiver why a stream failed.
func (p *peer) runStream(ctx, sctx context.Context, ls *liveStream, sch *catalog.Schema, req wire.Start) {
	started := time.Now()
	p.st.Metrics.TransferStarted("send", "")
	rows, bytes, err := p.stream(sctx, sch, req, ls)
	cancelled := err != nil && (ls.byReceiver.Load() || sctx.Err() != nil && ctx.Err() == nil)
	if cancelled {
		err = errCancelled
	}
	rec := history.Transfer{Direction: "send", Peer: p.addr, Table: req.Table, Rows: rows, Bytes: bytes,
		Duration: time.Since(started), Status: "done", StartedBy: p.startedBy(), Masks: p.maskedRules(catalog.IdentOf(sch).String())}
	switch {
	case cancelled:
		rec.Status, rec.Error = "cancelled", err.Error()
		p.st.Metrics.TransferCancelled("send", "", rec.Duration)
	case err != nil:
		rec.Status, rec.Error = "failed", err.Error()
		p.st.Metrics.TransferFailed("send", "", rec.Duration)
	default:
		p.st.Metrics.TransferFinished("send", "", rec.Duration)
	}
	rctx, rcancel := detached(ctx)
	p.record(rctx, rec)
	rcancel()
	var ref *connection.Refusal
	switch {
	case errors.As(err, &ref):
		_ = p.push(wire.StreamError, wire.StreamErr{Stream: req.Stream, Error: ref.Reason, Message: ref.Detail})
	case errors.Is(err, exporter.ErrNoResume):
		_ = p.push(wire.StreamError, wire.StreamErr{Stream: req.Stream, Error: wire.ErrBadRequest, Message: exporter.ErrNoResume.Error()})
	case errors.Is(err, exporter.ErrNoRange):
		_ = p.push(wire.StreamError, wire.StreamErr{Stream: req.Stream, Error: wire.ErrBadRequest, Message: exporter.ErrNoRange.Error()})
	case err != nil && sctx.Err() != nil:
		// Cancelled by the receiver (or the connection ended): nothing to tell.
	case err != nil && ctx.Err() == nil:
		p.srv.log.Error("stream failed", "table", req.Table, "err", err)
		_ = p.push(wire.StreamError, wire.StreamErr{Stream: req.Stream, Error: wire.ErrInternal, Message: "the stream failed on the sending site"})
	}
}

// ack answers stream:ack: the receiver's credit goes to its stream when the ack
// acknowledges a batch sent and not acknowledged before (see liveStream.grant).
func (p *peer) ack(_ context.Context, f wire.Frame, ack wire.Ack) error {
	p.mu.Lock()
	ls, ok := p.streams[ack.Stream]
	p.mu.Unlock()
	if ok && ls.grant(ack.Seq, ack.Credit) {
		ls.switchCompression(ack.Compression)
	}
	return nil
}

// cancelStream answers stream:cancel: the stream ends, recorded as cancelled.
func (p *peer) cancelStream(_ context.Context, f wire.Frame, sc wire.StreamRef) error {
	p.mu.Lock()
	if ls, ok := p.streams[sc.Stream]; ok {
		ls.byReceiver.Store(true)
		ls.cancel()
	}
	p.mu.Unlock()
	return nil
}

// progress tells the session (what the Send page shows about this receiver) what
// is being sent; a permanent connection has no session.
func (p *peer) progress(ctx context.Context, progress map[string]any) {
	if p.sess.ID == "" {
		return
	}
	if err := p.st.Sessions.Update(ctx, p.sess.ID, session.StatusTransferring, progress); err != nil && ctx.Err() == nil {
		p.srv.log.Warn("update session progress", "session", p.sess.ID, "err", err)
	}
}

// progressEvery is how often a stream records its advance on the session.
const progressEvery = 500 * time.Millisecond

// knownCompression reports whether c is a compression stream:start may ask for.
func knownCompression(c string) bool {
	return c == "" || c == wire.CompressionZstd || c == wire.CompressionAuto
}

// stream sends the table's rows after req.AfterKey (up to req.UntilKey, when
// set: one range of a split table) — one read of the table on a
// connection joining the snapshot, cut into batches — while the receiver grants
// credit, then stream:end.
func (p *peer) stream(ctx context.Context, sch *catalog.Schema, req wire.Start, ls *liveStream) (rows, sent int64, err error) {
	p.mu.Lock()
	if p.snap == nil {
		p.mu.Unlock()
		return 0, 0, errors.New("snapshot closed")
	}
	ts, err := p.snap.Stream(ctx, sch, req.AfterKey, req.UntilKey, req.Encoding == wire.EncodingBinary)
	p.mu.Unlock()
	if err != nil {
		return 0, 0, err
	}
	codec := wire.NewCodec()
	defer codec.Close()
	after := req.AfterKey
	var seq uint32
	var frame []byte
	granted := 0 // rows reserved from a permanent connection's total for the batch
	var reported time.Time
	o := exporter.StreamOptions{BatchRows: req.BatchRows}
	if p.connID != "" {
		// Every batch: the connection must still stand (a revocation, suspension,
		// expiry, the end of its hours or a new token stops the stream), and the
		// batch's rows are taken from its total before they are sent.
		o.Size = func(ctx context.Context, want int) (int, error) {
			if _, err := p.st.Conns.Standing(ctx, p.connID, p.token, p.addr); err != nil {
				return 0, err
			}
			n, err := p.st.Conns.Reserve(ctx, p.connID, int64(want))
			granted = int(n)
			return granted, err
		}
	}
	err = ts.Run(ctx, p.st.Pool, o, func(b exporter.Batch) error {
		if granted > b.Rows {
			p.release(ctx, granted-b.Rows) // the table ended before the batch filled
		}
		granted = 0
		if b.Rows > 0 {
			next, err := ls.take(ctx)
			if err != nil {
				return err
			}
			seq = next
			frame, err = codec.EncodeBatch(frame[:0], wire.Batch{Stream: req.Stream, Seq: seq, Rows: uint32(b.Rows), LastKey: b.LastKey, Binary: b.Binary, Data: b.Data}, ls.compress.Load())
			if err != nil {
				return err
			}
			if err := p.c.WriteMessage(sdk.BinaryMessage, frame); err != nil {
				return err
			}
			rows += int64(b.Rows)
			sent += int64(len(frame))
			after = b.LastKey
			p.st.Metrics.Moved("send", int64(b.Rows), int64(len(frame)))
			if time.Since(reported) >= progressEvery {
				// What the Send page shows: a database write, so not every batch.
				p.progress(ctx, map[string]any{"table": req.Table, "rows": rows})
				reported = time.Now()
			}
		}
		if b.Done {
			return p.push(wire.StreamEnd, wire.End{Stream: req.Stream, Batches: seq, Rows: rows, LastKey: after})
		}
		return nil
	})
	return rows, sent, err
}
