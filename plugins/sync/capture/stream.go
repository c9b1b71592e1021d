package capture

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"
)

// LSN is a position in the write-ahead log.
type LSN = pglogrepl.LSN

// Kind says what a Change did.
type Kind string

// The kinds of change.
const (
	Insert   Kind = "insert"
	Update   Kind = "update"
	Delete   Kind = "delete"
	Truncate Kind = "truncate"
)

// Table names a table by schema and name.
type Table struct {
	Schema string
	Name   string
}

// Change is one row change (or one TRUNCATE) inside a transaction. Values are in
// PostgreSQL's text format; a nil *string is SQL NULL.
type Change struct {
	Kind Kind
	// Schema and Table name the changed table (empty for Truncate: see Tables).
	Schema, Table string
	// Columns are the table's columns in order; Key are those of its replica
	// identity (the primary key by default).
	Columns, Key []string
	// New holds the row after an insert or update.
	New map[string]*string
	// Old holds the row before an update or delete: every column with REPLICA
	// IDENTITY FULL, only the Key columns otherwise (and, for an update, only when
	// the update changed a key column).
	Old map[string]*string
	// Unchanged lists the columns of an update whose value is an unchanged TOASTed
	// value pgoutput did not send; they are absent from New.
	Unchanged []string
	// Tables are the truncated tables (Truncate only).
	Tables []Table
	// SchemaChanged says the table's columns (names or types) changed since its last
	// change was delivered (an ALTER TABLE in between): what was read of it before
	// may no longer fit.
	SchemaChanged bool
	// XID is the transaction's id.
	XID uint32
	// CommitLSN is the position of the transaction's commit record.
	CommitLSN LSN
}

// Txn is one committed transaction's changes, in the order they were made.
type Txn struct {
	XID uint32
	// CommitLSN is the position of the commit record; EndLSN is just past it, the
	// position to pass to Stream.Ack once the transaction is handled.
	CommitLSN, EndLSN LSN
	CommitTime        time.Time
	Changes           []Change
}

// Options configure Start.
type Options struct {
	// Slot and Publication name the ones made by Setup (usually the same name).
	Slot, Publication string
	// StartLSN is where to resume: the last acknowledged EndLSN, or 0 for the slot's
	// own confirmed position.
	StartLSN LSN
	// StandbyInterval is how often the acknowledged position is reported to the
	// server; 0 means 10 seconds.
	StandbyInterval time.Duration
	// Buffer is the capacity of the Txns channel (0: unbuffered).
	Buffer int
}

// Stream is a running replication connection. Read Txns until it is closed, then Err
// says why. Acknowledge handled transactions with Ack.
type Stream struct {
	conn     *pgconn.PgConn
	txns     chan Txn
	interval time.Duration
	acked    atomic.Uint64
	cancel   context.CancelFunc
	done     chan struct{}
	err      error

	// Owned by the run goroutine.
	relations map[uint32]*pglogrepl.RelationMessage
	altered   map[uint32]bool // relations whose next change has SchemaChanged
	current   *Txn
	delivered LSN // EndLSN of the last transaction handed over
	serverEnd LSN // WAL end from the last keepalive
	reported  LSN
}

// Start opens a replication connection (replication=database) with connString and
// starts streaming the slot from opts.StartLSN with pgoutput protocol version 1.
// Close the Stream when done.
func Start(ctx context.Context, connString string, opts Options) (*Stream, error) {
	if err := checkName(opts.Slot); err != nil {
		return nil, err
	}
	if err := checkName(opts.Publication); err != nil {
		return nil, err
	}
	cfg, err := pgconn.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	cfg.RuntimeParams["replication"] = "database"
	// pgoutput prints values with the walsender's settings: the same as
	// catalog.TextSettings, so captured values read like a snapshot's.
	for k, v := range map[string]string{"DateStyle": "ISO, MDY", "IntervalStyle": "postgres", "TimeZone": "UTC",
		"extra_float_digits": "3", "bytea_output": "hex"} {
		cfg.RuntimeParams[k] = v
	}
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("capture: replication connection: %w", err)
	}
	err = pglogrepl.StartReplication(ctx, conn, opts.Slot, opts.StartLSN, pglogrepl.StartReplicationOptions{
		Mode:       pglogrepl.LogicalReplication,
		PluginArgs: []string{"proto_version '1'", "publication_names '" + opts.Publication + "'"},
	})
	if err != nil {
		_ = conn.Close(context.Background())
		return nil, fmt.Errorf("capture: start replication on slot %s: %w", opts.Slot, err)
	}
	s := &Stream{
		conn:      conn,
		txns:      make(chan Txn, opts.Buffer),
		interval:  opts.StandbyInterval,
		done:      make(chan struct{}),
		relations: map[uint32]*pglogrepl.RelationMessage{},
		altered:   map[uint32]bool{},
		delivered: opts.StartLSN,
		reported:  opts.StartLSN,
	}
	if s.interval <= 0 {
		s.interval = 10 * time.Second
	}
	s.acked.Store(uint64(opts.StartLSN))
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.run(runCtx)
	return s, nil
}

// Txns delivers committed transactions in commit order. It is closed when the stream
// ends (Close, or an error: see Err).
func (s *Stream) Txns() <-chan Txn { return s.txns }

// Ack records that every transaction up to lsn (a Txn's EndLSN) is handled; the
// server may then discard the WAL before it. Positions never move back.
func (s *Stream) Ack(lsn LSN) {
	for {
		old := s.acked.Load()
		if uint64(lsn) <= old || s.acked.CompareAndSwap(old, uint64(lsn)) {
			return
		}
	}
}

// Err is why the stream ended, once Txns is closed: nil after Close.
func (s *Stream) Err() error {
	<-s.done
	return s.err
}

// Close ends the stream, reporting the acknowledged position to the server first,
// and closes the connection.
func (s *Stream) Close() error {
	s.cancel()
	<-s.done
	return nil
}

func (s *Stream) run(ctx context.Context) {
	err := s.loop(ctx)
	if ctx.Err() != nil {
		err = nil
		// A last report, so a clean shutdown leaves the slot at the acknowledged
		// position; then end the replication with CopyDone, whose answer comes only
		// once the server has read (and applied) everything sent before it.
		if s.sendStatus(false) == nil {
			// SendStandbyCopyDone takes no deadline from its context: a server gone
			// silent must not hold Close.
			_ = s.conn.Conn().SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = pglogrepl.SendStandbyCopyDone(context.Background(), s.conn)
		}
	}
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = s.conn.Close(cctx)
	cancel()
	s.err = err
	close(s.txns)
	close(s.done)
}

func (s *Stream) loop(ctx context.Context) error {
	next := time.Now().Add(s.interval)
	for {
		if time.Now().After(next) {
			if err := s.sendStatus(false); err != nil {
				return err
			}
			next = time.Now().Add(s.interval)
		}
		rctx, cancel := context.WithDeadline(ctx, next)
		msg, err := s.conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("capture: receive: %w", err)
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			if len(msg.Data) == 0 {
				continue
			}
			switch msg.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("capture: keepalive: %w", err)
				}
				if ka.ServerWALEnd > s.serverEnd {
					s.serverEnd = ka.ServerWALEnd
				}
				if ka.ReplyRequested {
					if err := s.sendStatus(false); err != nil {
						return err
					}
					next = time.Now().Add(s.interval)
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("capture: xlogdata: %w", err)
				}
				txn, err := s.decode(xld.WALData)
				if err != nil {
					return err
				}
				if txn != nil {
					if err := s.deliver(ctx, *txn, &next); err != nil {
						return err
					}
				}
			}
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("capture: %w", pgconn.ErrorResponseToPgError(msg))
		case *pgproto3.CopyDone:
			return errors.New("capture: server ended replication")
		}
	}
}

// deliver hands txn over, keeping the status timer going while the reader is busy.
func (s *Stream) deliver(ctx context.Context, txn Txn, next *time.Time) error {
	for {
		timer := time.NewTimer(time.Until(*next))
		select {
		case s.txns <- txn:
			timer.Stop()
			s.delivered = txn.EndLSN
			return nil
		case <-timer.C:
			// The transaction is not handed over yet: report only what was acknowledged.
			if err := s.sendStatus(true); err != nil {
				return err
			}
			*next = time.Now().Add(s.interval)
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		}
	}
}

// sendStatus reports the flushed position: what the caller acknowledged or, when
// every delivered transaction is acknowledged and none is pending or half-read, the
// server's WAL end from its last keepalive (nothing before it is for us), so that an
// idle slot keeps up.
func (s *Stream) sendStatus(pending bool) error {
	pos := LSN(s.acked.Load())
	if !pending && s.current == nil && pos >= s.delivered && s.serverEnd > pos {
		pos = s.serverEnd
	}
	if pos < s.reported {
		pos = s.reported
	}
	if pos == 0 {
		return nil
	}
	s.reported = pos
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pos, WALFlushPosition: pos, WALApplyPosition: pos,
	})
	if err != nil {
		return fmt.Errorf("capture: standby status: %w", err)
	}
	return nil
}

// decode applies one pgoutput message, returning the transaction it completes.
func (s *Stream) decode(data []byte) (*Txn, error) {
	m, err := pglogrepl.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("capture: decode pgoutput: %w", err)
	}
	switch m := m.(type) {
	case *pglogrepl.RelationMessage:
		if prev, ok := s.relations[m.RelationID]; ok && !sameColumns(prev, m) {
			s.altered[m.RelationID] = true
		}
		s.relations[m.RelationID] = m
	case *pglogrepl.BeginMessage:
		s.current = &Txn{XID: m.Xid, CommitLSN: m.FinalLSN, CommitTime: m.CommitTime}
	case *pglogrepl.CommitMessage:
		if s.current == nil {
			return nil, errors.New("capture: commit without begin")
		}
		txn := s.current
		s.current = nil
		txn.CommitLSN, txn.EndLSN, txn.CommitTime = m.CommitLSN, m.TransactionEndLSN, m.CommitTime
		for i := range txn.Changes {
			txn.Changes[i].CommitLSN = m.CommitLSN
		}
		return txn, nil
	case *pglogrepl.InsertMessage:
		c, rel, err := s.change(Insert, m.RelationID)
		if err != nil {
			return nil, err
		}
		c.New, _ = values(rel, m.Tuple, false)
		s.current.Changes = append(s.current.Changes, c)
	case *pglogrepl.UpdateMessage:
		c, rel, err := s.change(Update, m.RelationID)
		if err != nil {
			return nil, err
		}
		c.New, c.Unchanged = values(rel, m.NewTuple, false)
		if m.OldTuple != nil {
			c.Old, _ = values(rel, m.OldTuple, m.OldTupleType == pglogrepl.UpdateMessageTupleTypeKey)
		}
		s.current.Changes = append(s.current.Changes, c)
	case *pglogrepl.DeleteMessage:
		c, rel, err := s.change(Delete, m.RelationID)
		if err != nil {
			return nil, err
		}
		c.Old, _ = values(rel, m.OldTuple, m.OldTupleType == pglogrepl.DeleteMessageTupleTypeKey)
		s.current.Changes = append(s.current.Changes, c)
	case *pglogrepl.TruncateMessage:
		if s.current == nil {
			return nil, errors.New("capture: truncate outside a transaction")
		}
		c := Change{Kind: Truncate, XID: s.current.XID}
		for _, id := range m.RelationIDs {
			rel, ok := s.relations[id]
			if !ok {
				return nil, fmt.Errorf("capture: truncate of unknown relation %d", id)
			}
			c.Tables = append(c.Tables, Table{Schema: rel.Namespace, Name: rel.RelationName})
		}
		s.current.Changes = append(s.current.Changes, c)
	}
	return nil, nil
}

func (s *Stream) change(kind Kind, relID uint32) (Change, *pglogrepl.RelationMessage, error) {
	if s.current == nil {
		return Change{}, nil, fmt.Errorf("capture: %s outside a transaction", kind)
	}
	rel, ok := s.relations[relID]
	if !ok {
		return Change{}, nil, fmt.Errorf("capture: %s on unknown relation %d", kind, relID)
	}
	c := Change{Kind: kind, Schema: rel.Namespace, Table: rel.RelationName, XID: s.current.XID, SchemaChanged: s.altered[relID]}
	delete(s.altered, relID)
	for _, col := range rel.Columns {
		c.Columns = append(c.Columns, col.Name)
		if col.Flags&1 != 0 {
			c.Key = append(c.Key, col.Name)
		}
	}
	return c, rel, nil
}

// sameColumns reports whether two descriptions of a relation have the same columns
// (names, types, key flags) and name.
func sameColumns(a, b *pglogrepl.RelationMessage) bool {
	if a.Namespace != b.Namespace || a.RelationName != b.RelationName || len(a.Columns) != len(b.Columns) {
		return false
	}
	for i, c := range a.Columns {
		d := b.Columns[i]
		if c.Name != d.Name || c.DataType != d.DataType || c.TypeModifier != d.TypeModifier || c.Flags != d.Flags {
			return false
		}
	}
	return true
}

// values turns a tuple into column → text value (nil for NULL); keyOnly keeps only
// the replica identity columns (a 'K' tuple sends the others as NULL). Unchanged
// TOASTed values are left out and listed.
func values(rel *pglogrepl.RelationMessage, tuple *pglogrepl.TupleData, keyOnly bool) (map[string]*string, []string) {
	if tuple == nil {
		return nil, nil
	}
	out := make(map[string]*string, len(tuple.Columns))
	var unchanged []string
	for i, col := range tuple.Columns {
		if i >= len(rel.Columns) {
			break
		}
		rc := rel.Columns[i]
		if keyOnly && rc.Flags&1 == 0 {
			continue
		}
		switch col.DataType {
		case pglogrepl.TupleDataTypeNull:
			out[rc.Name] = nil
		case pglogrepl.TupleDataTypeToast:
			unchanged = append(unchanged, rc.Name)
		default:
			v := string(col.Data)
			out[rc.Name] = &v
		}
	}
	return out, unchanged
}
