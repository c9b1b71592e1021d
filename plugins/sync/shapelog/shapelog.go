// Package shapelog keeps live shapes and their logs in the site's PostgreSQL
// (fiberkit_sync_shapes, fiberkit_sync_shape_log). A shape's log is its snapshot
// rows, then its changes, each entry addressed by an Offset; a reader resumes after
// the last offset it got, after a reconnect or a restart of either side.
//
// Why PostgreSQL rather than files in a data directory: the host replicas of one
// site share the database, not a disk, and a stream opened on any replica must see
// every change the one capturing replica logs; the entries of a captured
// transaction commit in one transaction with the shapes' positions, so the slot is
// acknowledged only for what is durable, and a replay after a crash skips what was
// already logged; and the logs are backed up, restored and sized with the app's
// data. A log is bounded: once its changes outgrow a cap, the shape is replaced by a
// fresh one (a new snapshot, which compacts it) and readers of the old handle are
// told to refetch.
package shapelog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/migrate"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// Offset is a position in a shape's log: snapshot rows have LSN 0 and Op 1…n;
// changes have their transaction's commit LSN and their place in it.
type Offset struct {
	LSN uint64
	Op  int
}

// Start is the position before a log's first entry.
var Start = Offset{}

// String is the offset as readers see it: "lsn_op", or "-1" for Start.
func (o Offset) String() string {
	if o == Start {
		return syncapi.OffsetBeginning
	}
	return strconv.FormatUint(o.LSN, 10) + "_" + strconv.Itoa(o.Op)
}

// Less orders offsets.
func (o Offset) Less(p Offset) bool { return o.LSN < p.LSN || o.LSN == p.LSN && o.Op < p.Op }

// ErrBadOffset is an offset that is not "-1" or "lsn_op".
var ErrBadOffset = errors.New("bad offset")

// ParseOffset reads an offset as String writes it.
func ParseOffset(s string) (Offset, error) {
	if s == "" || s == syncapi.OffsetBeginning {
		return Start, nil
	}
	l, o, ok := strings.Cut(s, "_")
	lsn, err1 := strconv.ParseUint(l, 10, 64)
	op, err2 := strconv.Atoi(o)
	if !ok || err1 != nil || err2 != nil || op < 0 || lsn > 1<<63-1 {
		return Offset{}, fmt.Errorf("%w %q: want -1 or <lsn>_<op>", ErrBadOffset, s)
	}
	return Offset{LSN: lsn, Op: op}, nil
}

// The states of a shape.
const (
	StateCreating = "creating" // registered; its snapshot is being taken
	StateReady    = "ready"    // snapshot logged; changes are being logged
	StateGone     = "gone"     // dropped, interrupted or replaced: readers refetch
)

// Snapshot is the PostgreSQL snapshot a shape's first rows were read in: a
// transaction is in it when its id is below Xmin, or below Xmax and not in Xip.
type Snapshot struct {
	Xmin, Xmax uint64
	Xip        []uint64
}

// Record is a shape as stored.
type Record struct {
	Handle string
	Hash   string
	Spec   syncapi.ShapeSpec
	State  string
	Snap   *Snapshot
	// SnapBytes is the size of the snapshot's entries; LogBytes and LogEntries of
	// the whole log.
	SnapBytes, LogBytes, LogEntries int64
	// Last is the offset of the log's last entry.
	Last      Offset
	CreatedAt time.Time
}

// Entry is one log entry: a syncapi.Message as JSON.
type Entry struct {
	Offset Offset
	Body   []byte
}

// Store reads and writes shapes and logs.
type Store struct {
	pool *pgxpool.Pool
}

// Open returns a Store on pool, bringing Sync's tables up to date.
func Open(ctx context.Context, pool *pgxpool.Pool) (*Store, error) {
	if err := migrate.Up(ctx, pool); err != nil {
		return nil, err
	}
	return &Store{pool: pool}, nil
}

const recordCols = `handle, hash, spec, state, snap_xmin, snap_xmax, snap_xip, snap_bytes, log_bytes, log_entries, last_lsn, last_op, created_at`

func scanRecord(row pgx.Row) (*Record, error) {
	var r Record
	var spec []byte
	var xmin, xmax *int64
	var xip []int64
	var lastLSN int64
	if err := row.Scan(&r.Handle, &r.Hash, &spec, &r.State, &xmin, &xmax, &xip, &r.SnapBytes, &r.LogBytes, &r.LogEntries,
		&lastLSN, &r.Last.Op, &r.CreatedAt); err != nil {
		return nil, err
	}
	r.Last.LSN = uint64(lastLSN)
	if err := json.Unmarshal(spec, &r.Spec); err != nil {
		return nil, fmt.Errorf("shape %s: spec: %w", r.Handle, err)
	}
	if xmin != nil && xmax != nil {
		r.Snap = &Snapshot{Xmin: uint64(*xmin), Xmax: uint64(*xmax)}
		for _, x := range xip {
			r.Snap.Xip = append(r.Snap.Xip, uint64(x))
		}
	}
	return &r, nil
}

// Live returns the shape with this definition hash that is not gone, or nil.
func (s *Store) Live(ctx context.Context, hash string) (*Record, error) {
	r, err := scanRecord(s.pool.QueryRow(ctx, `SELECT `+recordCols+` FROM fiberkit_sync_shapes WHERE hash = $1 AND state <> 'gone'`, hash))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up shape: %w", err)
	}
	return r, nil
}

// Get returns the shape with this handle, or nil.
func (s *Store) Get(ctx context.Context, handle string) (*Record, error) {
	r, err := scanRecord(s.pool.QueryRow(ctx, `SELECT `+recordCols+` FROM fiberkit_sync_shapes WHERE handle = $1`, handle))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up shape %s: %w", handle, err)
	}
	return r, nil
}

// List returns the shapes that are not gone, oldest first.
func (s *Store) List(ctx context.Context) ([]*Record, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+recordCols+` FROM fiberkit_sync_shapes WHERE state <> 'gone' ORDER BY created_at, handle`)
	if err != nil {
		return nil, fmt.Errorf("list shapes: %w", err)
	}
	defer rows.Close()
	var out []*Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("list shapes: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Create registers a shape in StateCreating under a new handle, or returns the live
// one with the same hash if another caller (another replica) was first.
func (s *Store) Create(ctx context.Context, hash string, spec syncapi.ShapeSpec) (*Record, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	handle := fmt.Sprintf("%s-%d", hash, time.Now().UnixMicro())
	r, err := scanRecord(s.pool.QueryRow(ctx, `INSERT INTO fiberkit_sync_shapes (handle, hash, spec) VALUES ($1, $2, $3)
		ON CONFLICT (hash) WHERE state <> 'gone' DO NOTHING RETURNING `+recordCols, handle, hash, b))
	if errors.Is(err, pgx.ErrNoRows) {
		if r, err := s.Live(ctx, hash); r != nil || err != nil {
			return r, err
		}
		return s.Create(ctx, hash, spec) // it went in the meantime
	}
	if err != nil {
		return nil, fmt.Errorf("create shape: %w", err)
	}
	return r, nil
}

// Retire marks a shape gone (its readers refetch) and deletes its log.
func (s *Store) Retire(ctx context.Context, handle string) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("retire shape %s: %w", handle, err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `UPDATE fiberkit_sync_shapes SET state = 'gone', gone_at = now() WHERE handle = $1`, handle); err != nil {
		return fmt.Errorf("retire shape %s: %w", handle, err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM fiberkit_sync_shape_log WHERE handle = $1`, handle); err != nil {
		return fmt.Errorf("retire shape %s: delete its log: %w", handle, err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, Channel, handle); err != nil {
		return fmt.Errorf("retire shape %s: %w", handle, err)
	}
	return tx.Commit(ctx)
}

// Channel is the NOTIFY channel on which changed shapes' handles are announced
// (comma-separated), and "*" when too many changed to list.
const Channel = "fiberkit_sync_shapes"

// Notify announces handles on Channel within tx (delivered when it commits).
func Notify(ctx context.Context, tx pgx.Tx, handles []string) error {
	payload := strings.Join(handles, ",")
	if len(payload) > 7000 {
		payload = "*"
	}
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, Channel, payload)
	return err
}

// Append logs entries of a shape within tx and moves its last offset; size is
// their total bytes. Entries must be in order and after the shape's last.
func Append(ctx context.Context, tx pgx.Tx, handle string, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	var size int64
	rows := make([][]any, len(entries))
	for i, e := range entries {
		rows[i] = []any{handle, int64(e.Offset.LSN), e.Offset.Op, string(e.Body)}
		size += int64(len(e.Body))
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"fiberkit_sync_shape_log"}, []string{"handle", "lsn", "op", "entry"}, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("log shape %s: %w", handle, err)
	}
	last := entries[len(entries)-1].Offset
	if _, err := tx.Exec(ctx, `UPDATE fiberkit_sync_shapes SET last_lsn = $2, last_op = $3, log_entries = log_entries + $4, log_bytes = log_bytes + $5
		WHERE handle = $1`, handle, int64(last.LSN), last.Op, len(entries), size); err != nil {
		return fmt.Errorf("log shape %s: %w", handle, err)
	}
	return nil
}

// MarkReady records a shape's snapshot within tx: its log now holds the snapshot
// rows, and readers may start.
func MarkReady(ctx context.Context, tx pgx.Tx, handle string, snap Snapshot, snapBytes int64) error {
	xip := make([]int64, len(snap.Xip))
	for i, x := range snap.Xip {
		xip[i] = int64(x)
	}
	_, err := tx.Exec(ctx, `UPDATE fiberkit_sync_shapes SET state = 'ready', snap_xmin = $2, snap_xmax = $3, snap_xip = $4, snap_bytes = $5
		WHERE handle = $1 AND state = 'creating'`, handle, int64(snap.Xmin), int64(snap.Xmax), xip, snapBytes)
	if err != nil {
		return fmt.Errorf("shape %s ready: %w", handle, err)
	}
	return nil
}

// Read returns up to limit entries of a shape's log after an offset.
func (s *Store) Read(ctx context.Context, handle string, after Offset, limit int) ([]Entry, error) {
	rows, err := s.pool.Query(ctx, `SELECT lsn, op, entry FROM fiberkit_sync_shape_log
		WHERE handle = $1 AND (lsn, op) > ($2, $3) ORDER BY lsn, op LIMIT $4`, handle, int64(after.LSN), after.Op, limit)
	if err != nil {
		return nil, fmt.Errorf("read shape %s: %w", handle, err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		var lsn int64
		var body string
		if err := rows.Scan(&lsn, &e.Offset.Op, &body); err != nil {
			return nil, fmt.Errorf("read shape %s: %w", handle, err)
		}
		e.Offset.LSN, e.Body = uint64(lsn), []byte(body)
		out = append(out, e)
	}
	return out, rows.Err()
}

// IsUniqueViolation reports a unique violation (a shape's entries logged twice).
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}
