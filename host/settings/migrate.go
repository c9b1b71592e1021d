package settings

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/sdk/pgmigrate"
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
	return pgmigrate.List{Table: "fiberkit_schema_migrations", Steps: migrations}.Up(ctx, pool)
}
