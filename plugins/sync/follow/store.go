package follow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/migrate"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// Errors callers branch on (errors.Is).
var (
	// ErrNotFound: no follow has that id.
	ErrNotFound = errors.New("follow not found")
	// ErrAppend: append cannot follow; changes are matched by key.
	ErrAppend = errors.New("append cannot follow: changes are matched to local rows by key (use skip, overwrite or merge)")
	// ErrBadState: SetState was given a state that is not one of syncapi's Follow* states.
	ErrBadState = errors.New("unknown follow state")
)

// Follow is what a receiving site follows: the sender's tables (by the sender's
// names), the local schema they are written to, and the conflict strategy.
type Follow struct {
	// ID names the follow: a remote's id, or the sender's URL for a one-off follow.
	ID   string
	Peer string
	// Tables are the followed tables, as the sender names them.
	Tables []string
	// Schema is the local schema the tables are written to ("" = public).
	Schema   string
	Strategy importer.Strategy
}

// Store keeps the receiving site's follows (fiberkit_sync_follows).
type Store struct {
	pool *pgxpool.Pool
}

// Open brings Sync's tables up to date (migrate.Up) and returns the store.
func Open(ctx context.Context, pool *pgxpool.Pool) (*Store, error) {
	if err := migrate.Up(ctx, pool); err != nil {
		return nil, fmt.Errorf("follows: %w", err)
	}
	return &Store{pool: pool}, nil
}

// checkStrategy parses s ("" = skip) and refuses append.
func checkStrategy(s importer.Strategy) (importer.Strategy, error) {
	st, err := importer.ParseStrategy(string(s))
	if err != nil {
		return "", err
	}
	if st == importer.Append {
		return "", ErrAppend
	}
	return st, nil
}

// Start records a follow that begins (again): inserted, or, for an id already
// stored, replaced — state copying, position 0/0, no commit time, sender position
// 0/0, counters and history entry reset, error cleared.
func (s *Store) Start(ctx context.Context, f Follow) error {
	if f.ID == "" {
		return errors.New("start follow: no id")
	}
	if len(f.Tables) == 0 {
		return fmt.Errorf("start follow %s: no tables", f.ID)
	}
	st, err := checkStrategy(f.Strategy)
	if err != nil {
		return fmt.Errorf("start follow %s: %w", f.ID, err)
	}
	if f.Schema == "" {
		f.Schema = "public"
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO fiberkit_sync_follows (id, peer, tables, target_schema, strategy, state)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (id) DO UPDATE SET peer = EXCLUDED.peer, tables = EXCLUDED.tables, target_schema = EXCLUDED.target_schema,
			strategy = EXCLUDED.strategy, state = EXCLUDED.state, error = '', lsn = '0/0', commit_at = NULL, sender_lsn = '0/0',
			txns = 0, changes = 0, conflicts = 0, history_id = NULL, updated_at = now()`,
		f.ID, f.Peer, f.Tables, f.Schema, string(st), syncapi.FollowCopying)
	if err != nil {
		return fmt.Errorf("start follow %s: %w", f.ID, err)
	}
	return nil
}

// Follow returns what the follow id follows, as Start recorded it (to make its
// Applier again after a restart).
func (s *Store) Follow(ctx context.Context, id string) (Follow, error) {
	f := Follow{ID: id}
	var st string
	err := s.pool.QueryRow(ctx, `SELECT peer, tables, target_schema, strategy FROM fiberkit_sync_follows WHERE id = $1`, id).
		Scan(&f.Peer, &f.Tables, &f.Schema, &st)
	if errors.Is(err, pgx.ErrNoRows) {
		return Follow{}, fmt.Errorf("follow %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Follow{}, fmt.Errorf("follow %s: %w", id, err)
	}
	f.Strategy = importer.Strategy(st)
	return f, nil
}

// statusSQL reads FollowStatus rows: lag in bytes is the sender's WAL end as last
// heard minus the position applied (never below 0); lag in seconds is the time since
// the last applied transaction committed while the sender is known to be further on,
// else 0.
const statusSQL = `SELECT id, peer, tables, state, error, lsn::text,
	CASE WHEN sender_lsn = '0/0' THEN '' ELSE sender_lsn::text END,
	greatest(sender_lsn - lsn, 0)::bigint,
	CASE WHEN sender_lsn > lsn AND commit_at IS NOT NULL THEN greatest(extract(epoch FROM clock_timestamp() - commit_at), 0)::float8 ELSE 0 END,
	txns, changes, conflicts, strategy, updated_at
	FROM fiberkit_sync_follows`

func scanStatus(row pgx.Row) (syncapi.FollowStatus, error) {
	var f syncapi.FollowStatus
	err := row.Scan(&f.ID, &f.Peer, &f.Tables, &f.State, &f.Error, &f.Position, &f.SenderPosition, &f.LagBytes,
		&f.LagSeconds, &f.Transactions, &f.Changes, &f.Conflicts, &f.Strategy, &f.UpdatedAt)
	return f, err
}

// Get returns the status of the follow id (ErrNotFound when there is none).
func (s *Store) Get(ctx context.Context, id string) (syncapi.FollowStatus, error) {
	f, err := scanStatus(s.pool.QueryRow(ctx, statusSQL+` WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return syncapi.FollowStatus{}, fmt.Errorf("follow %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return syncapi.FollowStatus{}, fmt.Errorf("follow %s: %w", id, err)
	}
	return f, nil
}

// List returns every follow's status, by id.
func (s *Store) List(ctx context.Context) ([]syncapi.FollowStatus, error) {
	rows, err := s.pool.Query(ctx, statusSQL+` ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list follows: %w", err)
	}
	defer rows.Close()
	out := []syncapi.FollowStatus{}
	for rows.Next() {
		f, err := scanStatus(rows)
		if err != nil {
			return nil, fmt.Errorf("list follows: %w", err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list follows: %w", err)
	}
	return out, nil
}

// Position returns the sender position of the last transaction the follow applied
// (the snapshot's position before the first one; 0 while copying).
func (s *Store) Position(ctx context.Context, id string) (uint64, error) {
	var lsn string
	err := s.pool.QueryRow(ctx, `SELECT lsn::text FROM fiberkit_sync_follows WHERE id = $1`, id).Scan(&lsn)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("follow %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("follow %s: position: %w", id, err)
	}
	pos, err := wire.ParseLSN(lsn)
	if err != nil {
		return 0, fmt.Errorf("follow %s: stored %w", id, err)
	}
	return pos, nil
}

// Following records that the first copy is done: the position becomes the
// snapshot's (never moving backwards), the state following, the error cleared.
func (s *Store) Following(ctx context.Context, id string, position uint64) error {
	lsn := wire.FormatLSN(position)
	return s.update(ctx, id, "following", `lsn = greatest(lsn, $2::text::pg_lsn), sender_lsn = greatest(sender_lsn, $2::text::pg_lsn),
		state = $3, error = ''`, lsn, syncapi.FollowFollowing)
}

// Heard records the sender's WAL end as a keepalive (or a transaction) told it, for
// the lag; it never moves backwards.
func (s *Store) Heard(ctx context.Context, id string, senderPosition uint64) error {
	return s.update(ctx, id, "heard", `sender_lsn = greatest(sender_lsn, $2::text::pg_lsn)`, wire.FormatLSN(senderPosition))
}

// CaughtUp records that the sender has nothing more for the follow than what it
// applied (a keepalive's CaughtUp): its lag is none, however far the sender's WAL
// moved for other tables. The position itself does not move.
func (s *Store) CaughtUp(ctx context.Context, id string) error {
	return s.update(ctx, id, "caught up", `sender_lsn = lsn`)
}

// SetState sets the follow's state (one of syncapi's Follow* states) and error
// message ("" clears it).
func (s *Store) SetState(ctx context.Context, id, state, errMsg string) error {
	switch state {
	case syncapi.FollowCopying, syncapi.FollowFollowing, syncapi.FollowStopped, syncapi.FollowFailed:
	default:
		return fmt.Errorf("follow %s: %w %q", id, ErrBadState, state)
	}
	return s.update(ctx, id, "set state", `state = $2, error = $3`, state, errMsg)
}

// SetHistoryID records the transfer-history entry the follow updates.
func (s *Store) SetHistoryID(ctx context.Context, id string, historyID int64) error {
	return s.update(ctx, id, "set history entry", `history_id = $2`, historyID)
}

// HistoryID returns the transfer-history entry the follow updates; ok is false when
// none was set since it (re)started.
func (s *Store) HistoryID(ctx context.Context, id string) (historyID int64, ok bool, err error) {
	var h *int64
	err = s.pool.QueryRow(ctx, `SELECT history_id FROM fiberkit_sync_follows WHERE id = $1`, id).Scan(&h)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, fmt.Errorf("follow %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return 0, false, fmt.Errorf("follow %s: history entry: %w", id, err)
	}
	if h == nil {
		return 0, false, nil
	}
	return *h, true, nil
}

// Delete forgets the follow id (ErrNotFound when there is none).
func (s *Store) Delete(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM fiberkit_sync_follows WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("delete follow %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("follow %s: %w", id, ErrNotFound)
	}
	return nil
}

// update sets the follow's columns (sets, with $2… for args) and updated_at.
func (s *Store) update(ctx context.Context, id, what, sets string, args ...any) error {
	tag, err := s.pool.Exec(ctx, `UPDATE fiberkit_sync_follows SET `+sets+`, updated_at = now() WHERE id = $1`,
		append([]any{id}, args...)...)
	if err != nil {
		return fmt.Errorf("follow %s: %s: %w", id, what, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("follow %s: %w", id, ErrNotFound)
	}
	return nil
}

// record is the follow row's update in the transaction that applied a sender
// transaction: the position (only forwards: a position not past the stored one
// updates nothing), its commit time, the sender's WAL end and the counters.
func record(ctx context.Context, tx pgx.Tx, id string, position uint64, commitAt *time.Time, senderPosition uint64, a Applied) (bool, error) {
	tag, err := tx.Exec(ctx, `UPDATE fiberkit_sync_follows SET lsn = $2::text::pg_lsn, commit_at = coalesce($3, commit_at),
		sender_lsn = greatest(sender_lsn, $2::text::pg_lsn, $4::text::pg_lsn), txns = txns + 1, changes = changes + $5,
		conflicts = conflicts + $6, updated_at = now()
		WHERE id = $1 AND lsn < $2::text::pg_lsn`,
		id, wire.FormatLSN(position), commitAt, wire.FormatLSN(senderPosition), a.Changes, a.Conflicts)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}
