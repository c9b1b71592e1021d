// Package capture reads row changes from PostgreSQL logical replication (the pgoutput
// plugin) and hands them over as whole transactions in commit order.
//
// A site gets one publication and one logical replication slot, both named by Setup
// and removed by Teardown. Check says whether the server and the role allow logical
// replication at all, and how to fix it when they do not. Start opens a replication
// connection on the slot; the Stream it returns delivers Txn values and reports to
// the server only the positions the caller acknowledged with Ack, so nothing is lost
// across a reconnect, while a timer keeps an idle slot from holding WAL.
package capture

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
)

// DB is what Check, Setup and Teardown need (catalog's Querier): a
// *pgxpool.Pool, a *pgx.Conn or a transaction.
type DB = catalog.Querier

// NotReadyError is returned by Check when logical replication cannot be used. Each
// entry of Problems says what is missing and how to fix it.
type NotReadyError struct {
	Problems []string
}

// Error lists every problem with its fix.
func (e *NotReadyError) Error() string {
	return "live sync needs logical replication: " + strings.Join(e.Problems, "; ")
}

// Check reports whether the server runs with wal_level = logical and the current role
// may start replication. It returns a *NotReadyError naming each missing piece and its
// fix, or another error when the server could not be asked.
func Check(ctx context.Context, db DB) error {
	var level string
	if err := db.QueryRow(ctx, "SELECT current_setting('wal_level')").Scan(&level); err != nil {
		return fmt.Errorf("capture: read wal_level: %w", err)
	}
	var role string
	var canReplicate bool
	if err := db.QueryRow(ctx, "SELECT current_user, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&role, &canReplicate); err != nil {
		return fmt.Errorf("capture: read role attributes: %w", err)
	}
	var problems []string
	if level != "logical" {
		problems = append(problems, fmt.Sprintf("wal_level is %q, not \"logical\": set wal_level = logical in postgresql.conf and restart the server", level))
	}
	if !canReplicate {
		problems = append(problems, fmt.Sprintf("role %q lacks the REPLICATION attribute: run ALTER ROLE %s REPLICATION as a superuser", role, pgx.Identifier{role}.Sanitize()))
	}
	if len(problems) > 0 {
		return &NotReadyError{Problems: problems}
	}
	return nil
}

// namePattern is what slot names allow; publications get the same name.
var namePattern = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// ErrBadName is returned for a site name that is not a valid slot name (lower-case
// letters, digits and underscores, at most 63 of them).
var ErrBadName = errors.New("capture: name must be 1 to 63 lower-case letters, digits or underscores")

func checkName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%w: %q", ErrBadName, name)
	}
	return nil
}

// Setup creates, or brings up to date, the publication called name over exactly the
// given tables and the logical replication slot called name (plugin pgoutput). It is
// idempotent: an existing slot is kept (with its position), an existing publication
// gets its table list replaced.
func Setup(ctx context.Context, db DB, name string, tables []catalog.Ident) error {
	if err := Publish(ctx, db, name, tables); err != nil {
		return err
	}
	var exists bool
	if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("capture: look up slot %s: %w", name, err)
	}
	if !exists {
		if _, err := db.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", name); err != nil && !isCode(err, "42710") {
			return fmt.Errorf("capture: create replication slot %s: %w", name, err)
		}
	}
	return nil
}

// Publish creates, or brings up to date, the publication called name over exactly
// the given tables (Setup without the slot).
func Publish(ctx context.Context, db DB, name string, tables []catalog.Ident) error {
	if err := checkName(name); err != nil {
		return err
	}
	pub := pgx.Identifier{name}.Sanitize()
	list := make([]string, len(tables))
	for i, t := range tables {
		list[i] = t.Quoted()
	}
	var exists bool
	if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("capture: look up publication %s: %w", name, err)
	}
	var stmts []string
	switch {
	case !exists && len(list) == 0:
		stmts = []string{"CREATE PUBLICATION " + pub}
	case !exists:
		stmts = []string{"CREATE PUBLICATION " + pub + " FOR TABLE " + strings.Join(list, ", ")}
	case len(list) == 0:
		// ALTER PUBLICATION … SET TABLE needs at least one table.
		stmts = []string{"DROP PUBLICATION " + pub, "CREATE PUBLICATION " + pub}
	default:
		stmts = []string{"ALTER PUBLICATION " + pub + " SET TABLE " + strings.Join(list, ", ")}
	}
	for _, s := range stmts {
		if _, err := db.Exec(ctx, s); err != nil && !isCode(err, "42710") {
			return fmt.Errorf("capture: %s: %w", s, err)
		}
	}
	return nil
}

// Release ends the replication connection using the slot called name, if one
// does, and waits until the slot is free (at most 5 s); the slot stays.
func Release(ctx context.Context, db DB, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		var pid *int32
		err := db.QueryRow(ctx, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", name).Scan(&pid)
		if errors.Is(err, pgx.ErrNoRows) || err == nil && pid == nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("capture: look up slot %s: %w", name, err)
		}
		if attempt >= 50 {
			return fmt.Errorf("capture: slot %s is still in use by process %d", name, *pid)
		}
		if _, err := db.Exec(ctx, "SELECT pg_terminate_backend($1), pg_sleep(0.1)", *pid); err != nil {
			return fmt.Errorf("capture: end the connection using slot %s: %w", name, err)
		}
	}
}

// Teardown drops the replication slot and the publication called name, ending a
// replication connection still using the slot. Missing ones are not an error.
func Teardown(ctx context.Context, db DB, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		if err := Release(ctx, db, name); err != nil {
			return err
		}
		_, err := db.Exec(ctx, "SELECT pg_drop_replication_slot($1)", name)
		if err == nil || isCode(err, "42704") {
			break
		}
		// 55006: in use again (a connection took the slot between the two).
		if !isCode(err, "55006") || attempt >= 10 {
			return fmt.Errorf("capture: drop replication slot %s: %w", name, err)
		}
	}
	if _, err := db.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("capture: drop publication %s: %w", name, err)
	}
	return nil
}

func isCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

func isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }
