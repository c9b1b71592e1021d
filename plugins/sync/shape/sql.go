package shape

import (
	"fmt"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// whereSQL returns a where clause (already compiled, so one boolean expression of
// what shapes support) with each $n replaced by its param as a quoted literal: an
// untyped constant, resolved by PostgreSQL exactly as a bind parameter would be. The
// parameters are found by PostgreSQL's own scanner, so a "$1" inside a string
// literal or a comment is left alone.
func whereSQL(where string, params []string) (string, error) {
	scan, err := pg.Scan(where)
	if err != nil {
		return "", fmt.Errorf("scan where clause: %w", err)
	}
	var b strings.Builder
	at := 0
	for _, tok := range scan.Tokens {
		if tok.Token != pg.Token_PARAM {
			continue
		}
		n, err := strconv.Atoi(strings.TrimPrefix(where[tok.Start:tok.End], "$"))
		if err != nil || n < 1 || n > len(params) {
			return "", fmt.Errorf("parameter %s has no value", where[tok.Start:tok.End])
		}
		b.WriteString(where[at:tok.Start])
		b.WriteString("'" + strings.ReplaceAll(params[n-1], "'", "''") + "'")
		at = int(tok.End)
	}
	b.WriteString(where[at:])
	// A line comment at the end must not swallow what follows the clause.
	return "(" + b.String() + "\n)", nil
}
