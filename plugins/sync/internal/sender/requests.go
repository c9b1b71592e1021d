package sender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/exporter"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// servedSchema is the one schema whose tables a receiver may list and read.
const servedSchema = "public"

// capabilities answers request:capabilities: ours at the top level, PhoenixKit's
// object under "capabilities".
func (p *peer) capabilities(_ context.Context, f wire.Frame) error {
	return p.reply(f, wire.ResponseCapabilities, wire.Capabilities{
		Version: wire.Version, Features: []string{wire.RecordsFeature, wire.StreamFeature, wire.BinaryFeature, wire.SplitFeature, wire.FollowFeature},
		Compression: []string{wire.CompressionZstd, wire.CompressionAuto}, MaxBatchRows: wire.MaxBatchRows, MaxRecords: wire.MaxRecordsLimit,
		PhoenixKit: wire.PhoenixKitCaps(),
	})
}

// tables answers request:tables: the tables the receiver may see, each counted
// without the rows of the tables below it that it may not see.
func (p *peer) tables(ctx context.Context, f wire.Frame) error {
	return p.withSnapshot(ctx, f, func(snap *exporter.Snapshot) (string, any, error) {
		q := snap.Querier()
		all, err := catalog.ListTables(ctx, q, catalog.ListOptions{})
		if err != nil {
			return "", nil, err
		}
		r, err := p.rules(ctx)
		if err != nil {
			return "", nil, err
		}
		tables := []catalog.Table{}
		for _, t := range all {
			id, err := catalog.ResolveIn(ctx, q, t.Schema, t.Name)
			if err != nil {
				return "", nil, err
			}
			ups, err := catalog.Ancestors(ctx, q, id)
			if err != nil {
				return "", nil, err
			}
			if r.refusedBy(id, ups) != "" {
				continue
			}
			hidden, err := r.hiddenBelow(ctx, q, id)
			if err != nil {
				return "", nil, err
			}
			if len(hidden) > 0 {
				sch := &catalog.Schema{Schema: id.Schema, Name: id.Name}
				snap.LeaveOut(sch, hidden)
				if t.Rows, err = snap.Count(ctx, sch); err != nil {
					return "", nil, err
				}
				t.Exact = true
			}
			tables = append(tables, t)
		}
		return wire.ResponseTables, wire.TablesResponse{Tables: tables}, nil
	})
}

// checksum answers request:checksum.
func (p *peer) checksum(ctx context.Context, f wire.Frame, req wire.TableRequest) error {
	return p.withSnapshot(ctx, f, func(snap *exporter.Snapshot) (string, any, error) {
		sch, err := p.schema(ctx, snap, req.Table)
		if err != nil {
			return "", nil, err
		}
		sum, err := snap.Checksum(ctx, sch)
		return wire.ResponseChecksum, wire.ChecksumResponse{Table: req.Table, MD5: sum, Columns: writableNames(sch)}, err
	})
}

// schemaRequest answers request:schema.
func (p *peer) schemaRequest(ctx context.Context, f wire.Frame, req wire.TableRequest) error {
	return p.withSnapshot(ctx, f, func(snap *exporter.Snapshot) (string, any, error) {
		sch, err := p.schema(ctx, snap, req.Table)
		return wire.ResponseSchema, wire.SchemaResponse{Table: req.Table, Schema: sch}, err
	})
}

// count answers request:count: the rows the receiver would read.
func (p *peer) count(ctx context.Context, f wire.Frame, req wire.TableRequest) error {
	return p.withSnapshot(ctx, f, func(snap *exporter.Snapshot) (string, any, error) {
		sch, err := p.schema(ctx, snap, req.Table)
		if err != nil {
			return "", nil, err
		}
		n, err := snap.Count(ctx, sch)
		return wire.ResponseCount, wire.CountResponse{Table: req.Table, Count: n}, err
	})
}

// records answers request:records: a page of rows in key order — PostgreSQL text
// when the receiver asks for wire.EncodingText (ours does), else PhoenixKit's
// JSON-typed values — at most the exporter's page bytes, taken from a permanent
// connection's total before they are read (what a short page leaves is given back).
func (p *peer) records(ctx context.Context, f wire.Frame, req wire.RecordsRequest) error {
	text := req.Encoding == wire.EncodingText
	switch {
	case req.Limit <= 0:
		req.Limit = wire.DefaultRecordsLimit
	case req.Limit > wire.MaxRecordsLimit && !text:
		// A PhoenixKit receiver pages on has_more: serve it our largest page.
		req.Limit = wire.MaxRecordsLimit
	case req.Limit > wire.MaxRecordsLimit:
		return p.fail(f, wire.ErrBadRequest, fmt.Sprintf("limit at most %d", wire.MaxRecordsLimit))
	}
	return p.withSnapshot(ctx, f, func(snap *exporter.Snapshot) (string, any, error) {
		sch, err := p.schema(ctx, snap, req.Table)
		if err != nil {
			return "", nil, err
		}
		limit := req.Limit
		if p.connID != "" {
			// Take the rows from the connection's total before reading them.
			granted, err := p.st.Conns.Reserve(ctx, p.connID, int64(limit))
			if err != nil {
				return "", nil, err
			}
			limit = int(granted)
		}
		var resp any
		var n, size int
		if text {
			page, err := p.textPage(ctx, snap, sch, req, limit)
			if err != nil {
				p.releaseUnsent(ctx, limit, 0)
				return "", nil, err
			}
			for _, rec := range page.Records {
				for _, v := range rec {
					if v != nil {
						size += len(*v)
					}
				}
			}
			n, resp = len(page.Records), wire.RecordsResponse{Table: req.Table, Records: page.Records, Offset: page.Offset, HasMore: page.HasMore}
		} else {
			page, err := snap.RecordsJSON(ctx, sch, req.Offset, limit)
			if err != nil {
				p.releaseUnsent(ctx, limit, 0)
				return "", nil, err
			}
			for _, rec := range page.Records {
				size += len(rec)
			}
			n, resp = len(page.Records), wire.JSONRecordsResponse{Table: req.Table, Records: page.Records, Offset: page.Offset, HasMore: page.HasMore}
		}
		p.releaseUnsent(ctx, limit, n)
		if n > 0 {
			// withSnapshot holds p.mu.
			if p.paged == nil {
				p.paged, p.pagedSince = map[string]int64{}, time.Now()
			}
			if _, seen := p.paged[sch.Name]; !seen {
				p.st.Metrics.TransferStarted("send", "records")
			}
			p.paged[sch.Name] += int64(n)
			p.st.Metrics.Moved("send", int64(n), int64(size))
		}
		return wire.ResponseRecords, resp, nil
	})
}

// textPage reads a page of text records for a FiberKit client, which refuses
// frames over wire.MaxFrameSize: the page is cut by bytes at half a frame, and
// halved again while its answer would not fit (escapes can make JSON text larger
// than the values). A single row too large for a frame is refused: such a table
// moves through stream.v1.
func (p *peer) textPage(ctx context.Context, snap *exporter.Snapshot, sch *catalog.Schema, req wire.RecordsRequest, limit int) (exporter.Page, error) {
	snap.PageBytes = wire.MaxFrameSize / 2
	defer func() { snap.PageBytes = 0 }()
	for {
		page, err := snap.Records(ctx, sch, req.Offset, limit)
		if err != nil {
			return page, err
		}
		b, err := json.Marshal(wire.RecordsResponse{Table: req.Table, Records: page.Records, Offset: page.Offset, HasMore: page.HasMore})
		if err != nil || len(b) <= wire.MaxFrameSize-4096 {
			return page, err
		}
		if len(page.Records) <= 1 {
			return page, errRowTooLarge
		}
		limit = len(page.Records) / 2
	}
}

// errRowTooLarge refuses a text page whose one row does not fit in a frame.
var errRowTooLarge = errors.New("a row is larger than a frame holds; read this table through stream.v1")

// releaseUnsent gives back to a permanent connection's total the rows of reserved
// that a page did not hold (sent of them).
func (p *peer) releaseUnsent(ctx context.Context, reserved, sent int) {
	if p.connID != "" && reserved > sent {
		p.release(ctx, reserved-sent)
	}
}

// release gives rows reserved from a permanent connection's total but not sent
// back to it.
func (p *peer) release(ctx context.Context, rows int) {
	if err := p.st.Conns.Release(ctx, p.connID, int64(rows)); err != nil && ctx.Err() == nil {
		p.srv.log.Warn("release reserved rows", "connection", p.connID, "rows", rows, "err", err)
	}
}

// schema resolves a table the receiver may read (see visible) inside the
// snapshot, under a savepoint so that a failed look-up leaves the snapshot usable,
// and sets the snapshot to leave out the rows of the tables below it the receiver
// may not see. Partitions it may not see are not described either.
func (p *peer) schema(ctx context.Context, snap *exporter.Snapshot, table string) (*catalog.Schema, error) {
	var sch *catalog.Schema
	err := snap.Isolate(ctx, func() error {
		id, hidden, err := p.visible(ctx, snap.Querier(), table)
		if err != nil {
			return err
		}
		if sch, err = catalog.GetSchemaIn(ctx, snap.Querier(), id.Schema, id.Name); err != nil {
			return err
		}
		if sch.Partition != nil && len(hidden) > 0 {
			r, err := p.rules(ctx)
			if err != nil {
				return err
			}
			kept := sch.Partition.Partitions[:0]
			for _, part := range sch.Partition.Partitions {
				if !r.excluded(part.Name) {
					kept = append(kept, part)
				}
			}
			sch.Partition.Partitions = kept
		}
		snap.LeaveOut(sch, hidden)
		return p.applyMasks(ctx, snap, sch)
	})
	return sch, err
}

// withSnapshot runs fn against the connection's snapshot (begun on first use, so
// every table the receiver reads comes from one consistent view), under a
// savepoint so that a request failing in SQL does not break the requests after it,
// and replies with the event and payload fn returns, or the error it failed with.
func (p *peer) withSnapshot(ctx context.Context, f wire.Frame, fn func(*exporter.Snapshot) (string, any, error)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.snap == nil {
		snap, err := exporter.Begin(ctx, p.st.Pool)
		if err != nil {
			p.srv.log.Error("begin snapshot", "err", err)
			return p.fail(f, wire.ErrInternal, "could not read the database")
		}
		p.snap = snap
	}
	var event string
	var v any
	err := p.snap.Isolate(ctx, func() (err error) {
		event, v, err = fn(p.snap)
		return err
	})
	if err != nil {
		return p.failWith(f, err)
	}
	return p.reply(f, event, v)
}

// failWith answers f with the error a request failed with: a connection's
// refusal, unknown_table, or internal_error (logged).
func (p *peer) failWith(f wire.Frame, err error) error {
	var ref *connection.Refusal
	switch {
	case errors.As(err, &ref):
		return p.fail(f, ref.Reason, ref.Detail)
	case errors.Is(err, catalog.ErrUnknownTable):
		return p.fail(f, wire.ErrUnknownTable, err.Error())
	case errors.Is(err, errRowTooLarge):
		return p.fail(f, wire.ErrBadRequest, err.Error())
	}
	p.srv.log.Error("request failed", "event", f.Event, "err", err)
	return p.fail(f, wire.ErrInternal, "the request failed on the sending site")
}

// writableNames lists the columns a receiver writes, in order.
func writableNames(sch *catalog.Schema) []string {
	var out []string
	for _, c := range sch.Writable() {
		out = append(out, c.Name)
	}
	return out
}
