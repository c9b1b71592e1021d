package sender

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"

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
	case wire.StreamAck, wire.FollowAck, wire.RequestCapabilities:
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
		r.Table = p.judgedName(ctx, r.Table)
	}
	p.st.Metrics.ConnectionRequest(p.connID)
	if _, err := p.st.Conns.Admit(ctx, p.connID, r); err != nil {
		var ref *connection.Refusal
		if errors.As(err, &ref) {
			p.st.Metrics.ConnectionRefused(p.connID, ref.Reason)
			_ = p.fail(f, ref.Reason, ref.Detail)
		} else {
			p.srv.log.Error("admit", "err", err)
			_ = p.fail(f, wire.ErrInternal, "could not check the connection's limits")
		}
		return false
	}
	return true
}

// judgedName is the name a connection's table lists judge a request for table by.
// Lists name tables as request:tables lists them, and a table hangs with the
// tables above it: the name resolves (another spelling of an excluded table is
// still excluded), then a partition or inheritance child is judged as the
// ancestor that excludes it, or — when the allow list names not it but an
// ancestor — as that ancestor. A name that does not resolve is judged as sent.
func (p *peer) judgedName(ctx context.Context, table string) string {
	id, err := catalog.Resolve(ctx, p.st.Pool, table)
	if err != nil || id.Schema != servedSchema {
		return table
	}
	ups, err := catalog.Ancestors(ctx, p.st.Pool, id)
	if err != nil {
		return id.Name
	}
	r, err := p.rules(ctx)
	if err != nil {
		return id.Name
	}
	for _, t := range append([]catalog.Ident{id}, ups...) {
		if r.conn != nil && slices.Contains(r.conn.ExcludedTables, t.String()) {
			return t.String()
		}
	}
	if !r.listed(id.Name) {
		for _, u := range ups {
			if r.listed(u.String()) {
				return u.String()
			}
		}
	}
	return id.Name
}
