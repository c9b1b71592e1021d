package exporter

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/mask"
)

// TableStream reads one table of a snapshot with a single COPY, from the start or
// after a key, in key order, and cuts the rows into batches as they arrive. It runs
// on a connection of its own that joins the snapshot (SET TRANSACTION SNAPSHOT), so
// the snapshot's connection stays free for the requests that come meanwhile and
// several tables can stream at once. The rows are the snapshot's rows exactly.
//
// Reading the table once costs the sending database one scan; asking for it batch
// by batch (NextBatch) costs a query and a key lookup per batch.
type TableStream struct {
	snap    *Snapshot
	id      string // the exported snapshot
	sch     *catalog.Schema
	table   string // quoted
	keys    int
	noKey   bool
	sql     string
	columns []string
	binary  bool
	// masks are the table's masks (nil: none), whose key the stream's own
	// transaction needs too.
	masks *mask.Table
}

// StreamOptions shape the batches of a TableStream.
type StreamOptions struct {
	// BatchRows caps a batch's rows (required).
	BatchRows int
	// BatchBytes caps a batch's COPY text (0: DefaultBatchBytes); a batch holds at
	// least one row, so a row larger than this is a batch of its own.
	BatchBytes int
	// Size, when set, is asked for the row count of each batch as it starts (want is
	// BatchRows) and may grant fewer; an error stops the stream with that error.
	Size func(ctx context.Context, want int) (int, error)
}

// Stream prepares a read of sch's rows after the key after (nil: from the start)
// up to and including the key until (nil: to the end; one range of Ranges),
// those of the tables LeaveOut names left out, as COPY text lines or, with binary,
// COPY binary tuples (without the format's header and trailer). Like the snapshot's
// other methods it must not run concurrently with them; Run may.
func (s *Snapshot) Stream(ctx context.Context, sch *catalog.Schema, after, until []string, binary bool) (*TableStream, error) {
	if catalog.IsSecretTable(sch.Name) {
		return nil, fmt.Errorf("export: %w: %q", catalog.ErrUnknownTable, sch.Name)
	}
	table := catalog.IdentOf(sch).Quoted()
	noKey := len(sch.PrimaryKey) == 0
	if noKey && after != nil && (len(after) != 1 || !s.wasIssued(table, after[0])) {
		return nil, fmt.Errorf("export %s: %w", sch.Name, ErrNoResume)
	}
	id, err := s.export(ctx)
	if err != nil {
		return nil, err
	}
	exprs, _ := keyColumns(sch)
	where, err := afterClause(sch, after, ">")
	if err != nil {
		return nil, err
	}
	upTo, err := untilCond(sch, until)
	if err != nil {
		return nil, err
	}
	where = addCond(addCond(where, upTo), s.leftOutCond(table, "src.tableoid"))
	keyText := make([]string, len(exprs))
	order := make([]string, len(exprs))
	for i, e := range exprs {
		keyText[i] = "src." + e + "::text"
		order[i] = "src." + e
	}
	cols := sch.Writable()
	sel := strings.Join(keyText, ", ")
	names := make([]string, len(cols))
	for i, c := range cols {
		sel += ", src." + pgx.Identifier{c.Name}.Sanitize()
		names[i] = c.Name
	}
	format := ""
	if binary {
		format = " (FORMAT binary)"
	}
	return &TableStream{
		snap: s, id: id, sch: sch, table: table, keys: len(exprs), noKey: noKey, columns: names, binary: binary, masks: s.masks[table],
		sql: fmt.Sprintf("COPY (SELECT %s FROM %s AS src%s ORDER BY %s) TO STDOUT%s", sel, s.source(sch), where, strings.Join(order, ", "), format),
	}, nil
}

// export names the snapshot for other connections, once (pg_export_snapshot keeps
// the name valid while the snapshot's transaction is open).
func (s *Snapshot) export(ctx context.Context) (string, error) {
	if s.exported != "" {
		return s.exported, nil
	}
	if err := s.tx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&s.exported); err != nil {
		return "", fmt.Errorf("export: name the snapshot: %w", err)
	}
	return s.exported, nil
}

// Columns are the columns of each row of a batch, in order.
func (ts *TableStream) Columns() []string { return ts.columns }

// Run reads the rows on a connection of pool that joins the snapshot and calls emit
// with each batch, in key order, the last one with Done set (it may hold no rows).
// emit runs on Run's goroutine and may block: the read waits for it. An error from
// emit, or ctx ending, stops the read — the connection is closed rather than
// reused — and Run returns it. Data of a batch is only valid during its emit call.
func (ts *TableStream) Run(ctx context.Context, pool *pgxpool.Pool, o StreamOptions, emit func(Batch) error) (err error) {
	if o.BatchRows <= 0 {
		return fmt.Errorf("export %s: batch size must be positive", ts.sch.Name)
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = DefaultBatchBytes
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("export %s: acquire connection: %w", ts.sch.Name, err)
	}
	broken := false
	defer func() {
		if broken {
			// A COPY left half read: the connection is closed, never reused.
			_ = conn.Conn().Close(context.Background())
		}
		conn.Release()
	}()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("export %s: join snapshot: %w", ts.sch.Name, err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	id, err := quoteLiteral(ts.id)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+id); err != nil {
		return fmt.Errorf("export %s: join snapshot: %w", ts.sch.Name, err)
	}
	if _, err := tx.Exec(ctx, exportSettings); err != nil {
		return fmt.Errorf("export %s: %w", ts.sch.Name, err)
	}
	if err := ts.masks.UseKey(ctx, tx); err != nil {
		return fmt.Errorf("export %s: %w", ts.sch.Name, err)
	}
	c := &cutter{ctx: ctx, ts: ts, o: o, emit: emit}
	_, err = conn.Conn().PgConn().CopyTo(ctx, c, ts.sql)
	if c.err != nil {
		broken = true
		return c.err
	}
	if err != nil {
		broken = true
		return fmt.Errorf("export %s: %w", ts.sch.Name, err)
	}
	return c.finish()
}

// errStopped is what the cutter returns to CopyTo once emit failed, so the read stops.
var errStopped = errors.New("stream stopped")

// cutter receives the COPY text lines of a TableStream (each starting with the row's
// key fields) and emits them, keys stripped, in batches.
type cutter struct {
	ctx  context.Context
	ts   *TableStream
	o    StreamOptions
	emit func(Batch) error

	data    []byte // the batch's lines, without keys
	rows    int
	limit   int // rows this batch may hold (0: not started)
	lastKey []string
	start   int // where the current line starts in data

	field   int
	key     []byte
	lineKey []string
	err     error

	// COPY binary: raw holds a tuple split across writes; header and trailer
	// say whether the format's header and trailer were read.
	raw             []byte
	header, trailer bool
}

func (c *cutter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.ts.binary {
		return len(p), c.writeBinary(p)
	}
	n := len(p)
	for len(p) > 0 {
		if c.field < c.ts.keys {
			i := bytes.IndexAny(p, "\t\n")
			if i < 0 {
				c.key = append(c.key, p...)
				break
			}
			c.key = append(c.key, p[:i]...)
			c.lineKey = append(c.lineKey, unescapeCopy(c.key))
			c.key = c.key[:0]
			c.field++
			sep := p[i]
			p = p[i+1:]
			if sep == '\n' {
				if c.field < c.ts.keys {
					return 0, c.fail(errors.New("COPY line with fewer fields than the key"))
				}
				// A row of keys only (the table has no written column).
				c.data = append(c.data, '\n')
				if err := c.endLine(); err != nil {
					return 0, err
				}
			}
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.data = append(c.data, p...)
			break
		}
		c.data = append(c.data, p[:i+1]...)
		p = p[i+1:]
		if err := c.endLine(); err != nil {
			return 0, err
		}
	}
	return n, nil
}

func (c *cutter) fail(err error) error {
	c.err = err
	return errStopped
}

// endLine counts the line just completed in data: it joins the batch, which is
// emitted when full; a line that would take the batch past its byte budget starts
// the next one instead.
func (c *cutter) endLine() error {
	key := c.lineKey
	c.lineKey, c.field = nil, 0
	if c.rows > 0 && len(c.data) > c.o.BatchBytes {
		line := append([]byte(nil), c.data[c.start:]...)
		c.data = c.data[:c.start]
		if err := c.flush(false); err != nil {
			return err
		}
		c.data = append(c.data, line...)
	}
	if c.limit == 0 {
		if err := c.begin(); err != nil {
			return err
		}
	}
	c.rows++
	c.lastKey = key
	c.start = len(c.data)
	if c.rows >= c.limit || len(c.data) >= c.o.BatchBytes {
		return c.flush(false)
	}
	return nil
}

// begin starts a batch: its row limit, granted by Size when set.
func (c *cutter) begin() error {
	c.limit = c.o.BatchRows
	if c.o.Size != nil {
		n, err := c.o.Size(c.ctx, c.o.BatchRows)
		if err != nil {
			return c.fail(err)
		}
		c.limit = max(1, min(n, c.o.BatchRows))
	}
	return nil
}

// flush emits the batch so far and starts an empty one.
func (c *cutter) flush(done bool) error {
	b := Batch{Columns: c.ts.columns, Data: c.data, Rows: c.rows, LastKey: c.lastKey, Done: done, Binary: c.ts.binary}
	if c.ts.noKey && b.LastKey != nil {
		c.ts.snap.issue(c.ts.table, b.LastKey[0])
	}
	if err := c.emit(b); err != nil {
		return c.fail(err)
	}
	c.data, c.rows, c.limit, c.start = c.data[:0], 0, 0, 0
	return nil
}

// binarySignature starts COPY binary data (then a flags word and an extension
// area's length).
const binarySignature = "PGCOPY\n\xff\r\n\x00"

// writeBinary takes COPY binary data: whole tuples go to the batch (their key
// fields stripped), a tuple cut across writes waits in raw for the rest.
func (c *cutter) writeBinary(p []byte) error {
	if len(c.raw) > 0 {
		c.raw = append(c.raw, p...)
		p = c.raw
	}
	n, err := c.tuples(p)
	if err != nil {
		if c.err != nil {
			return err // emit or Size failed: c.err says why
		}
		return c.fail(fmt.Errorf("export %s: COPY binary: %w", c.ts.sch.Name, err))
	}
	rest := p[n:]
	if len(c.raw) > 0 {
		c.raw = c.raw[:copy(c.raw, rest)]
	} else {
		c.raw = append(c.raw, rest...)
	}
	return nil
}

// tuples consumes the whole tuples (and the header, the trailer) at the start of
// p and returns how many bytes they took.
func (c *cutter) tuples(p []byte) (int, error) {
	be := binary.BigEndian
	at := 0
	if !c.header {
		if len(p) < len(binarySignature)+8 {
			return 0, nil
		}
		if string(p[:len(binarySignature)]) != binarySignature {
			return 0, errors.New("bad signature")
		}
		ext := int(be.Uint32(p[len(binarySignature)+4:]))
		if len(p) < len(binarySignature)+8+ext {
			return 0, nil
		}
		at = len(binarySignature) + 8 + ext
		c.header = true
	}
	for {
		if c.trailer {
			if at != len(p) {
				return 0, errors.New("data after the trailer")
			}
			return at, nil
		}
		if len(p)-at < 2 {
			return at, nil
		}
		fields := int(int16(be.Uint16(p[at:])))
		if fields == -1 {
			c.trailer = true
			at += 2
			continue
		}
		if fields < c.ts.keys {
			return 0, fmt.Errorf("a tuple of %d fields (the key has %d)", fields, c.ts.keys)
		}
		// Find the tuple's end, and where its key fields end.
		end, keysEnd := at+2, 0
		key := make([]string, 0, c.ts.keys)
		for f := 0; f < fields; f++ {
			if len(p)-end < 4 {
				return at, nil
			}
			size := int(int32(be.Uint32(p[end:])))
			end += 4
			if size < 0 {
				if f < c.ts.keys {
					return 0, errors.New("a NULL key")
				}
				continue
			}
			if len(p)-end < size {
				return at, nil
			}
			if f < c.ts.keys {
				key = append(key, string(p[end:end+size]))
			}
			end += size
			if f == c.ts.keys-1 {
				keysEnd = end
			}
		}
		if c.ts.keys == 0 {
			keysEnd = at + 2
		}
		c.data = be.AppendUint16(c.data, uint16(fields-c.ts.keys))
		c.data = append(c.data, p[keysEnd:end]...)
		c.lineKey = key
		if err := c.endLine(); err != nil {
			return 0, err
		}
		at = end
	}
}

// finish emits the last batch (Done), once the COPY ended.
func (c *cutter) finish() error {
	if c.ts.binary && (len(c.raw) > 0 || !c.trailer) {
		return fmt.Errorf("export %s: COPY binary ended inside a tuple", c.ts.sch.Name)
	}
	if c.field != 0 || len(c.data) != c.start {
		return fmt.Errorf("export %s: COPY ended inside a row", c.ts.sch.Name)
	}
	if err := c.flush(true); err != nil {
		return c.err
	}
	return nil
}
