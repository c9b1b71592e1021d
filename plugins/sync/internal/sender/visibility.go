package sender

import (
	"context"
	"fmt"
	"slices"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
)

// rules say which tables a receiver may read: never the site's excluded_tables
// (whatever the receiver came with), and for a permanent connection only what its
// lists allow. A table hangs with the tables above it: a partition or inheritance
// child of an excluded table is excluded, one of an allowed table allowed; and a
// read of a table leaves out the rows of the tables below it that are excluded.
type rules struct {
	site *site.Site
	conn *connection.Limits // nil for a code
}

// rules returns the rules of p's receiver as they stand now.
func (p *peer) rules(ctx context.Context) (rules, error) {
	r := rules{site: p.st}
	if p.connID != "" {
		c, err := p.st.Conns.Get(ctx, p.connID)
		if err != nil {
			return r, fmt.Errorf("read the connection's limits: %w", err)
		}
		r.conn = &c.Limits
	}
	return r, nil
}

// excluded reports whether a table (as request:tables names it) is excluded by
// name or pattern.
func (r rules) excluded(name string) bool {
	return catalog.IsSecretTable(name) || r.site.Excluded(name) || r.conn != nil && slices.Contains(r.conn.ExcludedTables, name)
}

// listed reports whether a connection's allow list (none: every table) names a table.
func (r rules) listed(name string) bool {
	return r.conn == nil || len(r.conn.AllowedTables) == 0 || slices.Contains(r.conn.AllowedTables, name)
}

// refusedBy returns the name of the table whose rule refuses id, whose ancestors
// are ups (nearest first): id or an ancestor excluded, or neither id nor any
// ancestor on the allow list. "" when id may be read.
func (r rules) refusedBy(id catalog.Ident, ups []catalog.Ident) string {
	chain := append([]catalog.Ident{id}, ups...)
	for _, t := range chain {
		if r.excluded(t.String()) {
			return t.String()
		}
	}
	for _, t := range chain {
		if r.listed(t.String()) {
			return ""
		}
	}
	return id.String()
}

// visible resolves table inside the snapshot's transaction (q) and judges it by
// the receiver's rules: it must be a public user table that neither it nor a table
// above it is excluded. It returns the table and the oids of the tables below it
// whose rows a read of it leaves out: the excluded ones and everything below them.
func (p *peer) visible(ctx context.Context, q catalog.Querier, table string) (catalog.Ident, []uint32, error) {
	id, err := catalog.Resolve(ctx, q, table)
	if err != nil {
		return catalog.Ident{}, nil, err
	}
	r, err := p.rules(ctx)
	if err != nil {
		return catalog.Ident{}, nil, err
	}
	ups, err := catalog.Ancestors(ctx, q, id)
	if err != nil {
		return catalog.Ident{}, nil, err
	}
	if id.Schema != servedSchema || r.refusedBy(id, ups) != "" {
		return catalog.Ident{}, nil, fmt.Errorf("%w: %q", catalog.ErrUnknownTable, table)
	}
	hidden, err := r.hiddenBelow(ctx, q, id)
	return id, hidden, err
}

// hiddenBelow returns the oids of the tables below id that are excluded, and of
// every table below those.
func (r rules) hiddenBelow(ctx context.Context, q catalog.Querier, id catalog.Ident) ([]uint32, error) {
	downs, err := catalog.Descendants(ctx, q, id)
	if err != nil {
		return nil, err
	}
	var hidden []uint32
	for _, d := range downs {
		if !r.excluded(d.String()) || slices.Contains(hidden, d.OID) {
			continue
		}
		hidden = append(hidden, d.OID)
		below, err := catalog.Descendants(ctx, q, d)
		if err != nil {
			return nil, err
		}
		for _, b := range below {
			if !slices.Contains(hidden, b.OID) {
				hidden = append(hidden, b.OID)
			}
		}
	}
	return hidden, nil
}
