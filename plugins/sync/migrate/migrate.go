// Package migrate keeps Sync's tables (sessions, attempts, approvals, connections,
// remotes, transfer history) on one ordered list of schema versions. Up applies the
// versions a database lacks, once, under one advisory lock and in one transaction,
// and records them in fiberkit_sync_migrations; several plugin processes starting
// at once take turns. The stores (session, connection, remote, history) call Up
// from their Open.
package migrate

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/sdk/pgmigrate"
)

// ErrTooNew is matched (errors.Is) by the *pgmigrate.TooNewError Up returns for a
// database whose schema is newer than this binary knows.
var ErrTooNew = pgmigrate.ErrTooNew

// TooNewError says the database has a schema version this binary does not know.
type TooNewError = pgmigrate.TooNewError

// v1 is the schema as the releases before this list left it, so that a database
// one of them laid out (tables there, no fiberkit_sync_migrations) is adopted: every
// statement is IF NOT EXISTS. The columns added over time (attempts.session_id and
// rate_key, remotes.token_hash, transfers.requested) are part of each CREATE TABLE,
// last, where ADD COLUMN put them; their ADD COLUMN IF NOT EXISTS lines stay for a
// database from a release before them. Only v1 is idempotent: later versions are
// plain DDL, applied exactly once.
const v1 = `
CREATE TABLE IF NOT EXISTS fiberkit_sync_sessions (
	id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	code_hash     bytea NOT NULL UNIQUE,
	direction     text NOT NULL,
	owner         text NOT NULL,
	status        text NOT NULL DEFAULT 'pending',
	created_at    timestamptz NOT NULL DEFAULT now(),
	lease_until   timestamptz NOT NULL,
	used_at       timestamptz,
	receiver_info jsonb,
	receiver_addr text,
	progress      jsonb
);
CREATE INDEX IF NOT EXISTS fiberkit_sync_sessions_owner ON fiberkit_sync_sessions (owner);

CREATE TABLE IF NOT EXISTS fiberkit_sync_attempts (
	id            bigserial PRIMARY KEY,
	at            timestamptz NOT NULL DEFAULT now(),
	address       text NOT NULL,
	receiver_info jsonb,
	outcome       text NOT NULL,
	failed        boolean NOT NULL,
	session_id    uuid,
	rate_key      text
);
ALTER TABLE fiberkit_sync_attempts ADD COLUMN IF NOT EXISTS session_id uuid;
ALTER TABLE fiberkit_sync_attempts ADD COLUMN IF NOT EXISTS rate_key text;
CREATE INDEX IF NOT EXISTS fiberkit_sync_attempts_addr ON fiberkit_sync_attempts (address, at);
CREATE INDEX IF NOT EXISTS fiberkit_sync_attempts_rate_key ON fiberkit_sync_attempts (rate_key, at);

CREATE TABLE IF NOT EXISTS fiberkit_sync_approvals (
	id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	session_id    uuid NOT NULL REFERENCES fiberkit_sync_sessions(id) ON DELETE CASCADE,
	receiver_info jsonb,
	address       text,
	status        text NOT NULL DEFAULT 'pending',
	decided_by    text,
	created_at    timestamptz NOT NULL DEFAULT now(),
	decided_at    timestamptz
);

CREATE TABLE IF NOT EXISTS fiberkit_sync_connections (
	id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	name       text NOT NULL,
	site_url   text NOT NULL DEFAULT '',
	token_hash bytea NOT NULL UNIQUE,
	status     text NOT NULL DEFAULT 'pending',
	status_by  text NOT NULL DEFAULT '',
	status_at  timestamptz NOT NULL DEFAULT now(),
	created_by text NOT NULL DEFAULT '',
	created_at timestamptz NOT NULL DEFAULT now(),
	limits     jsonb NOT NULL DEFAULT '{}',
	downloads  int NOT NULL DEFAULT 0,
	records    bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS fiberkit_sync_connection_rate (
	connection_id uuid NOT NULL REFERENCES fiberkit_sync_connections(id) ON DELETE CASCADE,
	minute        timestamptz NOT NULL,
	requests      int NOT NULL,
	PRIMARY KEY (connection_id, minute)
);

CREATE TABLE IF NOT EXISTS fiberkit_sync_remotes (
	id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	name             text NOT NULL,
	url              text NOT NULL,
	token_enc        bytea NOT NULL,
	tables           text[] NOT NULL DEFAULT '{}',
	strategy         text NOT NULL DEFAULT 'skip',
	interval_seconds int NOT NULL DEFAULT 0,
	next_run_at      timestamptz,
	last_run_at      timestamptz,
	last_status      text NOT NULL DEFAULT '',
	created_by       text NOT NULL DEFAULT '',
	created_at       timestamptz NOT NULL DEFAULT now(),
	token_hash       bytea -- SHA-256 of the token, to find a remote by it
);
ALTER TABLE fiberkit_sync_remotes ADD COLUMN IF NOT EXISTS token_hash bytea;
CREATE INDEX IF NOT EXISTS fiberkit_sync_remotes_token_hash ON fiberkit_sync_remotes (token_hash);

CREATE TABLE IF NOT EXISTS fiberkit_sync_transfers (
	id          bigserial PRIMARY KEY,
	at          timestamptz NOT NULL DEFAULT now(),
	direction   text NOT NULL,
	peer        text NOT NULL,
	table_name  text NOT NULL,
	strategy    text NOT NULL DEFAULT '',
	rows        bigint NOT NULL DEFAULT 0,
	created     int NOT NULL DEFAULT 0,
	updated     int NOT NULL DEFAULT 0,
	skipped     int NOT NULL DEFAULT 0,
	failed      int NOT NULL DEFAULT 0,
	bytes       bigint NOT NULL DEFAULT 0,
	duration_ms bigint NOT NULL DEFAULT 0,
	status      text NOT NULL,
	error       text NOT NULL DEFAULT '',
	started_by  text NOT NULL DEFAULT '',
	requested   bigint NOT NULL DEFAULT 0
);
ALTER TABLE fiberkit_sync_transfers ADD COLUMN IF NOT EXISTS requested bigint NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS fiberkit_sync_transfers_table ON fiberkit_sync_transfers (table_name, id);`

// v2: refusals during a lockout are counted on one row (repeats, last_at) instead
// of a row each; a session remembers when its receiver's connection ended, so the
// same receiver may rejoin within a grace window.
const v2 = `
ALTER TABLE fiberkit_sync_attempts ADD COLUMN repeats int NOT NULL DEFAULT 0;
ALTER TABLE fiberkit_sync_attempts ADD COLUMN last_at timestamptz;
ALTER TABLE fiberkit_sync_sessions ADD COLUMN receiver_left_at timestamptz;`

// v3: which key derivation sealed a remote's token — 1, the secret's SHA-256 (every
// token stored so far), or 2, HKDF-SHA256 (remote.Open re-encrypts the 1s once).
const v3 = `
ALTER TABLE fiberkit_sync_remotes ADD COLUMN key_version smallint NOT NULL DEFAULT 1;
ALTER TABLE fiberkit_sync_remotes ALTER COLUMN key_version SET DEFAULT 2;`

// v4: a pull is recorded before it moves rows — an entry per table with status
// running under the pull's id, its rows and last key applied updated as batches
// land — so a receiver that dies mid-pull keeps the record, which its restart marks
// interrupted. fresh_target says the local table was missing or empty when the pull
// began (its greatest key is then the last one applied).
const v4 = `
ALTER TABLE fiberkit_sync_transfers ADD COLUMN pull_id uuid;
ALTER TABLE fiberkit_sync_transfers ADD COLUMN last_key text[];
ALTER TABLE fiberkit_sync_transfers ADD COLUMN fresh_target boolean NOT NULL DEFAULT false;
CREATE INDEX fiberkit_sync_transfers_unfinished ON fiberkit_sync_transfers (pull_id) WHERE status IN ('running', 'interrupted');`

// v5 holds live sync's shapes and their logs (package shapelog).
const v5 = `
CREATE TABLE fiberkit_sync_shapes (
	handle      text PRIMARY KEY,
	hash        text NOT NULL,
	spec        jsonb NOT NULL,
	state       text NOT NULL DEFAULT 'creating',
	snap_xmin   bigint,
	snap_xmax   bigint,
	snap_xip    bigint[],
	snap_bytes  bigint NOT NULL DEFAULT 0,
	last_lsn    bigint NOT NULL DEFAULT 0,
	last_op     int NOT NULL DEFAULT 0,
	log_entries bigint NOT NULL DEFAULT 0,
	log_bytes   bigint NOT NULL DEFAULT 0,
	created_at  timestamptz NOT NULL DEFAULT now(),
	gone_at     timestamptz
);
CREATE UNIQUE INDEX fiberkit_sync_shapes_live ON fiberkit_sync_shapes (hash) WHERE state <> 'gone';
CREATE TABLE fiberkit_sync_shape_log (
	handle text NOT NULL,
	lsn    bigint NOT NULL,
	op     int NOT NULL,
	entry  text NOT NULL,
	PRIMARY KEY (handle, lsn, op)
);`

// v6: what a send masked (masks) and a follow's lag in the history; a receiving
// site's follows (the last sender transaction applied, committed with it) and a
// sending site's followers (the position each acknowledged).
const v6 = `
ALTER TABLE fiberkit_sync_transfers ADD COLUMN masks text[] NOT NULL DEFAULT '{}';
ALTER TABLE fiberkit_sync_transfers ADD COLUMN lag_bytes bigint NOT NULL DEFAULT 0;
ALTER TABLE fiberkit_sync_transfers ADD COLUMN lag_ms bigint NOT NULL DEFAULT 0;
CREATE TABLE fiberkit_sync_follows (
	id           text PRIMARY KEY,
	peer         text NOT NULL,
	tables       text[] NOT NULL,
	target_schema text NOT NULL DEFAULT 'public',
	strategy     text NOT NULL,
	state        text NOT NULL DEFAULT 'copying',
	error        text NOT NULL DEFAULT '',
	lsn          pg_lsn NOT NULL DEFAULT '0/0',
	commit_at    timestamptz,
	sender_lsn   pg_lsn NOT NULL DEFAULT '0/0',
	txns         bigint NOT NULL DEFAULT 0,
	changes      bigint NOT NULL DEFAULT 0,
	conflicts    bigint NOT NULL DEFAULT 0,
	history_id   bigint,
	updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE fiberkit_sync_followers (
	connection_id uuid PRIMARY KEY REFERENCES fiberkit_sync_connections(id) ON DELETE CASCADE,
	slot          text NOT NULL,
	tables        text[] NOT NULL,
	acked_lsn     pg_lsn NOT NULL DEFAULT '0/0',
	acked_at      timestamptz,
	history_id    bigint,
	started_at    timestamptz NOT NULL DEFAULT now()
);`

// v7: the masking key of a site without FIBERKIT_SECRET_KEY (package mask): one
// random 32-byte key, created once per database by the first send that masks.
const v7 = `
CREATE TABLE fiberkit_sync_mask_key (
	id         int PRIMARY KEY CHECK (id = 1),
	key        bytea NOT NULL CHECK (length(key) = 32),
	created_at timestamptz NOT NULL DEFAULT now()
);`

// v8: the key ranges of a table a receiving pull copied split (syncapi.RangeState
// each, with how far it got), so an interrupted split pull resumes every range
// from its own last key.
const v8 = `
ALTER TABLE fiberkit_sync_transfers ADD COLUMN ranges jsonb;`

// v9: a remote whose schedule is "follow" is followed continuously.
const v9 = `ALTER TABLE fiberkit_sync_remotes ADD COLUMN follow boolean NOT NULL DEFAULT false;`

// v10: a follower's lag as the sending replica streaming to it last saw it (what it
// sent and was not acknowledged yet), so the pages show none for a follower caught up.
const v10 = `
ALTER TABLE fiberkit_sync_followers ADD COLUMN lag_bytes bigint NOT NULL DEFAULT 0;
ALTER TABLE fiberkit_sync_followers ADD COLUMN lag_ms bigint NOT NULL DEFAULT 0;`

// list is Sync's schema versions in order: Steps[v] is version v. Never edit a
// version that has shipped: append one, as plain DDL.
func list() pgmigrate.List {
	return pgmigrate.List{Table: "fiberkit_sync_migrations", Steps: []string{1: v1, 2: v2, 3: v3, 4: v4, 5: v5, 6: v6, 7: v7, 8: v8, 9: v9, 10: v10}}
}

// Latest is the highest schema version this binary knows.
func Latest() int { return list().Latest() }

// Up brings the database's Sync tables to Latest: under the advisory lock
// fiberkit_sync_migrations, in one transaction, it applies each version above the
// highest one recorded and records it. A database already at Latest is left as it
// is; one above Latest is refused with a *TooNewError and left as it is.
func Up(ctx context.Context, pool *pgxpool.Pool) error { return list().Up(ctx, pool) }
