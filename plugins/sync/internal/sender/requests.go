package sender

import (
	"context"
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

// capabilities answers request:capabilities.
func (p *peer) capabilities(_ context.Context, f wire.Frame) error {
	return p.reply(f, wire.ResponseCapabilities, wire.Capabilities{
		Version: wire.Version, Features: []string{wire.RecordsFeature, wire.StreamFeature},
		Compression: []string{"zstd"}, MaxBatchRows: wire.MaxBatchRows, MaxRecords: wire.MaxRecordsLimit,
	})
}

// tables answers request:tables: the tables the receiver may see.
func (p *peer) tables(ctx context.Context, f wire.Frame) error {
	return p.withSnapshot(ctx, f, func(snap *exporter.Snapshot) (string, any, error) {
		all, err := catalog.ListTables(ctx, snap.Querier(), catalog.ListOptions{})
		tables := []catalog.Table{}
		for _, t := range all {
			if p.tableAllowed(ctx, t.Name) {
				tables = append(tables, t)
			}
		}
		return wire.ResponseTables, wire.TablesResponse{Tables: tables}, err
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

// count answers request:count.
func (p *peer) count(ctx context.Context, f wire.Frame, req wire.TableRequest) error {
	return p.withSnapshot(ctx, f, func(snap *exporter.Snapshot) (string, any, error) {
		if _, err := p.schema(ctx, snap, req.Table); err != nil {
			return "", nil, err
		}
		n, err := catalog.Count(ctx, snap.Querier(), req.Table)
		return wire.ResponseCount, wire.CountResponse{Table: req.Table, Count: n}, err
	})
}

// records answers request:records: a page of rows in key order, taken from a
// permanent connection's total before they are read.
func (p *peer) records(ctx context.Context, f wire.Frame, req wire.RecordsRequest) error {
	if req.Limit <= 0 {
		req.Limit = wire.DefaultRecordsLimit
	}
	if req.Offset < 0 || req.Limit > wire.MaxRecordsLimit {
		return p.fail(f, wire.ErrBadRequest, fmt.Sprintf("offset must be ≥ 0 and limit at most %d", wire.MaxRecordsLimit))
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
		page, err := snap.Records(ctx, sch, req.Offset, limit)
		if p.connID != "" {
			p.release(ctx, limit-len(page.Records))
		}
		if err == nil && len(page.Records) > 0 {
			// withSnapshot holds p.mu.
			if p.paged == nil {
				p.paged, p.pagedSince = map[string]int64{}, time.Now()
			}
			p.paged[sch.Name] += int64(len(page.Records))
		}
		return wire.ResponseRecords, wire.RecordsResponse{Table: req.Table, Records: page.Records, Offset: page.Offset, HasMore: page.HasMore}, err
	})
}

// release gives rows reserved from a permanent connection's total but not sent
// back to it.
func (p *peer) release(ctx context.Context, rows int) {
	if err := p.st.Conns.Release(ctx, p.connID, int64(rows)); err != nil && ctx.Err() == nil {
		p.srv.log.Warn("release reserved rows", "connection", p.connID, "rows", rows, "err", err)
	}
}

// tableAllowed says whether the receiver may see a table at all.
func (p *peer) tableAllowed(ctx context.Context, table string) bool {
	if p.connID == "" {
		return true
	}
	c, err := p.st.Conns.Get(ctx, p.connID)
	return err == nil && connection.TableAllowed(c.Limits, table)
}

// schema resolves a table the receiver may read: never the kit's secret tables.
func (p *peer) schema(ctx context.Context, snap *exporter.Snapshot, table string) (*catalog.Schema, error) {
	id, err := catalog.Resolve(ctx, snap.Querier(), table)
	if err != nil {
		return nil, err
	}
	// Judge the table the name resolved to, not the spelling the receiver sent:
	// "public.products" must meet the same limits as "products". Only what
	// request:tables lists (the public schema, never the kit's own tables) is served.
	if id.Schema != servedSchema || catalog.IsSecretTable(id.Name) || !p.tableAllowed(ctx, id.Name) {
		return nil, fmt.Errorf("%w: %q", catalog.ErrUnknownTable, table)
	}
	return catalog.GetSchema(ctx, snap.Querier(), table)
}

// withSnapshot runs fn against the connection's snapshot (begun on first use, so
// every table the receiver reads comes from one consistent view) and replies with
// the event and payload fn returns, or the error it failed with.
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
	event, v, err := fn(p.snap)
	if err != nil {
		var ref *connection.Refusal
		if errors.As(err, &ref) {
			return p.fail(f, ref.Reason, ref.Detail)
		}
		if errors.Is(err, catalog.ErrUnknownTable) {
			return p.fail(f, wire.ErrUnknownTable, err.Error())
		}
		p.srv.log.Error("request failed", "event", f.Event, "err", err)
		return p.fail(f, wire.ErrInternal, "the request failed on the sending site")
	}
	return p.reply(f, event, v)
}

// writableNames lists the columns a receiver writes, in order.
func writableNames(sch *catalog.Schema) []string {
	var out []string
	for _, c := range sch.Writable() {
		out = append(out, c.Name)
	}
	return out
}
