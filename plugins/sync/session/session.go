// Package session keeps Sync's sessions, connection codes, connection attempts and
// approvals in PostgreSQL, so several replicas of a host app on one database act as
// one site: a code made on one replica is accepted by another, and an approval given
// on one releases a receiver waiting on another (LISTEN/NOTIFY).
//
// A session belongs to an owner (an admin page's socket, an SDK handle, a plugin
// process) holding a lease: the owner renews it with Touch and ends it with
// ReleaseOwner; a session whose lease ran out (its owner crashed) is invalid.
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/migrate"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// Typed errors for Redeem; callers map them to wire error codes.
var (
	ErrInvalidCode      = errors.New("invalid code")
	ErrAlreadyUsed      = errors.New("code already used")
	ErrRateLimited      = errors.New("too many failed attempts; try again later")
	ErrPasswordRequired = errors.New("password required")
	ErrWrongPassword    = errors.New("wrong password")
	ErrDenied           = errors.New("incoming connections are denied")
	ErrApprovalTimeout  = errors.New("no decision on the approval in time")
	ErrNotFound         = errors.New("not found")
)

// Incoming modes (the Sync module's incoming_mode setting).
const (
	AutoAccept      = "auto_accept"
	RequireApproval = "require_approval"
	RequirePassword = "require_password"
	DenyAll         = "deny_all"
)

// Session statuses.
const (
	StatusPending      = "pending"
	StatusConnected    = "connected"
	StatusTransferring = "transferring"
	StatusDone         = "done"
)

// codeAlphabet has no 0/O, 1/I/L: codes are read aloud and typed by people.
const codeAlphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"

// CodeLength is the length of a connection code.
const CodeLength = 8

// Limits configure lease and rate limiting.
type Limits struct {
	// Lease is how long a session outlives its owner's last Touch. Default 30s.
	Lease time.Duration
	// MaxFailures failed attempts from one address within Window lock it out for Lockout.
	MaxFailures int
	Window      time.Duration
	Lockout     time.Duration
	// MaxConcurrentChecks bounds the password checks (argon2id) running at once in
	// this process. Default 4.
	MaxConcurrentChecks int
	// RejoinGrace is how long after its connection ended a receiver may come back
	// with the code it already redeemed, from the same address (a client's automatic
	// reconnect). Default 30s.
	RejoinGrace time.Duration
	// OnLockout, when set, is called once per lockout: when the attempt that finds
	// an address newly locked out is refused (syncmetrics' LockedOut).
	OnLockout func()
}

func (l Limits) withDefaults() Limits {
	if l.Lease <= 0 {
		l.Lease = 30 * time.Second
	}
	if l.MaxFailures <= 0 {
		l.MaxFailures = 5
	}
	if l.Window <= 0 {
		l.Window = 5 * time.Minute
	}
	if l.Lockout <= 0 {
		l.Lockout = 15 * time.Minute
	}
	if l.MaxConcurrentChecks <= 0 {
		l.MaxConcurrentChecks = 4
	}
	if l.RejoinGrace <= 0 {
		l.RejoinGrace = 30 * time.Second
	}
	return l
}

// Store is the session store.
type Store struct {
	pool   *pgxpool.Pool
	limits Limits
	checks chan struct{} // a slot per running password check

	// lockouts are the addresses this process knows to be locked out: their
	// attempts are refused without touching the database, and counted on the
	// lockout's row now and then.
	mu       sync.Mutex
	lockouts map[string]*lockout
	pruned   time.Time // when ended lockouts were last forgotten
}

// lockout is a locked-out rate key as this process knows it.
type lockout struct {
	until   time.Time // the lockout ends
	row     int64     // the attempts row that counts the refusals
	pending int       // refusals not yet added to the row
	flushed time.Time
}

// Session is one session (syncapi.SessionInfo).
type Session = syncapi.SessionInfo

// Open brings Sync's tables to the current schema (migrate.Up) and returns the
// store over pool.
func Open(ctx context.Context, pool *pgxpool.Pool, limits Limits) (*Store, error) {
	if err := migrate.Up(ctx, pool); err != nil {
		return nil, fmt.Errorf("session store: %w", err)
	}
	limits = limits.withDefaults()
	return &Store{pool: pool, limits: limits, checks: make(chan struct{}, limits.MaxConcurrentChecks),
		lockouts: map[string]*lockout{}}, nil
}

// NewCode returns a fresh connection code from crypto/rand, uniform over the alphabet.
func NewCode() (string, error) {
	out := make([]byte, 0, CodeLength)
	buf := make([]byte, 16)
	// Rejection sampling: bytes ≥ 248 (8 × 31) would bias the modulo.
	limit := byte(256 - 256%len(codeAlphabet))
	for len(out) < CodeLength {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("new code: %w", err)
		}
		for _, b := range buf {
			if b < limit && len(out) < CodeLength {
				out = append(out, codeAlphabet[int(b)%len(codeAlphabet)])
			}
		}
	}
	return string(out), nil
}

// NormalizeCode is how a typed code is compared: surrounding space dropped, upper case.
func NormalizeCode(code string) string { return strings.ToUpper(strings.TrimSpace(code)) }

// hashCode is how codes are stored and looked up: the database never holds a usable
// code, and a look-up by hash leaks nothing about near misses through timing.
// Codes are compared upper-cased and trimmed, as people type them.
func hashCode(code string) []byte {
	h := sha256.Sum256([]byte(NormalizeCode(code)))
	return h[:]
}

// Create makes a session for owner and returns it with its code.
func (s *Store) Create(ctx context.Context, direction, owner string) (Session, string, error) {
	if direction != "send" && direction != "receive" {
		return Session{}, "", fmt.Errorf("create session: direction %q (want send or receive)", direction)
	}
	if owner == "" {
		return Session{}, "", errors.New("create session: an owner is required")
	}
	for range 5 {
		code, err := NewCode()
		if err != nil {
			return Session{}, "", err
		}
		var sess Session
		err = s.pool.QueryRow(ctx, `INSERT INTO fiberkit_sync_sessions (code_hash, direction, owner, lease_until)
			VALUES ($1, $2, $3, now() + $4::interval) ON CONFLICT (code_hash) DO NOTHING
			RETURNING id::text, direction, owner, status, created_at, lease_until`,
			hashCode(code), direction, owner, s.limits.Lease.String()).
			Scan(&sess.ID, &sess.Direction, &sess.Owner, &sess.Status, &sess.CreatedAt, &sess.LeaseUntil)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // a collision with a live code: draw again
		}
		if err != nil {
			return Session{}, "", fmt.Errorf("create session: %w", err)
		}
		return sess, code, nil
	}
	return Session{}, "", errors.New("create session: could not draw a free code")
}

const sessionCols = `id::text, direction, owner, status, created_at, lease_until, used_at, coalesce(receiver_info, '{}'), coalesce(receiver_addr, ''), coalesce(progress, '{}')`

func scanSession(row pgx.Row) (Session, error) {
	var s Session
	err := row.Scan(&s.ID, &s.Direction, &s.Owner, &s.Status, &s.CreatedAt, &s.LeaseUntil, &s.UsedAt, &s.ReceiverInfo, &s.ReceiverAddr, &s.Progress)
	return s, err
}

// Get returns a session by id.
func (s *Store) Get(ctx context.Context, id string) (Session, error) {
	sess, err := scanSession(s.pool.QueryRow(ctx, `SELECT `+sessionCols+` FROM fiberkit_sync_sessions WHERE id::text = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Session{}, fmt.Errorf("session %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Session{}, fmt.Errorf("session %s: %w", id, err)
	}
	return sess, nil
}

// List returns live sessions (lease not expired), newest first.
func (s *Store) List(ctx context.Context) ([]Session, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+sessionCols+` FROM fiberkit_sync_sessions WHERE lease_until > now() ORDER BY created_at DESC`)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	defer rows.Close()
	var out []Session
	for rows.Next() {
		sess, err := scanSession(rows)
		if err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		out = append(out, sess)
	}
	return out, rows.Err()
}

// Update sets a session's status and progress.
func (s *Store) Update(ctx context.Context, id, status string, progress map[string]any) error {
	tag, err := s.pool.Exec(ctx, `UPDATE fiberkit_sync_sessions SET status = $2, progress = coalesce($3, progress) WHERE id::text = $1`, id, status, progress)
	if err != nil {
		return fmt.Errorf("update session %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("update session %s: %w", id, ErrNotFound)
	}
	return nil
}

// SetReceiverInfo records what a receiver says about itself (from its join), on the
// session and on the attempt that redeemed its code.
func (s *Store) SetReceiverInfo(ctx context.Context, id string, info map[string]any) error {
	if _, err := s.pool.Exec(ctx, `UPDATE fiberkit_sync_sessions SET receiver_info = $2 WHERE id::text = $1`, id, info); err != nil {
		return fmt.Errorf("update session %s: %w", id, err)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE fiberkit_sync_attempts SET receiver_info = $2 WHERE session_id::text = $1`, id, info); err != nil {
		return fmt.Errorf("update session %s: %w", id, err)
	}
	return nil
}

// Delete removes a session; its code stops working at once.
func (s *Store) Delete(ctx context.Context, id string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM fiberkit_sync_sessions WHERE id::text = $1`, id); err != nil {
		return fmt.Errorf("delete session %s: %w", id, err)
	}
	return nil
}

// Touch renews the lease of every session of owner.
func (s *Store) Touch(ctx context.Context, owner string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE fiberkit_sync_sessions SET lease_until = now() + $2::interval WHERE owner = $1`,
		owner, s.limits.Lease.String()); err != nil {
		return fmt.Errorf("touch sessions of %s: %w", owner, err)
	}
	return nil
}

// ReleaseOwner deletes every session of owner (the owner went away).
func (s *Store) ReleaseOwner(ctx context.Context, owner string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM fiberkit_sync_sessions WHERE owner = $1`, owner); err != nil {
		return fmt.Errorf("release sessions of %s: %w", owner, err)
	}
	return nil
}

// Attempt describes a receiver trying a code.
type Attempt struct {
	Address string
	// ReceiverInfo, when the receiver said who it is before the code is checked, is
	// recorded with the attempt (whatever its outcome). For an accepted attempt
	// SetReceiverInfo fills it in later from the join.
	ReceiverInfo map[string]any
	Password     string
}

// Policy is the sending site's incoming-connection settings at the time of the attempt.
type Policy struct {
	Mode string
	// PasswordMatches checks a candidate password (constant time) against the stored hash.
	PasswordMatches func(candidate string) bool
}

// Redeem checks an attempt against the code and the policy and, when it passes,
// marks the code used (single use, atomically) and returns the session. With
// require_approval the caller then asks for approval (RequestApproval, WaitApproval).
//
// Every attempt is recorded (fiberkit_sync_attempts), refusals by the lockout too.
// The attempt is reserved before anything is checked: under a lock per address (held
// only for the look-up and the insert, so across replicas too) the address's recent
// failures are counted and, unless it is locked out, a row counting as a failure is
// inserted; the row gets its real outcome once the check is done. So however many
// attempts arrive at once, at most MaxFailures wrong ones are ever evaluated per
// window: the others see the reservations and are refused with ErrRateLimited.
// Password checks (argon2id) are also limited to MaxConcurrentChecks at a time per
// Store.
func (s *Store) Redeem(ctx context.Context, code string, a Attempt, p Policy) (Session, error) {
	attemptID, err := s.reserve(ctx, a)
	if err != nil {
		return Session{}, err
	}
	settle := func(outcome string, failed bool, sessionID *string) {
		// The outcome is recorded even when the caller went away meanwhile.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = s.pool.Exec(sctx, `UPDATE fiberkit_sync_attempts SET outcome = $2, failed = $3, session_id = $4::uuid WHERE id = $1`,
			attemptID, outcome, failed, sessionID)
	}
	fail := func(outcome error) (Session, error) {
		settle(outcome.Error(), outcome != ErrDenied && outcome != ErrPasswordRequired && outcome != ErrAlreadyUsed, nil)
		return Session{}, outcome
	}
	internal := func(err error) (Session, error) {
		settle("internal error", false, nil)
		return Session{}, fmt.Errorf("redeem code: %w", err)
	}
	var id string
	var used *time.Time
	var live bool
	err = s.pool.QueryRow(ctx, `SELECT id::text, used_at, lease_until > now() FROM fiberkit_sync_sessions WHERE code_hash = $1 AND direction = 'send'`,
		hashCode(code)).Scan(&id, &used, &live)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fail(ErrInvalidCode)
	case err != nil:
		return internal(err)
	case !live:
		return fail(ErrInvalidCode)
	case used != nil:
		if sess, ok, err := s.rejoin(ctx, id, a.Address); err != nil {
			return internal(err)
		} else if ok {
			settle("rejoined", false, &sess.ID)
			return sess, nil
		}
		// A known code, redeemed: not a guess, so not a failure toward the lockout
		// (a client retrying after a drop must not lock its address out).
		settle(ErrAlreadyUsed.Error(), false, nil)
		return Session{}, ErrAlreadyUsed
	}
	switch p.Mode {
	case DenyAll:
		return fail(ErrDenied)
	case RequirePassword:
		if a.Password == "" {
			return fail(ErrPasswordRequired)
		}
		ok, err := s.checkPassword(ctx, p, a.Password)
		if err != nil {
			return internal(err)
		}
		if !ok {
			return fail(ErrWrongPassword)
		}
	case AutoAccept, RequireApproval:
	default:
		return fail(ErrDenied)
	}
	sess, err := scanSession(s.pool.QueryRow(ctx, `UPDATE fiberkit_sync_sessions SET used_at = now(), status = 'connected',
		receiver_info = $2, receiver_addr = $3 WHERE id::text = $1 AND used_at IS NULL AND lease_until > now() RETURNING `+sessionCols,
		id, a.ReceiverInfo, a.Address))
	if errors.Is(err, pgx.ErrNoRows) {
		return fail(ErrAlreadyUsed) // another receiver won the race
	}
	if err != nil {
		return internal(err)
	}
	settle("accepted", false, &sess.ID)
	return sess, nil
}

// checkPassword runs the policy's password check, at most MaxConcurrentChecks at a
// time: each is a deliberately slow hash.
func (s *Store) checkPassword(ctx context.Context, p Policy, candidate string) (bool, error) {
	if p.PasswordMatches == nil {
		return false, nil
	}
	select {
	case s.checks <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-s.checks }()
	return p.PasswordMatches(candidate), nil
}

// Validate reports whether code would be accepted now, without using it up:
// ErrInvalidCode (unknown, or its owner went away) or ErrAlreadyUsed.
func (s *Store) Validate(ctx context.Context, code string) (Session, error) {
	sess, err := scanSession(s.pool.QueryRow(ctx, `SELECT `+sessionCols+` FROM fiberkit_sync_sessions
		WHERE code_hash = $1 AND direction = 'send' AND lease_until > now()`, hashCode(code)))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Session{}, ErrInvalidCode
	case err != nil:
		return Session{}, fmt.Errorf("validate code: %w", err)
	case sess.UsedAt != nil:
		return Session{}, ErrAlreadyUsed
	}
	return sess, nil
}

// Live reports whether a session still exists with a valid lease (its owner is there).
func (s *Store) Live(ctx context.Context, id string) (bool, error) {
	var live bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM fiberkit_sync_sessions WHERE id::text = $1 AND lease_until > now())`, id).Scan(&live)
	return live, err
}

// outcomeChecking marks a reserved attempt whose check is under way; it counts as a
// failure until it gets its outcome.
const outcomeChecking = "checking"

// reserve records an attempt before it is checked. Under a transaction-scoped
// advisory lock on the address it decides whether the address is locked out: the
// address is locked out for Lockout after the latest failure that completes
// MaxFailures failures within Window (reserved attempts count as failures). A
// locked-out attempt is refused with ErrRateLimited and is not itself a failure (a
// waiting user does not prolong the lockout); it is not stored as a row of its own
// either: the lockout's first refusal gets a row, later ones are counted on it
// (repeats), and once this process knows the address is locked out it refuses
// without a database write, adding the count to the row now and then. Otherwise
// the reservation's id is returned.
func (s *Store) reserve(ctx context.Context, a Attempt) (int64, error) {
	key := RateKey(a.Address)
	if s.refuseLocked(ctx, key) {
		return 0, ErrRateLimited
	}
	var id int64
	var until *time.Time
	var started bool
	info := capInfo(a.ReceiverInfo)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('fiberkit_sync_attempts'), hashtext($1))`, key); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `SELECT max(at) + $3::interval FROM (
				SELECT at, lag(at, $4) OVER (ORDER BY at, id) AS first FROM fiberkit_sync_attempts
				WHERE rate_key = $1 AND failed AND at > clock_timestamp() - $2::interval) f
			WHERE first IS NOT NULL AND at - first <= $5::interval
			HAVING max(at) + $3::interval > clock_timestamp()`,
			key, (s.limits.Window + s.limits.Lockout).String(), s.limits.Lockout.String(), s.limits.MaxFailures-1, s.limits.Window.String()).Scan(&until)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if until != nil {
			// Count the refusal on the lockout's row (made by its first refusal).
			err := tx.QueryRow(ctx, `UPDATE fiberkit_sync_attempts SET repeats = repeats + 1, last_at = clock_timestamp()
				WHERE id = (SELECT max(id) FROM fiberkit_sync_attempts WHERE rate_key = $1 AND outcome = $2 AND at > $3::timestamptz - $4::interval)
				RETURNING id`, key, ErrRateLimited.Error(), *until, s.limits.Lockout.String()).Scan(&id)
			if !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			started = true // no refusal row yet: this one starts the lockout
		}
		outcome, failed := outcomeChecking, true
		if until != nil {
			outcome, failed = ErrRateLimited.Error(), false
		}
		if err := tx.QueryRow(ctx, `INSERT INTO fiberkit_sync_attempts (at, address, rate_key, receiver_info, outcome, failed)
			VALUES (clock_timestamp(), $1, $2, $3, $4, $5) RETURNING id`, a.Address, key, info, outcome, failed).Scan(&id); err != nil {
			return err
		}
		if id%1000 == 0 {
			// Now and then, forget attempts older than the attempts page shows.
			if _, err := tx.Exec(ctx, `DELETE FROM fiberkit_sync_attempts WHERE at < now() - interval '90 days'`); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("rate limit: %w", err)
	}
	if until != nil {
		if started && s.limits.OnLockout != nil {
			s.limits.OnLockout()
		}
		s.mu.Lock()
		if l := s.lockouts[key]; l == nil || l.row != id {
			s.lockouts[key] = &lockout{until: *until, row: id, flushed: time.Now()}
		}
		s.mu.Unlock()
		return 0, ErrRateLimited
	}
	return id, nil
}

// refuseLocked reports whether this process knows key to be locked out now; if so
// it counts the refusal, adding the count to the lockout's row every 100 refusals
// or 5 seconds.
func (s *Store) refuseLocked(ctx context.Context, key string) bool {
	s.mu.Lock()
	l := s.lockouts[key]
	now := time.Now()
	if l == nil || !now.Before(l.until) {
		delete(s.lockouts, key)
		if now.Sub(s.pruned) > time.Minute { // forget other ended lockouts now and then
			s.pruned = now
			for k, o := range s.lockouts {
				if !now.Before(o.until) {
					delete(s.lockouts, k)
				}
			}
		}
		s.mu.Unlock()
		return false
	}
	l.pending++
	n, row := 0, l.row
	if l.pending >= 100 || now.Sub(l.flushed) >= 5*time.Second {
		n, l.pending, l.flushed = l.pending, 0, now
	}
	s.mu.Unlock()
	if n > 0 {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		// The count is a display figure: a lost flush loses no protection.
		_, _ = s.pool.Exec(fctx, `UPDATE fiberkit_sync_attempts SET repeats = repeats + $2, last_at = clock_timestamp() WHERE id = $1`, row, n)
	}
	return true
}

// maxInfoBytes bounds the receiver info stored with an attempt: anyone may send
// it, before any check.
const maxInfoBytes = 512

// capInfo returns info as stored with an attempt: whole when its JSON is at most
// maxInfoBytes, else its first keys with string values cut to 64 bytes, marked
// "truncated", within the bound.
func capInfo(info map[string]any) map[string]any {
	if b, err := json.Marshal(info); err == nil && len(b) <= maxInfoBytes {
		return info
	}
	keys := make([]string, 0, len(info))
	for k := range info {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := map[string]any{"truncated": true}
	size := len(`{"truncated":true}`)
	for _, k := range keys {
		if len(k) > 64 {
			continue
		}
		v := fmt.Sprint(info[k])
		if str, ok := info[k].(string); ok {
			v = str
		}
		if len(v) > 64 {
			v = strings.ToValidUTF8(v[:64], "")
		}
		b, _ := json.Marshal(map[string]string{k: v})
		if size+len(b) > maxInfoBytes {
			break
		}
		out[k], size = v, size+len(b)
	}
	return out
}

// rejoin lets the receiver that redeemed session id back in when it comes from the
// same address within RejoinGrace of its connection's end, and the session still
// lives: ok is false otherwise. Its connection is open again afterwards.
func (s *Store) rejoin(ctx context.Context, id, addr string) (Session, bool, error) {
	sess, err := scanSession(s.pool.QueryRow(ctx, `UPDATE fiberkit_sync_sessions SET receiver_left_at = NULL
		WHERE id::text = $1 AND lease_until > now() AND receiver_left_at > now() - $2::interval
			AND receiver_addr IS NOT NULL AND receiver_addr <> ''
		RETURNING `+sessionCols, id, s.limits.RejoinGrace.String()))
	if errors.Is(err, pgx.ErrNoRows) {
		return Session{}, false, nil
	}
	if err != nil {
		return Session{}, false, fmt.Errorf("rejoin: %w", err)
	}
	if RateKey(sess.ReceiverAddr) != RateKey(addr) {
		// Another address: put the mark back; it is not this receiver's to reuse.
		_, err := s.pool.Exec(ctx, `UPDATE fiberkit_sync_sessions SET receiver_left_at = now() WHERE id::text = $1`, id)
		return Session{}, false, err
	}
	sess.Rejoined = true
	return sess, true, nil
}

// Left records that the receiver's connection to session id ended: the same
// receiver may rejoin within RejoinGrace.
func (s *Store) Left(ctx context.Context, id string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE fiberkit_sync_sessions SET receiver_left_at = now() WHERE id::text = $1`, id); err != nil {
		return fmt.Errorf("session %s: record the receiver left: %w", id, err)
	}
	return nil
}

// RateKey is what wrong guesses are counted against: the address itself, or for
// IPv6 its /64 (one host usually holds a whole /64, so rotating addresses inside it
// must not reset the count).
func RateKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	if ip = ip.Unmap(); ip.Is4() {
		return ip.String()
	}
	p, _ := ip.WithZone("").Prefix(64)
	return p.String()
}

// AttemptRecord is a recorded attempt.
type AttemptRecord struct {
	At           time.Time      `json:"at"`
	Address      string         `json:"address"`
	ReceiverInfo map[string]any `json:"receiver_info"`
	Outcome      string         `json:"outcome"`
	// Repeats counts the further refusals this row stands for (a lockout's
	// refusals share one row); LastAt is the latest of them.
	Repeats int        `json:"repeats,omitempty"`
	LastAt  *time.Time `json:"last_at,omitempty"`
}

// Attempts returns the newest attempts.
func (s *Store) Attempts(ctx context.Context, limit int) ([]AttemptRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, at, address, coalesce(receiver_info, '{}'), outcome, repeats, last_at FROM fiberkit_sync_attempts ORDER BY id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("attempts: %w", err)
	}
	defer rows.Close()
	var out []AttemptRecord
	var ids []int64
	for rows.Next() {
		var r AttemptRecord
		var id int64
		if err := rows.Scan(&id, &r.At, &r.Address, &r.ReceiverInfo, &r.Outcome, &r.Repeats, &r.LastAt); err != nil {
			return nil, err
		}
		out, ids = append(out, r), append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Refusals this process counted and has not written yet.
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range out {
		for _, l := range s.lockouts {
			if l.row == ids[i] {
				out[i].Repeats += l.pending
			}
		}
	}
	return out, nil
}
