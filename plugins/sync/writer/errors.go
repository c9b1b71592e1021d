package writer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// The classes of refusal. Every error Apply returns for a mutation is a
// *MutationError, and errors.Is tells which class it is in (at most one); an error in
// none of them (the database went away, a hook failed for its own reasons) is the
// server's fault, not the request's.
var (
	// ErrForbidden: the writer refuses the mutation — its table is not allowed, its
	// type is not accepted for the table, or Check or Validate refused it.
	ErrForbidden = errors.New("forbidden")
	// ErrInvalid: the mutation cannot be applied as it is — unknown table or column,
	// a value its column's type does not read, a missing key, a NOT NULL or CHECK
	// constraint, a malformed request.
	ErrInvalid = errors.New("invalid")
	// ErrConflict: the mutation is well formed but the database's current state
	// refuses it — the row to update or delete does not exist, a unique or foreign
	// key constraint, a serialization failure or deadlock. Retrying later may succeed.
	ErrConflict = errors.New("conflict")
	// ErrNotFound: the row an update or delete names does not exist. It is a conflict.
	ErrNotFound = fmt.Errorf("%w: row not found", ErrConflict)
)

// MutationError names the mutation Apply refused and why. Err is in one of the
// classes ErrForbidden, ErrInvalid, ErrConflict or in none (see their docs).
type MutationError struct {
	// Index is the mutation's place in the list Apply received, from 0.
	Index int
	// Type is "insert", "update" or "delete" as the mutation said.
	Type string
	// Table is "schema.table" as the mutation named it.
	Table string
	// Key is the primary key of the row, when known.
	Key map[string]any
	Err error
}

func (e *MutationError) Error() string {
	s := fmt.Sprintf("mutation %d (%s %s", e.Index, e.Type, e.Table)
	if len(e.Key) > 0 {
		k, _ := json.Marshal(e.Key)
		s += " " + string(k)
	}
	return s + "): " + e.Err.Error()
}

// Unwrap returns Err.
func (e *MutationError) Unwrap() error { return e.Err }

// classOf returns the class err is in, or nil.
func classOf(err error) error {
	for _, c := range []error{ErrForbidden, ErrInvalid, ErrConflict} {
		if errors.Is(err, c) {
			return c
		}
	}
	return nil
}

// refusal puts an error from Check or Validate in ErrForbidden unless the rule
// already chose a class.
func refusal(err error) error {
	if classOf(err) != nil {
		return err
	}
	return fmt.Errorf("%w: %w", ErrForbidden, err)
}

// dbError puts a PostgreSQL error in its class: bad values and NOT NULL / CHECK
// violations are invalid, unique / foreign key / exclusion violations,
// serialization failures and deadlocks are conflicts. Others stay unclassified.
func dbError(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || classOf(err) != nil {
		return err
	}
	switch {
	case pe.Code == "23505" || pe.Code == "23503" || pe.Code == "23P01" || pe.Code == "40001" || pe.Code == "40P01":
		return fmt.Errorf("%w: %w", ErrConflict, err)
	case pe.Code == "23502" || pe.Code == "23514" || pe.Code == "428C9" || strings.HasPrefix(pe.Code, "22"):
		// 428C9: a value for a GENERATED ALWAYS column.
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}
