// Package remote keeps the receiving side's permanent connections ("remotes"): a
// sending site's URL and the token it issued, plus an optional schedule of pulls.
// The token must be usable for scheduled pulls, so it is stored encrypted
// (AES-256-GCM) with a key from the FIBERKIT_SECRET_KEY environment variable, never
// in plain text. Due pulls are claimed with one UPDATE … FOR UPDATE SKIP LOCKED and
// run under an advisory lock, so replicas sharing a database run each one once per
// interval and never twice at once.
package remote

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// KeyEnv names the environment variable holding the key that encrypts stored tokens.
const KeyEnv = "FIBERKIT_SECRET_KEY"

// ErrNoKey says remotes cannot be stored without a key.
var ErrNoKey = errors.New(KeyEnv + " is not set: remotes store their token encrypted and need a key (any long random string)")

// Remote is a sending site this site pulls from with a token.
type Remote struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	URL        string     `json:"url"`
	Tables     []string   `json:"tables"`
	Strategy   string     `json:"strategy"`
	Interval   int        `json:"interval_seconds"` // 0 = no schedule
	NextRunAt  *time.Time `json:"next_run_at,omitempty"`
	LastRunAt  *time.Time `json:"last_run_at,omitempty"`
	LastStatus string     `json:"last_status"`
	CreatedBy  string     `json:"created_by"`
	CreatedAt  time.Time  `json:"created_at"`
}

// Store keeps remotes.
type Store struct {
	pool *pgxpool.Pool
	aead cipher.AEAD // nil without a key
}

// Open migrates the table; the key comes from FIBERKIT_SECRET_KEY.
func Open(ctx context.Context, pool *pgxpool.Pool) (*Store, error) {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('fiberkit_sync_remotes'))`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS fiberkit_sync_remotes (
			id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL, url text NOT NULL, token_enc bytea NOT NULL,
			tables text[] NOT NULL DEFAULT '{}', strategy text NOT NULL DEFAULT 'skip', interval_seconds int NOT NULL DEFAULT 0,
			next_run_at timestamptz, last_run_at timestamptz, last_status text NOT NULL DEFAULT '',
			created_by text NOT NULL DEFAULT '', created_at timestamptz NOT NULL DEFAULT now())`)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("remotes: migrate: %w", err)
	}
	s := &Store{pool: pool}
	if key := os.Getenv(KeyEnv); key != "" {
		k := sha256.Sum256([]byte(key))
		block, _ := aes.NewCipher(k[:])
		s.aead, _ = cipher.NewGCM(block)
	}
	return s, nil
}

func (s *Store) seal(plain string) ([]byte, error) {
	if s.aead == nil {
		return nil, ErrNoKey
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, []byte(plain), nil), nil
}

func (s *Store) open(sealed []byte) (string, error) {
	if s.aead == nil {
		return "", ErrNoKey
	}
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return "", errors.New("remote token is corrupt")
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], nil)
	if err != nil {
		return "", errors.New("remote token cannot be decrypted (was FIBERKIT_SECRET_KEY changed?)")
	}
	return string(plain), nil
}

const cols = `id::text, name, url, tables, strategy, interval_seconds, next_run_at, last_run_at, last_status, created_by, created_at`

func scan(row pgx.Row) (Remote, error) {
	var r Remote
	err := row.Scan(&r.ID, &r.Name, &r.URL, &r.Tables, &r.Strategy, &r.Interval, &r.NextRunAt, &r.LastRunAt, &r.LastStatus, &r.CreatedBy, &r.CreatedAt)
	return r, err
}

// Add records a remote; its first scheduled pull is due at once.
func (s *Store) Add(ctx context.Context, r Remote, token, by string) (Remote, error) {
	if r.Name == "" || r.URL == "" || token == "" {
		return Remote{}, errors.New("add remote: name, url and token are required")
	}
	if r.Interval < 0 || (r.Interval > 0 && r.Interval < 1) {
		return Remote{}, errors.New("add remote: interval_seconds must be ≥ 1 (or 0 for no schedule)")
	}
	sealed, err := s.seal(token)
	if err != nil {
		return Remote{}, fmt.Errorf("add remote: %w", err)
	}
	if r.Strategy == "" {
		r.Strategy = "skip"
	}
	if r.Tables == nil {
		r.Tables = []string{}
	}
	out, err := scan(s.pool.QueryRow(ctx, `INSERT INTO fiberkit_sync_remotes (name, url, token_enc, tables, strategy, interval_seconds, next_run_at, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $6 > 0 THEN now() END, $7) RETURNING `+cols,
		r.Name, r.URL, sealed, r.Tables, r.Strategy, r.Interval, by))
	if err != nil {
		return Remote{}, fmt.Errorf("add remote: %w", err)
	}
	return out, nil
}

// List returns the remotes.
func (s *Store) List(ctx context.Context) ([]Remote, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+cols+` FROM fiberkit_sync_remotes ORDER BY created_at DESC`)
	if err != nil {
		return nil, fmt.Errorf("list remotes: %w", err)
	}
	defer rows.Close()
	out := []Remote{}
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Get returns a remote and its token.
func (s *Store) Get(ctx context.Context, id string) (Remote, string, error) {
	var sealed []byte
	var r Remote
	err := s.pool.QueryRow(ctx, `SELECT `+cols+`, token_enc FROM fiberkit_sync_remotes WHERE id::text = $1`, id).
		Scan(&r.ID, &r.Name, &r.URL, &r.Tables, &r.Strategy, &r.Interval, &r.NextRunAt, &r.LastRunAt, &r.LastStatus, &r.CreatedBy, &r.CreatedAt, &sealed)
	if errors.Is(err, pgx.ErrNoRows) {
		return Remote{}, "", fmt.Errorf("remote %s: not found", id)
	}
	if err != nil {
		return Remote{}, "", fmt.Errorf("remote %s: %w", id, err)
	}
	token, err := s.open(sealed)
	return r, token, err
}

// Delete removes a remote.
func (s *Store) Delete(ctx context.Context, id string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM fiberkit_sync_remotes WHERE id::text = $1`, id)
	return err
}

// Finished records the outcome of a run.
func (s *Store) Finished(ctx context.Context, id, status string) error {
	_, err := s.pool.Exec(ctx, `UPDATE fiberkit_sync_remotes SET last_status = $2 WHERE id::text = $1`, id, status)
	return err
}

// Run is called for each due remote, with its token.
type Run func(ctx context.Context, r Remote, token string) error

// Schedule runs due pulls until ctx ends, checking every tick.
func (s *Store) Schedule(ctx context.Context, tick time.Duration, run Run) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for ctx.Err() == nil {
				claimed, err := s.runDue(ctx, run)
				if err != nil || !claimed {
					break
				}
			}
		}
	}
}

// runDue claims one due remote (moving its next run an interval ahead, so no other
// replica claims it this interval) and runs it under its advisory lock.
func (s *Store) runDue(ctx context.Context, run Run) (bool, error) {
	var id string
	err := s.pool.QueryRow(ctx, `UPDATE fiberkit_sync_remotes SET next_run_at = now() + make_interval(secs => interval_seconds), last_run_at = now()
		WHERE id = (SELECT id FROM fiberkit_sync_remotes WHERE interval_seconds > 0 AND next_run_at <= now()
			ORDER BY next_run_at LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id::text`).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return true, err
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext('fiberkit_sync_remote:' || $1))`, id).Scan(&locked); err != nil || !locked {
		return true, err // the previous run is still going (on some replica): skip this one
	}
	defer func() {
		_, _ = conn.Exec(context.Background(), `SELECT pg_advisory_unlock(hashtext('fiberkit_sync_remote:' || $1))`, id)
	}()
	r, token, err := s.Get(ctx, id)
	status := "done"
	if err == nil {
		err = run(ctx, r, token)
	}
	if err != nil {
		status = "failed: " + err.Error()
	}
	_ = s.Finished(ctx, id, status)
	return true, nil
}

// RunNow runs one remote at once (under its lock), outside its schedule.
func (s *Store) RunNow(ctx context.Context, id string, run Run) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext('fiberkit_sync_remote:' || $1))`, id).Scan(&locked); err != nil {
		return err
	}
	if !locked {
		return errors.New("a pull of this remote is already running")
	}
	defer func() {
		_, _ = conn.Exec(context.Background(), `SELECT pg_advisory_unlock(hashtext('fiberkit_sync_remote:' || $1))`, id)
	}()
	r, token, err := s.Get(ctx, id)
	if err != nil {
		return err
	}
	err = run(ctx, r, token)
	status := "done"
	if err != nil {
		status = "failed: " + err.Error()
	}
	_ = s.Finished(ctx, id, status)
	return err
}

// ReplaceToken swaps the token of the remote whose current token hashes to oldHash
// (hex SHA-256) for newToken. It reports whether a remote matched.
func (s *Store) ReplaceToken(ctx context.Context, oldHash, newToken string) (bool, error) {
	want, err := hex.DecodeString(oldHash)
	if err != nil || len(want) != sha256.Size || !strings.HasPrefix(newToken, "fkc_") {
		return false, errors.New("replace token: malformed request")
	}
	rows, err := s.pool.Query(ctx, `SELECT id::text, token_enc FROM fiberkit_sync_remotes`)
	if err != nil {
		return false, fmt.Errorf("replace token: %w", err)
	}
	type row struct {
		id     string
		sealed []byte
	}
	var all []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.sealed); err != nil {
			rows.Close()
			return false, err
		}
		all = append(all, r)
	}
	rows.Close()
	for _, r := range all {
		token, err := s.open(r.sealed)
		if err != nil {
			continue
		}
		h := sha256.Sum256([]byte(token))
		if subtle.ConstantTimeCompare(h[:], want) != 1 {
			continue
		}
		sealed, err := s.seal(newToken)
		if err != nil {
			return false, err
		}
		if _, err := s.pool.Exec(ctx, `UPDATE fiberkit_sync_remotes SET token_enc = $2 WHERE id::text = $1`, r.id, sealed); err != nil {
			return false, fmt.Errorf("replace token: %w", err)
		}
		return true, nil
	}
	return false, nil
}
