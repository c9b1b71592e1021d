package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
)

// PhoenixKitMaxLimit is the most records a PhoenixKit sender returns per
// request:records; a paged pull asks for no more.
const PhoenixKitMaxLimit = 1000

// ErrNoResume: a sender without the fast path (a PhoenixKit sender) pages by
// offset, so a transfer cannot resume after a key there.
var ErrNoResume = errors.New("this sender pages by offset (no stream.v1): a transfer cannot resume after a key")

// pageRows pulls a table through the records API, for senders without the fast
// path (PhoenixKit's): pages of at most PhoenixKitMaxLimit records by offset in key
// order, each value turned into PostgreSQL text by the local column's type, each
// page imported in one local transaction. A page shorter than asked, or an empty
// one, ends it.
func (c *Client) pageRows(ctx context.Context, pool *pgxpool.Pool, target catalog.Ident, res Result, o TransferOptions, start time.Time) (Result, error) {
	table := res.Table
	if len(o.AfterKey) > 0 {
		return res, fmt.Errorf("transfer %s: %w", table, ErrNoResume)
	}
	limit := PhoenixKitMaxLimit
	if o.BatchSize > 0 {
		limit = min(o.BatchSize, PhoenixKitMaxLimit)
	}
	total, err := c.GetCount(ctx, table)
	if err != nil {
		return res, err
	}
	res.Requested = total
	im, err := openImporter(ctx, pool, target, importer.Options{Strategy: o.Strategy, IgnoreUnknownColumns: o.IgnoreMissingColumns})
	if err != nil {
		return res, fmt.Errorf("transfer %s: %w", table, err)
	}
	types := map[string]string{}
	for _, col := range im.Schema().Columns {
		types[col.Name] = col.BaseType
	}
	missing := map[string]bool{}
	for offset, batches := 0, 0; ; batches++ {
		page, err := c.fetchRaw(ctx, table, offset, limit)
		if err != nil {
			return res, err
		}
		if len(page.Records) == 0 {
			break
		}
		records := make([]map[string]*string, len(page.Records))
		for i, rec := range page.Records {
			for col := range rec {
				if _, ok := types[col]; !ok {
					missing[col] = true
				}
			}
			if records[i], err = textRecord(rec, types); err != nil {
				return res, fmt.Errorf("transfer %s: record %d: %w", table, offset+i, err)
			}
		}
		if len(missing) > 0 && !o.IgnoreMissingColumns {
			return res, fmt.Errorf("transfer %s: %w: %v (the local table lacks the sender's columns; set IgnoreMissingColumns to import without them)",
				table, importer.ErrUnknownColumn, sortedKeys(missing))
		}
		r, err := im.ImportRecords(ctx, records)
		if err != nil {
			return res, fmt.Errorf("transfer %s: %w", table, err)
		}
		res.Created += r.Created
		res.Updated += r.Updated
		res.Skipped += r.Skipped
		res.Failed += r.Failed
		res.Errors = append(res.Errors, r.Errors...)
		res.Rows += int64(len(records))
		offset += len(records)
		if o.Progress != nil {
			o.Progress(Progress{Table: table, Rows: res.Rows, Total: total, Batches: batches + 1, Elapsed: time.Since(start)})
		}
		if !page.HasMore || len(records) < limit {
			break
		}
	}
	res.DroppedColumns = sortedKeys(missing)
	if err := im.Finish(ctx); err != nil {
		return res, err
	}
	if o.Progress != nil {
		o.Progress(Progress{Table: table, Rows: res.Rows, Total: total, Elapsed: time.Since(start), Done: true})
	}
	return res, nil
}

// sortedKeys returns a set's members in order (nil for none).
func sortedKeys(set map[string]bool) []string {
	var out []string
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
