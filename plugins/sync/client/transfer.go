package client

import (
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"

	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/ddl"
	"github.com/fiberkit/fiberkit/plugins/sync/exporter"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// Progress reports a transfer's advance, after every batch.
type Progress struct {
	Table   string        `json:"table"`
	Rows    int64         `json:"rows"`
	Total   int64         `json:"total"`
	Batches int           `json:"batches"`
	Elapsed time.Duration `json:"elapsed"`
	Done    bool          `json:"done"`
}

// TransferOptions configure Transfer.
type TransferOptions struct {
	// Strategy for rows whose key exists locally (default skip).
	Strategy importer.Strategy
	// BatchSize is rows per batch (default wire.DefaultBatchRows).
	BatchSize int
	// CreateMissing creates the table locally when it does not exist.
	CreateMissing bool
	// IgnoreMissingColumns imports a table without the sender's columns the local
	// table lacks (Result.DroppedColumns lists them) instead of failing it.
	IgnoreMissingColumns bool
	// NoCompression turns zstd off (it is on by default).
	NoCompression bool
	// AfterKey resumes after this key (Result.LastKey of an interrupted transfer).
	AfterKey []string
	// Progress, when set, is called after every batch.
	Progress func(Progress)
}

// Result is one table's outcome (syncapi.TableResult, which the pull operation answers).
type Result = syncapi.TableResult

// Transfer copies one table from the sender into the local database: schema, then
// every row through the fast path, imported with the strategy batch by batch (each
// batch in one local transaction). On failure the result holds what was applied and
// the last key, for resuming.
func (c *Client) Transfer(ctx context.Context, pool *pgxpool.Pool, table string, o TransferOptions) (Result, error) {
	sch, err := c.GetSchema(ctx, table)
	if err != nil {
		return Result{Table: table}, err
	}
	res := Result{Table: table}
	ok, err := catalog.Exists(ctx, pool, table)
	if err != nil {
		return res, fmt.Errorf("transfer %s: %w", table, err)
	}
	if !ok {
		if !o.CreateMissing {
			return res, fmt.Errorf("transfer %s: the table does not exist here (set CreateMissing to create it)", table)
		}
		_, dr, err := createLocal(ctx, pool, table, sch)
		res.Warnings = dr.Warnings
		if err != nil {
			return res, fmt.Errorf("transfer %s: %w", table, err)
		}
		res.TableCreated = true
	}
	return c.transferRows(ctx, pool, sch, res, o)
}

// targetName is where the table requested as table is created: the name the sender's
// definition gives when it is one Resolve reads table as (public.table, or
// schema.name split at the first dot), else the requested name itself — never a
// name only the sender chose.
func targetName(table string, sch *catalog.Schema) (schema, name string) {
	if s, n, ok := strings.Cut(table, "."); ok {
		if sch.Schema == "public" && sch.Name == table {
			return "public", table
		}
		return s, n
	}
	return "public", table
}

// createLocal creates the requested table from the sender's definition, under the
// requested name, and returns the definition as created.
func createLocal(ctx context.Context, pool *pgxpool.Pool, table string, sch *catalog.Schema) (*catalog.Schema, ddl.Result, error) {
	local := *sch
	local.Schema, local.Name = targetName(table, sch)
	res, err := ddl.Create(ctx, pool, &local)
	return &local, res, err
}

func (c *Client) transferRows(ctx context.Context, pool *pgxpool.Pool, sch *catalog.Schema, res Result, o TransferOptions) (Result, error) {
	start := time.Now()
	caps, err := c.Capabilities(ctx)
	if err != nil {
		return res, fmt.Errorf("transfer %s: %w", res.Table, err)
	}
	if caps.Stream() {
		res, err = c.streamRows(ctx, pool, sch, res, o, start)
	} else {
		res, err = c.pageRows(ctx, pool, sch, res, o, start) // a PhoenixKit sender
	}
	res.Duration = time.Since(start)
	return res, err
}

func (c *Client) streamRows(ctx context.Context, pool *pgxpool.Pool, sch *catalog.Schema, res Result, o TransferOptions, start time.Time) (Result, error) {
	table := res.Table
	if o.BatchSize <= 0 {
		o.BatchSize = wire.DefaultBatchRows
	}
	total, err := c.GetCount(ctx, table)
	if err != nil {
		return res, err
	}
	res.Requested = total
	var cols []string
	for _, col := range sch.Writable() {
		cols = append(cols, col.Name)
	}
	im, err := importer.New(ctx, pool, table, importer.Options{Strategy: o.Strategy, Columns: cols, IgnoreUnknownColumns: o.IgnoreMissingColumns})
	if errors.Is(err, importer.ErrUnknownColumn) && !o.IgnoreMissingColumns {
		return res, fmt.Errorf("transfer %s: %w (the local table lacks the sender's columns; set IgnoreMissingColumns — "+
			"fiberkit-pull -ignore-missing-columns, pull ignore_missing_columns — to import without them)", table, err)
	}
	if err != nil {
		return res, fmt.Errorf("transfer %s: %w", table, err)
	}
	res.DroppedColumns = im.Dropped()
	const credit = wire.DefaultCredit
	sid := c.nextSID.Add(1)
	msgs := make(chan streamMsg, credit+2)
	c.mu.Lock()
	c.streams[sid] = msgs
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.streams, sid)
		c.mu.Unlock()
	}()
	compression := "zstd"
	if o.NoCompression {
		compression = ""
	}
	if _, err := c.request(ctx, c.topic, wire.StreamStart, wire.Start{Stream: sid, Table: table, AfterKey: o.AfterKey,
		BatchRows: o.BatchSize, Compression: compression, Credit: credit}); err != nil {
		return res, fmt.Errorf("transfer %s: %w", table, err)
	}
	codec := wire.NewCodec()
	defer codec.Close()
	// Leaving before the stream ended (cancelled, an import failed): tell the sender
	// to stop, so it does not hold the stream waiting for credit.
	ended := false
	defer func() {
		if !ended {
			_ = c.write(wire.New(nil, nil, c.topic, wire.StreamCancel, wire.StreamRef{Stream: sid}))
		}
	}()
	res.LastKey = o.AfterKey
	var seq uint32
	for {
		var m streamMsg
		select {
		case m = <-msgs:
		case <-ctx.Done():
			return res, fmt.Errorf("transfer %s: %w", table, ctx.Err())
		case <-c.done:
			// Drain what already arrived before reporting the loss.
			select {
			case m = <-msgs:
			default:
				return res, fmt.Errorf("transfer %s: %w", table, c.closeErr())
			}
		}
		switch {
		case m.err != nil:
			ended = true
			return res, fmt.Errorf("transfer %s: %w", table, m.err)
		case m.end != nil:
			ended = true
			if m.end.Rows != res.Rows || m.end.Batches != seq {
				return res, fmt.Errorf("transfer %s: sender sent %d rows in %d batches, received %d in %d", table, m.end.Rows, m.end.Batches, res.Rows, seq)
			}
			if err := im.Finish(ctx); err != nil {
				return res, err
			}
			if o.Progress != nil {
				o.Progress(Progress{Table: table, Rows: res.Rows, Total: total, Batches: int(seq), Elapsed: time.Since(start), Done: true})
			}
			return res, nil
		}
		res.Bytes += int64(len(m.batch))
		b, err := codec.DecodeBatch(m.batch)
		if err != nil {
			return res, fmt.Errorf("transfer %s: batch %d: %w", table, seq+1, err)
		}
		if b.Seq != seq+1 {
			return res, fmt.Errorf("transfer %s: batch %d arrived after %d", table, b.Seq, seq)
		}
		r, err := im.ImportCopy(ctx, b.Data)
		if err != nil {
			return res, err
		}
		seq = b.Seq
		res.Created += r.Created
		res.Updated += r.Updated
		res.Skipped += r.Skipped
		res.Failed += r.Failed
		res.Errors = append(res.Errors, r.Errors...)
		res.Rows += int64(b.Rows)
		res.LastKey = b.LastKey
		if err := c.write(wire.New(nil, nil, c.topic, wire.StreamAck, wire.Ack{Stream: sid, Seq: seq, Credit: 1})); err != nil {
			return res, fmt.Errorf("transfer %s: %w", table, err)
		}
		if o.Progress != nil {
			o.Progress(Progress{Table: table, Rows: res.Rows, Total: total, Batches: int(seq), Elapsed: time.Since(start)})
		}
	}
}

// TransferAllOptions configure TransferAll.
type TransferAllOptions struct {
	// Tables to transfer; empty = every table the sender lists.
	Tables []string
	// Strategy for every table, unless Strategies names one for it.
	Strategy   importer.Strategy
	Strategies map[string]importer.Strategy
	TransferOptions
}

// TransferAll transfers several tables from the sender's one consistent snapshot:
// tables are created first when missing (CreateMissing), filled in foreign-key order,
// and given their foreign keys after all the data is in. It goes on past a failed
// table and reports each table's outcome; the error is the first failure.
func (c *Client) TransferAll(ctx context.Context, pool *pgxpool.Pool, o TransferAllOptions) (map[string]Result, error) {
	tables := o.Tables
	if len(tables) == 0 {
		list, err := c.ListTables(ctx)
		if err != nil {
			return nil, err
		}
		for _, t := range list {
			tables = append(tables, t.Name)
		}
	}
	schemas := make([]*catalog.Schema, 0, len(tables))
	names := map[*catalog.Schema]string{}
	for _, t := range tables {
		sch, err := c.GetSchema(ctx, t)
		if err != nil {
			return nil, err
		}
		schemas = append(schemas, sch)
		names[sch] = t
	}
	results := map[string]Result{}
	var created []*catalog.Schema
	var first error
	for _, sch := range catalog.SortByDependencies(schemas) {
		name := names[sch]
		res := Result{Table: name}
		ok, err := catalog.Exists(ctx, pool, name)
		if err == nil && !ok {
			if !o.CreateMissing {
				err = fmt.Errorf("transfer %s: the table does not exist here (set CreateMissing to create it)", name)
			} else {
				var local *catalog.Schema
				var dr ddl.Result
				local, dr, err = createLocal(ctx, pool, name, sch)
				res.Warnings = dr.Warnings
				if err == nil {
					res.TableCreated = true
					created = append(created, local)
				}
			}
		}
		if err == nil {
			opts := o.TransferOptions
			opts.Strategy = o.Strategy
			if s, ok := o.Strategies[name]; ok {
				opts.Strategy = s
			}
			res, err = c.transferRows(ctx, pool, sch, res, opts)
		}
		if err != nil {
			res.Error = err.Error()
			if first == nil {
				first = err
			}
		}
		results[name] = res
		if err != nil && !c.Connected() {
			break // the sender is gone: the other tables cannot be read either
		}
	}
	for _, sch := range created {
		if err := ddl.AddForeignKeys(ctx, pool, sch); err != nil && first == nil {
			first = err
		}
	}
	return results, first
}

// TableState compares a sender's table with the local one.
type TableState struct {
	Table     string `json:"table"`
	Rows      int64  `json:"rows"`
	LocalRows int64  `json:"local_rows"`
	// State is "new" (missing here), "different" or "match" (same rows, by count and checksum).
	State string `json:"state"`
}

// Compare tells, for each of the sender's tables, whether the local database lacks
// it, holds different rows, or matches it.
func (c *Client) Compare(ctx context.Context, pool *pgxpool.Pool, tables []catalog.Table) ([]TableState, error) {
	out := make([]TableState, 0, len(tables))
	for _, t := range tables {
		st := TableState{Table: t.Name, Rows: t.Rows, State: "new"}
		local, err := catalog.GetSchema(ctx, pool, t.Name)
		if err == nil {
			st.State = "different"
			if st.LocalRows, err = catalog.Count(ctx, pool, t.Name); err != nil {
				return nil, err
			}
			if st.LocalRows == t.Rows {
				remote, cols, err := c.GetChecksum(ctx, t.Name)
				if err != nil {
					return nil, err
				}
				conn, err := pool.Acquire(ctx)
				if err != nil {
					return nil, err
				}
				sum, err := exporter.Checksum(ctx, conn, local, cols)
				conn.Release()
				if err == nil && sum == remote {
					st.State = "match"
				}
			}
		} else if !errors.Is(err, catalog.ErrUnknownTable) {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}
