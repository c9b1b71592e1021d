package mask

import (
	"fmt"
	"path"
	"strings"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// SecretColumnPatterns name the columns that typically hold secrets (password
// hashes, tokens, API keys, private keys, one-time-password seeds), matched
// case-insensitively against column names; * matches any run of characters.
const SecretColumnPatterns = "password, *_password, password_hash, *_password_hash, hashed_password, encrypted_password, password_digest, password_salt, passwd, " +
	"token, *_token, tokens, *_tokens, api_key, *_api_key, apikey, api_secret, secret, *_secret, secret_key, *_secret_key, " +
	"private_key, *_private_key, otp_secret, totp_secret, mfa_secret, recovery_codes, *_recovery_codes, " +
	"encrypted_otp_secret, encrypted_otp_secret_iv, encrypted_otp_secret_salt"

// IsSecretColumn reports whether a column's name matches SecretColumnPatterns.
func IsSecretColumn(name string) bool {
	n := strings.ToLower(name)
	for _, p := range strings.Split(SecretColumnPatterns, ",") {
		if ok, err := path.Match(strings.TrimSpace(p), n); err == nil && ok {
			return true
		}
	}
	return false
}

// placeholder is the fixed value a NOT NULL secret column of the type gets, or ""
// when the type has none.
func placeholder(c catalog.Column) (string, bool) {
	sh := shapeOf(c)
	if sh.array {
		return "{}", true
	}
	switch sh.class {
	case classText:
		v := "redacted"
		if sh.length > 0 && sh.length < len(v) {
			v = v[:sh.length]
		}
		return v, true
	case classInt2, classInt4, classInt8, classNumeric:
		return "0", true
	case classUUID:
		return "00000000-0000-0000-0000-000000000000", true
	case classBytea:
		return `\x`, true
	}
	t := c.BaseType
	if t == "" {
		t = c.Type
	}
	switch {
	case t == "boolean":
		return "false", true
	case t == "json" || t == "jsonb":
		return "{}", true
	case t == "real" || t == "double precision":
		return "0", true
	case strings.HasPrefix(t, "timestamp") || t == "date":
		return "-infinity", true
	}
	return "", false
}

// SecretDefaults returns the rules that mask sch's secret columns
// (IsSecretColumn) by default: null when the column takes NULL, else a fixed
// placeholder of its type ("redacted", 0, an all-zero uuid, empty bytea, false,
// {}, -infinity). Generated columns are never sent and get none. A NOT NULL
// secret column of a type without a placeholder is an error (ErrNoDefault): it is
// never sent unmasked.
func SecretDefaults(sch *catalog.Schema) (Set, error) {
	table := catalog.IdentOf(sch).String()
	var s Set
	for _, c := range sch.Columns {
		if c.Generated != "" || !IsSecretColumn(c.Name) {
			continue
		}
		switch v, ok := placeholder(c); {
		case c.PrimaryKey:
			s = append(s, Rule{Table: table, Column: c.Name, Kind: syncapi.MaskHash})
		case c.Nullable:
			s = append(s, Rule{Table: table, Column: c.Name, Kind: syncapi.MaskNull})
		case ok:
			s = append(s, Rule{Table: table, Column: c.Name, Kind: syncapi.MaskFixed, Value: v})
		default:
			return nil, fmt.Errorf("secret column %s.%s (%s): %w", table, c.Name, c.Type, ErrNoDefault)
		}
	}
	return s, nil
}
