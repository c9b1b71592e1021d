package sdk

import (
	"strconv"

	"github.com/fiberkit/fiberkit/sdk/secret"
)

// Settings are a module's effective settings as the host delivers them. Secret
// settings hold a hash, never the plain value: check a candidate with SecretMatches.
type Settings map[string]string

// String returns the value of key, or "" when unset.
func (s Settings) String(key string) string { return s[key] }

// Bool reports whether key is "true".
func (s Settings) Bool(key string) bool {
	b, _ := strconv.ParseBool(s[key])
	return b
}

// Number returns key as a float64, or 0 when unset or not a number.
func (s Settings) Number(key string) float64 {
	f, _ := strconv.ParseFloat(s[key], 64)
	return f
}

// Enabled reports the module's enabled flag.
func (s Settings) Enabled() bool { return s.Bool("enabled") }

// SecretSet reports whether the secret key has a value.
func (s Settings) SecretSet(key string) bool { return s[key] != "" }

// SecretMatches reports, in constant time, whether plain is the secret stored under key.
// An unset secret matches nothing.
func (s Settings) SecretMatches(key, plain string) bool {
	h := s[key]
	return h != "" && secret.Verify(h, plain)
}
