// Package remote keeps the receiving side's permanent connections ("remotes"): a
// sending site's URL and the token it issued, plus an optional schedule of pulls.
// The token must be usable for scheduled pulls, so it is stored encrypted
// (AES-256-GCM) with a key derived by HKDF-SHA256 from the FIBERKIT_SECRET_KEY
// environment variable, never in plain text (tokens sealed before, with the secret's
// plain SHA-256 as the key, are re-encrypted once when the store opens); its SHA-256 is stored too, so a sending site's notice of a new token
// (which names the old one by its hash) finds the remote without decrypting any.
// Due pulls are claimed with one UPDATE … FOR UPDATE SKIP LOCKED and run under an
// advisory lock, so replicas sharing a database run each one once per interval and
// never twice at once.
package remote

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/migrate"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// KeyEnv names the environment variable holding the key that encrypts stored tokens.
const KeyEnv = "FIBERKIT_SECRET_KEY"

// ErrNotFound: no remote has that id.
var ErrNotFound = errors.New("not found")

// ErrNoKey says remotes cannot be stored without a key.
var ErrNoKey = errors.New(KeyEnv + " is not set: remotes store their token encrypted and need a key (any long random string)")

// Remote is a sending site this site pulls from with a token (syncapi.Remote).
type Remote = syncapi.Remote

// Store keeps remotes.
type Store struct {
	pool   *pgxpool.Pool
	aead   cipher.AEAD // the key of keyVersion; nil without a secret
	legacy cipher.AEAD // the key of version 1, to re-encrypt what it sealed; nil without a secret
}

// keyVersion is the key derivation tokens are sealed with (column key_version):
// HKDF-SHA256 of the secret with keyInfo. Version 1 was the secret's SHA-256.
const keyVersion = 2

// keyInfo binds the derived key to its one use.
const keyInfo = "fiberkit sync remote token key v2"

// gcm returns AES-256-GCM with key (32 bytes).
func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// keys returns the AEADs of secret: keyVersion's, and version 1's.
func keys(secret string) (current, legacy cipher.AEAD, err error) {
	k, err := hkdf.Key(sha256.New, []byte(secret), nil, keyInfo, 32)
	if err != nil {
		return nil, nil, fmt.Errorf("derive token key: %w", err)
	}
	if current, err = gcm(k); err != nil {
		return nil, nil, err
	}
	old := sha256.Sum256([]byte(secret))
	if legacy, err = gcm(old[:]); err != nil {
		return nil, nil, err
	}
	return current, legacy, nil
}

// Open brings Sync's tables to the current schema (migrate.Up), takes the token
// key from FIBERKIT_SECRET_KEY and, with a key, re-encrypts tokens sealed with the
// version 1 key and fills in the token hashes of remotes stored before they were
// kept.
func Open(ctx context.Context, pool *pgxpool.Pool) (*Store, error) {
	if err := migrate.Up(ctx, pool); err != nil {
		return nil, fmt.Errorf("remotes: %w", err)
	}
	s := &Store{pool: pool}
	if secret := os.Getenv(KeyEnv); secret != "" {
		var err error
		if s.aead, s.legacy, err = keys(secret); err != nil {
			return nil, fmt.Errorf("remotes: %w", err)
		}
	}
	if err := s.rekey(ctx); err != nil {
		return nil, fmt.Errorf("remotes: re-encrypt tokens: %w", err)
	}
	if err := s.backfillHashes(ctx); err != nil {
		return nil, fmt.Errorf("remotes: backfill token hashes: %w", err)
	}
	return s, nil
}

// sealedToken is a remote's stored token as sealedTokens reads it.
type sealedToken struct {
	id      string
	sealed  []byte
	version int
}

// sealedTokens returns the stored tokens of the remotes matching where.
func (s *Store) sealedTokens(ctx context.Context, where string) ([]sealedToken, error) {
	rows, err := s.pool.Query(ctx, `SELECT id::text, token_enc, key_version FROM fiberkit_sync_remotes WHERE `+where)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (sealedToken, error) {
		var t sealedToken
		err := row.Scan(&t.id, &t.sealed, &t.version)
		return t, err
	})
}

// rekey re-encrypts, once, the tokens sealed with the version 1 key (the secret's
// SHA-256) with the keyVersion key. A token another secret sealed is left as it is:
// it cannot be used until that secret is back, and is re-encrypted then.
func (s *Store) rekey(ctx context.Context) error {
	if s.aead == nil {
		return nil
	}
	todo, err := s.sealedTokens(ctx, `key_version < 2`)
	if err != nil {
		return err
	}
	for _, t := range todo {
		token, err := s.open(t.sealed, t.version)
		if err != nil {
			continue
		}
		sealed, err := s.seal(token)
		if err != nil {
			return err
		}
		// Another replica opening at the same time may have done it already.
		if _, err := s.pool.Exec(ctx, `UPDATE fiberkit_sync_remotes SET token_enc = $2, key_version = $3
			WHERE id::text = $1 AND key_version = $4`, t.id, sealed, keyVersion, t.version); err != nil {
			return err
		}
	}
	return nil
}

// backfillHashes fills in token_hash for remotes stored before it existed (once;
// only with the key, which decrypts their tokens).
func (s *Store) backfillHashes(ctx context.Context) error {
	if s.aead == nil {
		return nil
	}
	todo, err := s.sealedTokens(ctx, `token_hash IS NULL`)
	if err != nil {
		return err
	}
	for _, r := range todo {
		token, err := s.open(r.sealed, r.version)
		if err != nil {
			continue // another key's token: it cannot be used (or found) until the key is back
		}
		if _, err := s.pool.Exec(ctx, `UPDATE fiberkit_sync_remotes SET token_hash = $2 WHERE id::text = $1 AND token_hash IS NULL`,
			r.id, tokenHash(token)); err != nil {
			return err
		}
	}
	return nil
}

// tokenHash is how a token is found: its SHA-256 (tokens are long and random, so
// the hash reveals nothing usable).
func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
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

// open decrypts a token sealed with the key of version.
func (s *Store) open(sealed []byte, version int) (string, error) {
	if s.aead == nil {
		return "", ErrNoKey
	}
	aead := s.aead
	if version < keyVersion {
		aead = s.legacy
	}
	n := aead.NonceSize()
	if len(sealed) < n {
		return "", errors.New("remote token is corrupt")
	}
	plain, err := aead.Open(nil, sealed[:n], sealed[n:], nil)
	if err != nil {
		return "", errors.New("remote token cannot be decrypted (was FIBERKIT_SECRET_KEY changed?)")
	}
	return string(plain), nil
}

const cols = `id::text, name, url, tables, strategy, interval_seconds, next_run_at, last_run_at, last_status, created_by, created_at, follow`

func scan(row pgx.Row) (Remote, error) {
	var r Remote
	err := row.Scan(&r.ID, &r.Name, &r.URL, &r.Tables, &r.Strategy, &r.Interval, &r.NextRunAt, &r.LastRunAt, &r.LastStatus, &r.CreatedBy, &r.CreatedAt, &r.Follow)
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
	if r.Follow && r.Strategy == "append" {
		return Remote{}, errors.New("add remote: append cannot follow (changes are matched to rows by key): choose skip, overwrite or merge")
	}
	if r.Tables == nil {
		r.Tables = []string{}
	}
	out, err := scan(s.pool.QueryRow(ctx, `INSERT INTO fiberkit_sync_remotes (name, url, token_enc, token_hash, tables, strategy, interval_seconds, next_run_at, created_by, key_version, follow)
		VALUES ($1, $2, $3, $8, $4, $5, $6, CASE WHEN $6 > 0 THEN now() END, $7, $9, $10) RETURNING `+cols,
		r.Name, r.URL, sealed, r.Tables, r.Strategy, r.Interval, by, tokenHash(token), keyVersion, r.Follow))
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
	var version int
	var r Remote
	err := s.pool.QueryRow(ctx, `SELECT `+cols+`, token_enc, key_version FROM fiberkit_sync_remotes WHERE id::text = $1`, id).
		Scan(&r.ID, &r.Name, &r.URL, &r.Tables, &r.Strategy, &r.Interval, &r.NextRunAt, &r.LastRunAt, &r.LastStatus, &r.CreatedBy, &r.CreatedAt, &r.Follow, &sealed, &version)
	if errors.Is(err, pgx.ErrNoRows) {
		return Remote{}, "", fmt.Errorf("remote %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Remote{}, "", fmt.Errorf("remote %s: %w", id, err)
	}
	token, err := s.open(sealed, version)
	return r, token, err
}

// Schedule is what a remote pulls and when (syncapi.Schedule).
type Schedule = syncapi.Schedule

// Update changes a remote's tables, strategy and interval. A remote that gets a
// schedule is due at once; one whose interval changes is due no later than one new
// interval from now.
func (s *Store) Update(ctx context.Context, id string, sc Schedule) (Remote, error) {
	if sc.Interval < 0 {
		return Remote{}, errors.New("update remote: interval_seconds must be ≥ 1 (or 0 for no schedule)")
	}
	switch sc.Strategy {
	case "":
		sc.Strategy = "skip"
	case "skip", "overwrite", "merge", "append":
	default:
		return Remote{}, fmt.Errorf("update remote: unknown strategy %q (want skip, overwrite, merge or append)", sc.Strategy)
	}
	if sc.Tables == nil {
		sc.Tables = []string{}
	}
	if sc.Follow && sc.Strategy == "append" {
		return Remote{}, errors.New("update remote: append cannot follow (changes are matched to rows by key): choose skip, overwrite or merge")
	}
	out, err := scan(s.pool.QueryRow(ctx, `UPDATE fiberkit_sync_remotes SET tables = $2, strategy = $3, interval_seconds = $4, follow = $5,
		next_run_at = CASE WHEN $4 > 0 THEN least(coalesce(next_run_at, now()), now() + make_interval(secs => $4)) END
		WHERE id::text = $1 RETURNING `+cols, id, sc.Tables, sc.Strategy, sc.Interval, sc.Follow))
	if errors.Is(err, pgx.ErrNoRows) {
		return Remote{}, fmt.Errorf("remote %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Remote{}, fmt.Errorf("update remote %s: %w", id, err)
	}
	return out, nil
}

// Delete removes a remote.
func (s *Store) Delete(ctx context.Context, id string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM fiberkit_sync_remotes WHERE id::text = $1`, id)
	return err
}

// Finished records the outcome of a run, and when it ended.
func (s *Store) Finished(ctx context.Context, id, status string) error {
	_, err := s.pool.Exec(ctx, `UPDATE fiberkit_sync_remotes SET last_status = $2, last_run_at = now() WHERE id::text = $1`, id, status)
	if err != nil {
		return fmt.Errorf("remote %s: record run: %w", id, err)
	}
	return nil
}

// finish records a run's outcome even when ctx has ended (the run was cut short).
func (s *Store) finish(ctx context.Context, id string, err error) {
	status := "done"
	if err != nil {
		status = "failed: " + err.Error()
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = s.Finished(fctx, id, status)
}

// Run is called for each due remote, with its token.
type Run func(ctx context.Context, r Remote, token string) error

// DefaultMaxRun is ScheduleOptions.MaxRun's default.
const DefaultMaxRun = 30 * time.Minute

// ScheduleOptions configure Schedule.
type ScheduleOptions struct {
	// Tick is how often due remotes are looked for. Default 1s.
	Tick time.Duration
	// MaxRun bounds a scheduled run, so a hung pull cannot hold its remote's lock
	// for ever: a run gets MaxRun or its remote's interval, whichever is longer.
	// Default DefaultMaxRun.
	MaxRun time.Duration
	// Active, when set, is asked before claiming due remotes; nothing is claimed
	// while it says false (the module is disabled).
	Active func() bool
}

// Schedule runs due pulls until ctx ends, then returns (after the run in progress,
// which ctx's end cancels).
func (s *Store) Schedule(ctx context.Context, o ScheduleOptions, run Run) {
	if o.Tick <= 0 {
		o.Tick = time.Second
	}
	if o.MaxRun <= 0 {
		o.MaxRun = DefaultMaxRun
	}
	t := time.NewTicker(o.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for ctx.Err() == nil && (o.Active == nil || o.Active()) {
				claimed, err := s.runDue(ctx, o.MaxRun, run)
				if err != nil || !claimed {
					break
				}
			}
		}
	}
}

// runDue claims one due remote (moving its next run an interval ahead, so no other
// replica claims it this interval) and runs it under its advisory lock, for at most
// max(maxRun, interval). When the lock is taken (the previous run still goes on,
// on some replica) this run is skipped and nothing about the last run changes.
func (s *Store) runDue(ctx context.Context, maxRun time.Duration, run Run) (bool, error) {
	var id string
	var interval int
	err := s.pool.QueryRow(ctx, `UPDATE fiberkit_sync_remotes SET next_run_at = now() + make_interval(secs => interval_seconds)
		WHERE id = (SELECT id FROM fiberkit_sync_remotes WHERE interval_seconds > 0 AND NOT follow AND next_run_at <= now()
			ORDER BY next_run_at LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id::text, interval_seconds`).Scan(&id, &interval)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("claim due remote: %w", err)
	}
	unlock, locked, err := s.lock(ctx, id)
	if err != nil || !locked {
		return true, err
	}
	defer unlock()
	rctx, cancel := context.WithTimeout(ctx, max(maxRun, time.Duration(interval)*time.Second))
	defer cancel()
	r, token, err := s.Get(rctx, id)
	if err == nil {
		err = run(rctx, r, token)
		if err != nil && rctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			err = fmt.Errorf("stopped after %s: %w", max(maxRun, time.Duration(interval)*time.Second), err)
		}
	}
	s.finish(ctx, id, err)
	return true, nil
}

// lock takes remote id's advisory lock on a connection of its own, held until
// unlock; locked is false when another run holds it.
func (s *Store) lock(ctx context.Context, id string) (unlock func(), locked bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("remote %s: lock: %w", id, err)
	}
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext('fiberkit_sync_remote:' || $1))`, id).Scan(&locked); err != nil {
		conn.Release()
		return nil, false, fmt.Errorf("remote %s: lock: %w", id, err)
	}
	if !locked {
		conn.Release()
		return nil, false, nil
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock(hashtext('fiberkit_sync_remote:' || $1))`, id); err != nil {
			// The lock cannot be trusted to be gone: drop the connection, which ends it.
			_ = conn.Conn().Close(uctx)
		}
		conn.Release()
	}, true, nil
}

// RunNow runs one remote at once (under its lock), outside its schedule.
func (s *Store) RunNow(ctx context.Context, id string, run Run) error {
	unlock, locked, err := s.lock(ctx, id)
	if err != nil {
		return err
	}
	if !locked {
		return errors.New("a pull of this remote is already running")
	}
	defer unlock()
	r, token, err := s.Get(ctx, id)
	if err != nil {
		return err
	}
	err = run(ctx, r, token)
	s.finish(ctx, id, err)
	return err
}

// ReplaceToken swaps the token of the remotes whose current token hashes to oldHash
// (hex SHA-256) for newToken, found by the stored hash (nothing is decrypted). It
// reports whether a remote matched.
func (s *Store) ReplaceToken(ctx context.Context, oldHash, newToken string) (bool, error) {
	want, err := hex.DecodeString(oldHash)
	if err != nil || len(want) != sha256.Size || !strings.HasPrefix(newToken, "fkc_") {
		return false, errors.New("replace token: malformed request")
	}
	var known bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM fiberkit_sync_remotes WHERE token_hash = $1)`, want).Scan(&known); err != nil {
		return false, fmt.Errorf("replace token: %w", err)
	}
	if !known {
		return false, nil
	}
	sealed, err := s.seal(newToken)
	if err != nil {
		return false, fmt.Errorf("replace token: %w", err)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE fiberkit_sync_remotes SET token_enc = $2, token_hash = $3, key_version = $4 WHERE token_hash = $1`,
		want, sealed, tokenHash(newToken), keyVersion)
	if err != nil {
		return false, fmt.Errorf("replace token: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}
