package sender

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// admit checks a request of a permanent connection against its limits (status,
// expiry, address, hours, rate, table, request size, total records) and answers a
// refusal itself. Code sessions are always admitted.
func (p *peer) admit(ctx context.Context, f wire.Frame) bool {
	if p.connID == "" {
		return true
	}
	r := connection.Request{Address: p.addr}
	var body struct {
		Table     string `json:"table"`
		Limit     int    `json:"limit"`
		BatchRows int    `json:"batch_rows"`
	}
	_ = json.Unmarshal(f.Payload, &body) // a malformed payload is refused by its handler
	switch f.Event {
	case wire.StreamAck, wire.RequestCapabilities:
		return true
	case wire.RequestRecords:
		// Judge the size the request will really get, defaults filled in.
		r.Table, r.Records = body.Table, cmp.Or(max(body.Limit, 0), wire.DefaultRecordsLimit)
	case wire.StreamStart:
		r.Table, r.Records = body.Table, cmp.Or(max(body.BatchRows, 0), wire.DefaultBatchRows)
	default:
		r.Table = body.Table
	}
	if r.Table != "" {
		// Limits name tables as request:tables lists them; check the table the name
		// resolves to, so another spelling of an excluded table is still excluded.
		if id, err := catalog.Resolve(ctx, p.st.Pool, r.Table); err == nil && id.Schema == servedSchema {
			r.Table = id.Name
		}
	}
	if _, err := p.st.Conns.Admit(ctx, p.connID, r); err != nil {
		var ref *connection.Refusal
		if errors.As(err, &ref) {
			_ = p.fail(f, ref.Reason, ref.Detail)
		} else {
			p.srv.log.Error("admit", "err", err)
			_ = p.fail(f, wire.ErrInternal, "could not check the connection's limits")
		}
		return false
	}
	return true
}
