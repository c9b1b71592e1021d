package settings

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations are the host's schema versions, applied in order, each once. Never
// edit one that has shipped: add a new one.
var migrations = []string{
	1: `
CREATE TABLE fiberkit_settings (
	module     text NOT NULL,
	key        text NOT NULL,
	value      text NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now(),
	updated_by text NOT NULL DEFAULT '',
	PRIMARY KEY (module, key)
);
CREATE TABLE fiberkit_settings_revisions (
	module   text PRIMARY KEY,
	revision bigint NOT NULL
);
CREATE TABLE fiberkit_audit (
	id     bigserial PRIMARY KEY,
	at     timestamptz NOT NULL DEFAULT now(),
	actor  text NOT NULL,
	module text NOT NULL,
	action text NOT NULL,
	detail jsonb NOT NULL DEFAULT '{}'
);`,
	2: `
CREATE TABLE fiberkit_csrf (
	key        text PRIMARY KEY,
	value      bytea NOT NULL,
	expires_at timestamptz
);`,
}

// migrate applies missing migrations. An advisory lock makes replicas starting at
// once take turns.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('fiberkit_schema_migrations'))`); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS fiberkit_schema_migrations (
			version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		var have int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM fiberkit_schema_migrations`).Scan(&have); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		for v := have + 1; v < len(migrations); v++ {
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return fmt.Errorf("migrate to version %d: %w", v, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO fiberkit_schema_migrations (version) VALUES ($1)`, v); err != nil {
				return fmt.Errorf("migrate to version %d: %w", v, err)
			}
		}
		return nil
	})
}
