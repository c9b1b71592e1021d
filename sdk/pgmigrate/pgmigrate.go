// Package pgmigrate keeps a set of PostgreSQL tables on an ordered list of schema
// versions — the host's own tables, or a module's. Up applies the versions a
// database lacks, each once, in one transaction under an advisory lock (so several
// processes starting at once take turns), and records them in a versions table.
//
//	var schema = pgmigrate.List{
//		Table: "myplugin_migrations",
//		Steps: []string{1: `CREATE TABLE myplugin_items (...)`, 2: `ALTER TABLE ...`},
//	}
//	err := schema.Up(ctx, pool)
//
// Never edit a version that has shipped: append one.
package pgmigrate

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrTooNew is matched (errors.Is) by the *TooNewError Up returns for a database
// whose schema is newer than the list.
var ErrTooNew = errors.New("schema is newer than this binary")

// TooNewError says the database has a schema version the list does not know: a
// newer release migrated it. Up changes nothing then.
type TooNewError struct {
	// Table is the versions table that says so.
	Table string
	// Database is the highest version recorded in the database.
	Database int
	// Known is the highest version the list knows.
	Known int
}

// Error implements error.
func (e *TooNewError) Error() string {
	return fmt.Sprintf("%s: the database is at schema version %d, this binary knows up to %d: run a newer release", e.Table, e.Database, e.Known)
}

// Unwrap makes errors.Is(err, ErrTooNew) hold.
func (e *TooNewError) Unwrap() error { return ErrTooNew }

// List is a set of tables' schema versions.
type List struct {
	// Table records the applied versions (version int, applied_at); it also names
	// the advisory lock.
	Table string
	// Steps are the versions' SQL: Steps[v] is version v (Steps[0] is unused).
	Steps []string
}

// Latest is the highest version the list knows.
func (l List) Latest() int { return len(l.Steps) - 1 }

// Up brings the database to Latest: under the advisory lock named after Table, in
// one transaction, it applies each version above the highest one recorded and
// records it. A database at Latest is left as it is; one above is refused with a
// *TooNewError and left as it is.
func (l List) Up(ctx context.Context, pool *pgxpool.Pool) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, l.Table); err != nil {
			return fmt.Errorf("take the advisory lock: %w", err)
		}
		table := pgx.Identifier{l.Table}.Sanitize()
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+table+` (
			version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("create the versions table: %w", err)
		}
		var have int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+table).Scan(&have); err != nil {
			return fmt.Errorf("read the applied version: %w", err)
		}
		if have > l.Latest() {
			return &TooNewError{Table: l.Table, Database: have, Known: l.Latest()}
		}
		for v := have + 1; v <= l.Latest(); v++ {
			if _, err := tx.Exec(ctx, l.Steps[v]); err != nil {
				return fmt.Errorf("apply version %d: %w", v, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO `+table+` (version) VALUES ($1)`, v); err != nil {
				return fmt.Errorf("record version %d: %w", v, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate %s: %w", l.Table, err)
	}
	return nil
}
