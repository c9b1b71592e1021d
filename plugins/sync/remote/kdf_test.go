package remote

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"testing"
)

// sha256GCM is the AEAD of the key derivation before HKDF: the secret's SHA-256.
func sha256GCM(t *testing.T, secret string) cipher.AEAD {
	t.Helper()
	k := sha256.Sum256([]byte(secret))
	block, err := aes.NewCipher(k[:])
	if err != nil {
		t.Fatal(err)
	}
	a, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// A token is sealed with a key HKDF derives from FIBERKIT_SECRET_KEY, not with the
// secret's plain SHA-256; a token stored under the old derivation is re-encrypted
// once when the store opens, and still opens afterwards.
func TestTokenKeyIsHKDFAndOldTokensAreReencrypted(t *testing.T) {
	s, pool := openStore(t)
	ctx := context.Background()
	old := sha256GCM(t, "remote-store-test-key")

	// A new token: the SHA-256 key does not open it.
	r, err := s.Add(ctx, Remote{Name: "new", URL: "https://new.example"}, "fkc_new", "test")
	if err != nil {
		t.Fatal(err)
	}
	var sealed []byte
	if err := pool.QueryRow(ctx, `SELECT token_enc FROM fiberkit_sync_remotes WHERE id::text = $1`, r.ID).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	n := old.NonceSize()
	if _, err := old.Open(nil, sealed[:n], sealed[n:], nil); err == nil {
		t.Fatal("a new token opens with the secret's plain SHA-256 as the key")
	}
	if _, tok, err := s.Get(ctx, r.ID); err != nil || tok != "fkc_new" {
		t.Fatalf("new token: %q %v", tok, err)
	}

	// A token as the previous release stored it (key_version 1, SHA-256 key), and one
	// another secret sealed.
	nonce := make([]byte, n)
	_, _ = rand.Read(nonce)
	legacy := old.Seal(append([]byte(nil), nonce...), nonce, []byte("fkc_legacy"), nil)
	other := sha256GCM(t, "another secret")
	foreign := other.Seal(append([]byte(nil), nonce...), nonce, []byte("fkc_foreign"), nil)
	var legacyID, foreignID string
	for _, x := range []struct {
		id     *string
		name   string
		sealed []byte
	}{{&legacyID, "legacy", legacy}, {&foreignID, "foreign", foreign}} {
		if err := pool.QueryRow(ctx, `INSERT INTO fiberkit_sync_remotes (name, url, token_enc, key_version) VALUES ($1, 'https://old.example', $2, 1) RETURNING id::text`,
			x.name, x.sealed).Scan(x.id); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // the second Open finds nothing left to do
		if s, err = Open(ctx, pool); err != nil {
			t.Fatal(err)
		}
	}
	var version int
	if err := pool.QueryRow(ctx, `SELECT token_enc, key_version FROM fiberkit_sync_remotes WHERE id::text = $1`, legacyID).Scan(&sealed, &version); err != nil {
		t.Fatal(err)
	}
	if version != 2 || bytes.Equal(sealed, legacy) {
		t.Fatalf("old token not re-encrypted: key_version %d, unchanged %v", version, bytes.Equal(sealed, legacy))
	}
	if _, err := old.Open(nil, sealed[:n], sealed[n:], nil); err == nil {
		t.Fatal("the re-encrypted token still opens with the SHA-256 key")
	}
	if _, tok, err := s.Get(ctx, legacyID); err != nil || tok != "fkc_legacy" {
		t.Fatalf("re-encrypted token: %q %v", tok, err)
	}
	// The other secret's token is left as it was, for when that secret is back.
	if err := pool.QueryRow(ctx, `SELECT token_enc, key_version FROM fiberkit_sync_remotes WHERE id::text = $1`, foreignID).Scan(&sealed, &version); err != nil {
		t.Fatal(err)
	}
	if version != 1 || !bytes.Equal(sealed, foreign) {
		t.Fatalf("another secret's token changed: key_version %d", version)
	}
	t.Setenv(KeyEnv, "another secret")
	if s, err = Open(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if _, tok, err := s.Get(ctx, foreignID); err != nil || tok != "fkc_foreign" {
		t.Fatalf("token of the other secret, with that secret back: %q %v", tok, err)
	}
}
