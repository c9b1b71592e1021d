// Package secret hashes secret settings (passwords, tokens) for storage and checks a
// candidate against a stored hash in constant time. The host hashes; modules verify.
// Hashes are argon2id in the PHC string format:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
package secret

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Parameters follow OWASP's argon2id recommendation (19 MiB, 2 passes, 1 lane).
const (
	memoryKiB = 19 * 1024
	passes    = 2
	lanes     = 1
	saltLen   = 16
	keyLen    = 32
)

var b64 = base64.RawStdEncoding

// Hash returns the argon2id hash of plain with a fresh random salt.
func Hash(plain string) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("secret: salt: %w", err)
	}
	key := argon2.IDKey([]byte(plain), salt, passes, memoryKiB, lanes, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, memoryKiB, passes, lanes, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Verify reports whether plain matches encoded, comparing in constant time. A
// malformed hash, or one whose cost parameters exceed sane bounds, matches nothing.
func Verify(encoded, plain string) bool {
	p, ok := parse(encoded)
	if !ok {
		return false
	}
	key := argon2.IDKey([]byte(plain), p.salt, p.t, p.m, p.p, uint32(len(p.key)))
	return subtle.ConstantTimeCompare(key, p.key) == 1
}

// IsHash reports whether s is a hash this package produced (or could verify).
func IsHash(s string) bool {
	_, ok := parse(s)
	return ok
}

type params struct {
	m, t      uint32
	p         uint8
	salt, key []byte
}

func parse(s string) (params, bool) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return params{}, false
	}
	if parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return params{}, false
	}
	var p params
	var lanes uint32
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.m, &p.t, &lanes); err != nil ||
		parts[3] != fmt.Sprintf("m=%d,t=%d,p=%d", p.m, p.t, lanes) { // nothing trailing, no signs or padding
		return params{}, false
	}
	// Bound the cost so a hostile hash cannot make Verify allocate without limit.
	if p.m == 0 || p.m > 1<<20 || p.t == 0 || p.t > 16 || lanes == 0 || lanes > 16 {
		return params{}, false
	}
	p.p = uint8(lanes)
	var err error
	if p.salt, err = b64.DecodeString(parts[4]); err != nil || len(p.salt) < 8 {
		return params{}, false
	}
	if p.key, err = b64.DecodeString(parts[5]); err != nil || len(p.key) < 16 || len(p.key) > 64 {
		return params{}, false
	}
	return p, true
}
