package sender

import (
	"context"

	"github.com/fiberkit/fiberkit/plugins/sync/exporter"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// ranges answers request:ranges: the table's cut points in the connection's
// snapshot — the one its streams read, so the ranges cover exactly the rows a
// stream of the whole table would send — and its size on disk. The table must be
// one the receiver may read (p.schema: visibility and a connection's table lists,
// the tables below it it may not see left out of the sample); the payload was
// checked (wire.RangesRequest.Validate) and the connection's limits admitted it.
func (p *peer) ranges(ctx context.Context, f wire.Frame, req wire.RangesRequest) error {
	return p.withSnapshot(ctx, f, func(snap *exporter.Snapshot) (string, any, error) {
		sch, err := p.schema(ctx, snap, req.Table)
		if err != nil {
			return "", nil, err
		}
		r, err := snap.Ranges(ctx, sch, req.Parts)
		if err != nil {
			return "", nil, err
		}
		bounds := r.Bounds
		if bounds == nil {
			bounds = [][]string{}
		}
		return wire.ResponseRanges, wire.Ranges{Table: req.Table, Bounds: bounds, Bytes: r.Bytes}, nil
	})
}
