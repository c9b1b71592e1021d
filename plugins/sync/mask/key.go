package mask

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Key is the masking key: the HMAC-SHA-256 key of every hash and fake. Sites that
// share it hash equal values equally.
type Key [32]byte

// keyInfo binds a key derived from the site's secret to this one use.
const keyInfo = "fiberkit sync mask v1"

// DeriveKey derives the masking key from the site's secret (FIBERKIT_SECRET_KEY)
// with HKDF-SHA256.
func DeriveKey(secret string) (Key, error) {
	var k Key
	b, err := hkdf.Key(sha256.New, []byte(secret), nil, keyInfo, len(k))
	if err != nil {
		return k, fmt.Errorf("derive the masking key: %w", err)
	}
	copy(k[:], b)
	return k, nil
}

// DB is what LoadKey needs of a pool or connection.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// LoadKey returns the site's masking key: derived from secret when it is set
// (DeriveKey), else the database's own random key in fiberkit_sync_mask_key
// (migration v7), created by the first caller. Replicas sharing the database
// share the key either way.
func LoadKey(ctx context.Context, db DB, secret string) (Key, error) {
	if secret != "" {
		return DeriveKey(secret)
	}
	var k Key
	fresh := make([]byte, len(k))
	if _, err := rand.Read(fresh); err != nil {
		return k, fmt.Errorf("masking key: %w", err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO fiberkit_sync_mask_key (id, key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING`, fresh); err != nil {
		return k, fmt.Errorf("masking key: create: %w", err)
	}
	var stored []byte
	if err := db.QueryRow(ctx, `SELECT key FROM fiberkit_sync_mask_key WHERE id = 1`).Scan(&stored); err != nil {
		return k, fmt.Errorf("masking key: read: %w", err)
	}
	if len(stored) != len(k) {
		return k, errors.New("masking key: the stored key is not 32 bytes")
	}
	copy(k[:], stored)
	return k, nil
}

// pads returns the key's HMAC inner and outer pads (SHA-256's 64-byte block).
func (k Key) pads() (ipad, opad []byte) {
	ipad, opad = make([]byte, sha256.BlockSize), make([]byte, sha256.BlockSize)
	copy(ipad, k[:])
	copy(opad, k[:])
	for i := range ipad {
		ipad[i] ^= 0x36
		opad[i] ^= 0x5c
	}
	return ipad, opad
}

// Sum returns the HMAC-SHA-256 of msg under k: what the SQL of a hash computes
// over a value's text.
func (k Key) Sum(msg string) []byte {
	m := hmac.New(sha256.New, k[:])
	m.Write([]byte(msg))
	return m.Sum(nil)
}
