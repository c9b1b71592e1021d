package host

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// csrfStore keeps CSRF tokens in PostgreSQL, each with the admin it was issued to, so
// a form served by one replica of the host app can be posted to another.
type csrfStore struct {
	pool *pgxpool.Pool
}

func (s *csrfStore) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

// Get returns the value of key, or nil when it is missing or expired.
func (s *csrfStore) Get(key string) ([]byte, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	var v []byte
	err := s.pool.QueryRow(ctx, `SELECT value FROM fiberkit_csrf WHERE key = $1 AND (expires_at IS NULL OR expires_at > now())`, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return v, err
}

// Set stores val under key for exp (0 = no expiry), and drops expired entries.
func (s *csrfStore) Set(key string, val []byte, exp time.Duration) error {
	ctx, cancel := s.ctx()
	defer cancel()
	var expires *time.Time
	if exp > 0 {
		t := time.Now().Add(exp)
		expires = &t
	}
	_, err := s.pool.Exec(ctx, `WITH gone AS (DELETE FROM fiberkit_csrf WHERE expires_at < now())
		INSERT INTO fiberkit_csrf (key, value, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at`, key, val, expires)
	return err
}
