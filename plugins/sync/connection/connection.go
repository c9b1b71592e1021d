// Package connection keeps Sync's permanent connections on the sending side: a named
// peer that may pull with a token instead of a one-time code, within limits. The
// token is shown once and stored only as a SHA-256 hash (it carries 256 random bits,
// so a fast hash is safe and lets every request be checked cheaply). Every limit is
// checked by Authorize (once per connection) and Admit (once per request), in
// PostgreSQL, so several replicas enforce them together.
package connection

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/mask"
	"github.com/fiberkit/fiberkit/plugins/sync/migrate"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// Statuses.
const (
	Pending   = "pending"
	Active    = "active"
	Suspended = "suspended"
	Revoked   = "revoked"
	Expired   = "expired"
)

// Refusal is a limit or status that stops a request; Reason is the wire code.
type Refusal struct {
	Reason string
	Detail string
}

// Error implements error.
func (r *Refusal) Error() string { return r.Reason + ": " + r.Detail }

// Is matches Refusals by reason.
func (r *Refusal) Is(target error) bool {
	t, ok := target.(*Refusal)
	return ok && t.Reason == r.Reason
}

// The refusals callers branch on (compare with errors.Is).
var (
	ErrBadToken       = &Refusal{Reason: "invalid_token"}
	ErrNotActive      = &Refusal{Reason: "connection_inactive"}
	ErrExpired        = &Refusal{Reason: "connection_expired"}
	ErrAddress        = &Refusal{Reason: "address_not_allowed"}
	ErrHours          = &Refusal{Reason: "outside_allowed_hours"}
	ErrRate           = &Refusal{Reason: "rate_limited"}
	ErrDownloads      = &Refusal{Reason: "download_limit"}
	ErrTable          = &Refusal{Reason: "table_not_allowed"}
	ErrRecordsRequest = &Refusal{Reason: "request_too_large"}
	ErrRecordsTotal   = &Refusal{Reason: "record_limit"}
	ErrNotFound       = errors.New("no such connection")
)

// Limits are what a permanent connection may do (syncapi.Limits).
type Limits = syncapi.Limits

// Connection is a permanent connection as the sending side records it (syncapi.Connection).
type Connection = syncapi.Connection

// Store keeps the connections.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

// Open brings Sync's tables to the current schema (migrate.Up) and returns the
// store over pool.
func Open(ctx context.Context, pool *pgxpool.Pool) (*Store, error) {
	if err := migrate.Up(ctx, pool); err != nil {
		return nil, fmt.Errorf("connections: %w", err)
	}
	return &Store{pool: pool, now: time.Now}, nil
}

// newToken returns a fresh token: "fkc_" and 52 base32 characters (256 bits).
func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("new token: %w", err)
	}
	return "fkc_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)), nil
}

func hashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

const cols = `id::text, name, site_url, status, status_by, status_at, created_by, created_at, limits, downloads, records`

func scan(row pgx.Row) (Connection, error) { return scanWith(row) }

// scanWith scans cols and then any extra columns into extra.
func scanWith(row pgx.Row, extra ...any) (Connection, error) {
	var c Connection
	dst := append([]any{&c.ID, &c.Name, &c.SiteURL, &c.Status, &c.StatusBy, &c.StatusAt, &c.CreatedBy, &c.CreatedAt, &c.Limits, &c.Downloads, &c.Records}, extra...)
	err := row.Scan(dst...)
	return c, err
}

// Create records a pending connection and returns it with its token, which is
// never shown again.
func (s *Store) Create(ctx context.Context, name, siteURL string, l Limits, by string) (Connection, string, error) {
	if strings.TrimSpace(name) == "" {
		return Connection{}, "", errors.New("create connection: a name is required")
	}
	l, err := s.normalize(ctx, l)
	if err != nil {
		return Connection{}, "", fmt.Errorf("create connection: %w", err)
	}
	token, err := newToken()
	if err != nil {
		return Connection{}, "", err
	}
	c, err := scan(s.pool.QueryRow(ctx, `INSERT INTO fiberkit_sync_connections (name, site_url, token_hash, limits, created_by, status_by)
		VALUES ($1, $2, $3, $4, $5, $5) RETURNING `+cols, name, siteURL, hashToken(token), l, by))
	if err != nil {
		return Connection{}, "", fmt.Errorf("create connection: %w", err)
	}
	return c, token, nil
}

// Get returns a connection.
func (s *Store) Get(ctx context.Context, id string) (Connection, error) {
	c, err := scan(s.pool.QueryRow(ctx, `SELECT `+cols+` FROM fiberkit_sync_connections WHERE id::text = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Connection{}, fmt.Errorf("connection %s: %w", id, ErrNotFound)
	}
	return c, err
}

// List returns every connection, newest first.
func (s *Store) List(ctx context.Context) ([]Connection, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+cols+` FROM fiberkit_sync_connections ORDER BY created_at DESC`)
	if err != nil {
		return nil, fmt.Errorf("list connections: %w", err)
	}
	defer rows.Close()
	out := []Connection{}
	for rows.Next() {
		c, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// SetStatus moves a connection to status (approve = active, suspend, reactivate =
// active, revoke). Revoked is final.
func (s *Store) SetStatus(ctx context.Context, id, status, by string) error {
	switch status {
	case Active, Suspended, Revoked:
	default:
		return fmt.Errorf("set status %q: %w", status, ErrInvalidStatus)
	}
	if status == Active {
		// An expired connection comes back only once its expiry is moved on.
		c, err := s.Get(ctx, id)
		if err != nil {
			return err
		}
		if c.Status == Expired && c.Limits.ExpiresAt != nil && !s.now().Before(*c.Limits.ExpiresAt) {
			return fmt.Errorf("set status of %s: %w", id, ErrStillExpired)
		}
	}
	tag, err := s.pool.Exec(ctx, `UPDATE fiberkit_sync_connections SET status = $2, status_by = $3, status_at = now()
		WHERE id::text = $1 AND status <> 'revoked'`, id, status, by)
	if err != nil {
		return fmt.Errorf("set status of %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("connection %s: %w (or revoked)", id, ErrNotFound)
	}
	return nil
}

// ErrInvalidStatus refuses a status an admin cannot set.
var ErrInvalidStatus = errors.New("want active, suspended or revoked")

// ErrStillExpired refuses to reactivate a connection whose expiry has passed.
var ErrStillExpired = errors.New("the connection's expiry has passed: move it into the future first")

// SetLimits replaces a connection's limits.
func (s *Store) SetLimits(ctx context.Context, id string, l Limits) error {
	l, err := s.normalize(ctx, l)
	if err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `UPDATE fiberkit_sync_connections SET limits = $2 WHERE id::text = $1`, id, l)
	if err != nil {
		return fmt.Errorf("set limits of %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("connection %s: %w", id, ErrNotFound)
	}
	return nil
}

// RegenerateToken replaces the token; the old one stops working at once. It returns
// the new token and the old token's hash (hex), which is how the other side
// recognises the change it is told about.
func (s *Store) RegenerateToken(ctx context.Context, id string) (token, oldHash string, err error) {
	if token, err = newToken(); err != nil {
		return "", "", err
	}
	var old []byte
	err = s.pool.QueryRow(ctx, `UPDATE fiberkit_sync_connections c SET token_hash = $2 FROM (SELECT id, token_hash FROM fiberkit_sync_connections WHERE id::text = $1 FOR UPDATE) o
		WHERE c.id = o.id RETURNING o.token_hash`, id, hashToken(token)).Scan(&old)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", fmt.Errorf("connection %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return "", "", fmt.Errorf("regenerate token of %s: %w", id, err)
	}
	return token, hex.EncodeToString(old), nil
}

// Authorize checks a token at connect time: status, expiry, address, hours, rate
// and downloads. It counts the download. The returned connection is the one to
// Admit requests against.
func (s *Store) Authorize(ctx context.Context, token, addr string) (Connection, error) {
	c, err := scan(s.pool.QueryRow(ctx, `SELECT `+cols+` FROM fiberkit_sync_connections WHERE token_hash = $1`, hashToken(token)))
	if errors.Is(err, pgx.ErrNoRows) {
		return Connection{}, &Refusal{Reason: ErrBadToken.Reason, Detail: "unknown token"}
	}
	if err != nil {
		return Connection{}, fmt.Errorf("authorize: %w", err)
	}
	if err := s.check(ctx, c, addr); err != nil {
		return Connection{}, err
	}
	if c.Limits.MaxDownloads > 0 {
		tag, err := s.pool.Exec(ctx, `UPDATE fiberkit_sync_connections SET downloads = downloads + 1 WHERE id = $1::uuid AND downloads < $2`, c.ID, c.Limits.MaxDownloads)
		if err != nil {
			return Connection{}, fmt.Errorf("authorize: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return Connection{}, &Refusal{Reason: ErrDownloads.Reason, Detail: fmt.Sprintf("all %d downloads used", c.Limits.MaxDownloads)}
		}
	} else if _, err := s.pool.Exec(ctx, `UPDATE fiberkit_sync_connections SET downloads = downloads + 1 WHERE id = $1::uuid`, c.ID); err != nil {
		return Connection{}, fmt.Errorf("authorize: %w", err)
	}
	return c, nil
}

// Standing re-reads an open connection and says whether it may go on: its status,
// expiry, address and hours still allow it, and its token is still the one it
// opened with (a regenerated token ends connections opened with the old one). It
// does not count a request; streams call it between batches.
func (s *Store) Standing(ctx context.Context, id, token, addr string) (Connection, error) {
	var same bool
	c, err := scanWith(s.pool.QueryRow(ctx, `SELECT `+cols+`, token_hash = $2 FROM fiberkit_sync_connections WHERE id::text = $1`, id, hashToken(token)), &same)
	if errors.Is(err, pgx.ErrNoRows) {
		return Connection{}, &Refusal{Reason: ErrNotActive.Reason, Detail: "the connection was deleted"}
	}
	if err != nil {
		return Connection{}, fmt.Errorf("check connection %s: %w", id, err)
	}
	if !same {
		return c, &Refusal{Reason: ErrNotActive.Reason, Detail: "the connection's token was regenerated"}
	}
	return c, s.standing(ctx, c, addr)
}

// check applies the per-request limits that do not depend on the request itself,
// and counts the request against the rate limit.
func (s *Store) check(ctx context.Context, c Connection, addr string) error {
	if err := s.standing(ctx, c, addr); err != nil {
		return err
	}
	if c.Limits.RequestsPerMinute > 0 {
		var n int
		err := s.pool.QueryRow(ctx, `INSERT INTO fiberkit_sync_connection_rate (connection_id, minute, requests) VALUES ($1::uuid, date_trunc('minute', now()), 1)
			ON CONFLICT (connection_id, minute) DO UPDATE SET requests = fiberkit_sync_connection_rate.requests + 1 RETURNING requests`, c.ID).Scan(&n)
		if err != nil {
			return fmt.Errorf("rate limit: %w", err)
		}
		if n == 1 {
			// A new minute: drop this connection's old minutes, so the table stays small.
			_, _ = s.pool.Exec(ctx, `DELETE FROM fiberkit_sync_connection_rate WHERE connection_id = $1::uuid AND minute < date_trunc('minute', now()) - interval '1 hour'`, c.ID)
		}
		if n > c.Limits.RequestsPerMinute {
			return &Refusal{Reason: ErrRate.Reason, Detail: fmt.Sprintf("more than %d requests this minute", c.Limits.RequestsPerMinute)}
		}
	}
	return nil
}

// standing applies the limits that hold for the connection as a whole: status,
// expiry, address and hours.
func (s *Store) standing(ctx context.Context, c Connection, addr string) error {
	now := s.now().UTC()
	switch c.Status {
	case Active:
	case Pending:
		return &Refusal{Reason: ErrNotActive.Reason, Detail: "the connection is waiting for approval on the sending site"}
	default:
		return &Refusal{Reason: ErrNotActive.Reason, Detail: "the connection is " + c.Status}
	}
	if c.Limits.ExpiresAt != nil && now.After(*c.Limits.ExpiresAt) {
		_, _ = s.pool.Exec(ctx, `UPDATE fiberkit_sync_connections SET status = 'expired', status_by = 'system', status_at = now() WHERE id = $1::uuid AND status = 'active'`, c.ID)
		return &Refusal{Reason: ErrExpired.Reason, Detail: "expired at " + c.Limits.ExpiresAt.UTC().Format(time.RFC3339)}
	}
	if len(c.Limits.IPAllowlist) > 0 {
		ip, err := netip.ParseAddr(addr)
		allowed := false
		for _, p := range c.Limits.IPAllowlist {
			if pre, perr := netip.ParsePrefix(p); perr == nil && err == nil && pre.Contains(ip.Unmap()) {
				allowed = true
			}
		}
		if !allowed {
			return &Refusal{Reason: ErrAddress.Reason, Detail: addr + " is not in the connection's IP allowlist"}
		}
	}
	if len(c.Limits.AllowedHours) > 0 {
		ok := false
		for _, h := range c.Limits.AllowedHours {
			if h == now.Hour() {
				ok = true
			}
		}
		if !ok {
			return &Refusal{Reason: ErrHours.Reason, Detail: fmt.Sprintf("requests are accepted only in the UTC hours %v (now %02d)", c.Limits.AllowedHours, now.Hour())}
		}
	}
	return nil
}

// Request describes one request on an authorized connection.
type Request struct {
	Address string
	// Table asked for ("" for listing requests).
	Table string
	// Records the request may return (a page size or a batch size).
	Records int
}

// Admit re-reads the connection (so a suspension or revocation applies to
// connections already open) and checks one request against every limit.
func (s *Store) Admit(ctx context.Context, id string, r Request) (Connection, error) {
	c, err := s.Get(ctx, id)
	if err != nil {
		return Connection{}, err
	}
	if err := s.check(ctx, c, r.Address); err != nil {
		return c, err
	}
	if r.Table != "" && !TableAllowed(c.Limits, r.Table) {
		return c, &Refusal{Reason: ErrTable.Reason, Detail: fmt.Sprintf("table %q is not allowed on this connection", r.Table)}
	}
	if c.Limits.MaxRecordsRequest > 0 && r.Records > c.Limits.MaxRecordsRequest {
		return c, &Refusal{Reason: ErrRecordsRequest.Reason, Detail: fmt.Sprintf("at most %d records per request", c.Limits.MaxRecordsRequest)}
	}
	if r.Records > 0 && c.Limits.MaxRecords > 0 && c.Records >= c.Limits.MaxRecords {
		return c, &Refusal{Reason: ErrRecordsTotal.Reason, Detail: fmt.Sprintf("all %d records of this connection are used", c.Limits.MaxRecords)}
	}
	return c, nil
}

// ErrUnknownTable is returned (wrapped) when a limit names a table this site does
// not have.
var ErrUnknownTable = errors.New("unknown table")

// normalize validates l and writes its table lists as the tables they resolve to
// (catalog.Resolve; "public.orders" becomes "orders", as requests are judged), each
// once; a name that resolves to no table is refused, so a typo cannot leave a table
// unprotected.
func (s *Store) normalize(ctx context.Context, l Limits) (Limits, error) {
	if err := l.Validate(); err != nil {
		return l, err
	}
	resolve := func(field string, names []string) ([]string, error) {
		var out []string
		seen := map[string]bool{}
		for _, n := range names {
			n = strings.TrimSpace(n)
			if n == "" {
				continue
			}
			id, err := catalog.Resolve(ctx, s.pool, n)
			if errors.Is(err, catalog.ErrUnknownTable) {
				return nil, fmt.Errorf("%s: %w: %q", field, ErrUnknownTable, n)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: resolve %q: %w", field, n, err)
			}
			if name := id.String(); !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		}
		return out, nil
	}
	var err error
	if l.AllowedTables, err = resolve("allowed_tables", l.AllowedTables); err != nil {
		return l, err
	}
	if l.ExcludedTables, err = resolve("excluded_tables", l.ExcludedTables); err != nil {
		return l, err
	}
	if l.FollowTables, err = resolve("follow_tables", l.FollowTables); err != nil {
		return l, err
	}
	if len(l.Masks) > 0 {
		// Rules are checked against the columns' types as they are now; a send
		// checks them again against the table it reads.
		masks, err := mask.Normalize(ctx, s.pool, mask.Set(l.Masks))
		if err != nil {
			return l, fmt.Errorf("masks: %w", err)
		}
		l.Masks = masks
	}
	return l, nil
}

// TableAllowed applies the allowed and excluded lists (as normalize stored them:
// resolved names).
func TableAllowed(l Limits, table string) bool {
	for _, t := range l.ExcludedTables {
		if t == table {
			return false
		}
	}
	if len(l.AllowedTables) == 0 {
		return true
	}
	for _, t := range l.AllowedTables {
		if t == table {
			return true
		}
	}
	return false
}

// Reserve takes up to want records from the connection's total before they are
// read, atomically, so concurrent requests never send more than the limit between
// them. It returns how many were granted (want when there is no limit) and refuses
// with ErrRecordsTotal when none are left. Give back what was not sent with Release.
func (s *Store) Reserve(ctx context.Context, id string, want int64) (int64, error) {
	var granted, max int64
	err := s.pool.QueryRow(ctx, `WITH c AS (
			SELECT id, records, coalesce((limits->>'max_records')::bigint, 0) AS max FROM fiberkit_sync_connections WHERE id::text = $1 FOR UPDATE)
		UPDATE fiberkit_sync_connections t SET records = t.records + g.n
		FROM (SELECT id, max, CASE WHEN max > 0 THEN least($2, greatest(max - records, 0)) ELSE $2 END AS n FROM c) g
		WHERE t.id = g.id RETURNING g.n, g.max`, id, want).Scan(&granted, &max)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("connection %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("reserve records on %s: %w", id, err)
	}
	if granted == 0 && want > 0 {
		return 0, &Refusal{Reason: ErrRecordsTotal.Reason, Detail: fmt.Sprintf("all %d records of this connection are used", max)}
	}
	return granted, nil
}

// Release gives back n reserved records that were not sent.
func (s *Store) Release(ctx context.Context, id string, n int64) error {
	if n <= 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `UPDATE fiberkit_sync_connections SET records = greatest(records - $2, 0) WHERE id::text = $1`, id, n); err != nil {
		return fmt.Errorf("release records on %s: %w", id, err)
	}
	return nil
}
