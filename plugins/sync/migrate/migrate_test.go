package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/migrate"
	"github.com/fiberkit/fiberkit/plugins/sync/remote"
	"github.com/fiberkit/fiberkit/plugins/sync/session"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// firstLayout is what the first releases' stores created (each its own CREATE TABLE
// IF NOT EXISTS), before any column was added to a shipped table.
const firstLayout = `
CREATE TABLE IF NOT EXISTS fiberkit_sync_sessions (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), code_hash bytea NOT NULL UNIQUE,
	direction text NOT NULL, owner text NOT NULL, status text NOT NULL DEFAULT 'pending', created_at timestamptz NOT NULL DEFAULT now(),
	lease_until timestamptz NOT NULL, used_at timestamptz, receiver_info jsonb, receiver_addr text, progress jsonb);
CREATE INDEX IF NOT EXISTS fiberkit_sync_sessions_owner ON fiberkit_sync_sessions (owner);
CREATE TABLE IF NOT EXISTS fiberkit_sync_attempts (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), address text NOT NULL,
	receiver_info jsonb, outcome text NOT NULL, failed boolean NOT NULL);
CREATE INDEX IF NOT EXISTS fiberkit_sync_attempts_addr ON fiberkit_sync_attempts (address, at);
CREATE TABLE IF NOT EXISTS fiberkit_sync_approvals (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	session_id uuid NOT NULL REFERENCES fiberkit_sync_sessions(id) ON DELETE CASCADE, receiver_info jsonb, address text,
	status text NOT NULL DEFAULT 'pending', decided_by text, created_at timestamptz NOT NULL DEFAULT now(), decided_at timestamptz);
CREATE TABLE IF NOT EXISTS fiberkit_sync_connections (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL,
	site_url text NOT NULL DEFAULT '', token_hash bytea NOT NULL UNIQUE, status text NOT NULL DEFAULT 'pending', status_by text NOT NULL DEFAULT '',
	status_at timestamptz NOT NULL DEFAULT now(), created_by text NOT NULL DEFAULT '', created_at timestamptz NOT NULL DEFAULT now(),
	limits jsonb NOT NULL DEFAULT '{}', downloads int NOT NULL DEFAULT 0, records bigint NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS fiberkit_sync_connection_rate (connection_id uuid NOT NULL REFERENCES fiberkit_sync_connections(id) ON DELETE CASCADE,
	minute timestamptz NOT NULL, requests int NOT NULL, PRIMARY KEY (connection_id, minute));
CREATE TABLE IF NOT EXISTS fiberkit_sync_remotes (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL, url text NOT NULL, token_enc bytea NOT NULL,
	tables text[] NOT NULL DEFAULT '{}', strategy text NOT NULL DEFAULT 'skip', interval_seconds int NOT NULL DEFAULT 0,
	next_run_at timestamptz, last_run_at timestamptz, last_status text NOT NULL DEFAULT '',
	created_by text NOT NULL DEFAULT '', created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS fiberkit_sync_transfers (
	id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), direction text NOT NULL, peer text NOT NULL,
	table_name text NOT NULL, strategy text NOT NULL DEFAULT '', rows bigint NOT NULL DEFAULT 0,
	created int NOT NULL DEFAULT 0, updated int NOT NULL DEFAULT 0, skipped int NOT NULL DEFAULT 0, failed int NOT NULL DEFAULT 0,
	bytes bigint NOT NULL DEFAULT 0, duration_ms bigint NOT NULL DEFAULT 0, status text NOT NULL, error text NOT NULL DEFAULT '',
	started_by text NOT NULL DEFAULT '');`

// laterColumns are the lines the stores of the last release before the migration
// list ran after firstLayout: firstLayout then laterColumns is that release's schema.
const laterColumns = `
ALTER TABLE fiberkit_sync_attempts ADD COLUMN IF NOT EXISTS session_id uuid;
ALTER TABLE fiberkit_sync_attempts ADD COLUMN IF NOT EXISTS rate_key text;
CREATE INDEX IF NOT EXISTS fiberkit_sync_attempts_rate_key ON fiberkit_sync_attempts (rate_key, at);
ALTER TABLE fiberkit_sync_remotes ADD COLUMN IF NOT EXISTS token_hash bytea;
CREATE INDEX IF NOT EXISTS fiberkit_sync_remotes_token_hash ON fiberkit_sync_remotes (token_hash);
ALTER TABLE fiberkit_sync_transfers ADD COLUMN IF NOT EXISTS requested bigint NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS fiberkit_sync_transfers_table ON fiberkit_sync_transfers (table_name, id);`

// syncTables are every table Sync's stores use.
var syncTables = []string{
	"fiberkit_sync_approvals", "fiberkit_sync_attempts", "fiberkit_sync_connection_rate", "fiberkit_sync_connections",
	"fiberkit_sync_followers", "fiberkit_sync_follows", "fiberkit_sync_mask_key",
	"fiberkit_sync_remotes", "fiberkit_sync_sessions", "fiberkit_sync_shape_log", "fiberkit_sync_shapes", "fiberkit_sync_transfers",
}

func up(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	if err := migrate.Up(context.Background(), pool); err != nil {
		t.Fatalf("Up: %v", err)
	}
}

func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// column runs sql and returns its one column.
func column[T any](t *testing.T, pool *pgxpool.Pool, sql string, args ...any) []T {
	t.Helper()
	rows, err := pool.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[T])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

func wantAllVersions(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	got := column[int](t, pool, `SELECT version FROM fiberkit_sync_migrations ORDER BY version`)
	var want []int
	for v := 1; v <= migrate.Latest(); v++ {
		want = append(want, v)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("versions %v, want %v", got, want)
	}
}

// layout describes Sync's tables as PostgreSQL sees them (columns in order with
// type, nullability and default; indexes; constraints), one line each, sorted.
func layout(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	return strings.Join(column[string](t, pool, `
SELECT format('column %s.%s #%s %s null=%s default=%s', table_name, column_name, ordinal_position, data_type, is_nullable, coalesce(column_default, '-'))
  FROM information_schema.columns WHERE table_schema = 'public' AND table_name LIKE 'fiberkit\_sync\_%' AND table_name <> 'fiberkit_sync_migrations'
UNION ALL
SELECT format('index %s', indexdef) FROM pg_indexes WHERE schemaname = 'public' AND tablename LIKE 'fiberkit\_sync\_%' AND tablename <> 'fiberkit_sync_migrations'
UNION ALL
SELECT format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid)) FROM pg_constraint
 WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text LIKE 'fiberkit\_sync\_%' AND conrelid::regclass::text <> 'fiberkit_sync_migrations'
ORDER BY 1`), "\n")
}

func TestUpCreatesEveryTableOnAFreshDatabase(t *testing.T) {
	pool := pgtest.NewPool(t)
	up(t, pool)
	wantAllVersions(t, pool)
	got := column[string](t, pool, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename COLLATE "C"`)
	want := append([]string{"fiberkit_sync_migrations"}, syncTables...)
	slices.Sort(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("tables %v, want %v", got, want)
	}
	// The fresh layout is the previous release's, column for column, plus what the
	// versions after 1 add.
	old := pgtest.NewPool(t)
	exec(t, old, firstLayout+laterColumns+`
ALTER TABLE fiberkit_sync_attempts ADD COLUMN repeats int NOT NULL DEFAULT 0;
ALTER TABLE fiberkit_sync_attempts ADD COLUMN last_at timestamptz;
ALTER TABLE fiberkit_sync_sessions ADD COLUMN receiver_left_at timestamptz;
ALTER TABLE fiberkit_sync_remotes ADD COLUMN key_version smallint NOT NULL DEFAULT 1;
ALTER TABLE fiberkit_sync_remotes ALTER COLUMN key_version SET DEFAULT 2;
ALTER TABLE fiberkit_sync_transfers ADD COLUMN pull_id uuid;
ALTER TABLE fiberkit_sync_transfers ADD COLUMN last_key text[];
ALTER TABLE fiberkit_sync_transfers ADD COLUMN fresh_target boolean NOT NULL DEFAULT false;
CREATE INDEX fiberkit_sync_transfers_unfinished ON fiberkit_sync_transfers (pull_id) WHERE status IN ('running', 'interrupted');
CREATE TABLE fiberkit_sync_shapes (handle text PRIMARY KEY, hash text NOT NULL, spec jsonb NOT NULL, state text NOT NULL DEFAULT 'creating',
	snap_xmin bigint, snap_xmax bigint, snap_xip bigint[], snap_bytes bigint NOT NULL DEFAULT 0, last_lsn bigint NOT NULL DEFAULT 0,
	last_op int NOT NULL DEFAULT 0, log_entries bigint NOT NULL DEFAULT 0, log_bytes bigint NOT NULL DEFAULT 0,
	created_at timestamptz NOT NULL DEFAULT now(), gone_at timestamptz);
CREATE UNIQUE INDEX fiberkit_sync_shapes_live ON fiberkit_sync_shapes (hash) WHERE state <> 'gone';
CREATE TABLE fiberkit_sync_shape_log (handle text NOT NULL, lsn bigint NOT NULL, op int NOT NULL, entry text NOT NULL, PRIMARY KEY (handle, lsn, op));
CREATE TABLE fiberkit_sync_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
INSERT INTO fiberkit_sync_migrations (version) SELECT generate_series(1, 5);`)
	// That was release 5 (live sync); the versions since upgrade it.
	up(t, old)
	wantAllVersions(t, old)
	if f, o := layout(t, pool), layout(t, old); f != o {
		t.Fatalf("fresh layout differs from the previous release's:\nfresh:\n%s\nprevious:\n%s", f, o)
	}
}

func TestUpTwiceChangesNothing(t *testing.T) {
	pool := pgtest.NewPool(t)
	up(t, pool)
	before := layout(t, pool)
	exec(t, pool, `INSERT INTO fiberkit_sync_transfers (direction, peer, table_name, status) VALUES ('pull', 'a', 't', 'ok')`)
	const appliedSQL = `SELECT version || ' at ' || applied_at FROM fiberkit_sync_migrations ORDER BY version`
	applied := column[string](t, pool, appliedSQL)
	up(t, pool)
	wantAllVersions(t, pool)
	if again := column[string](t, pool, appliedSQL); !slices.Equal(again, applied) {
		t.Fatalf("a second Up re-applied a version: %s, then %s", applied, again)
	}
	if after := layout(t, pool); after != before {
		t.Fatalf("a second Up changed the layout:\n%s\nthen:\n%s", before, after)
	}
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM fiberkit_sync_transfers`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("transfers after a second Up: %d, %v", n, err)
	}
}

// A database laid out by an earlier release (its tables, no versions table) is
// adopted as version 1 with its rows, and ends up with the fresh layout: both from
// the last release before the list and from one before the columns added later.
func TestUpAdoptsAPreviousReleasesTables(t *testing.T) {
	fresh := pgtest.NewPool(t)
	up(t, fresh)
	want := layout(t, fresh)
	for name, sql := range map[string]string{"last release": firstLayout + laterColumns, "before later columns": firstLayout} {
		t.Run(name, func(t *testing.T) {
			pool := pgtest.NewPool(t)
			exec(t, pool, sql)
			exec(t, pool, `INSERT INTO fiberkit_sync_transfers (direction, peer, table_name, status) VALUES ('pull', 'a', 't', 'ok')`)
			exec(t, pool, `INSERT INTO fiberkit_sync_remotes (name, url, token_enc) VALUES ('prod', 'https://prod.example', '\x00')`)
			up(t, pool)
			wantAllVersions(t, pool)
			if got := layout(t, pool); got != want {
				t.Fatalf("adopted layout:\n%s\nwant:\n%s", got, want)
			}
			var transfers, remotes int
			if err := pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM fiberkit_sync_transfers), (SELECT count(*) FROM fiberkit_sync_remotes)`).Scan(&transfers, &remotes); err != nil {
				t.Fatal(err)
			}
			if transfers != 1 || remotes != 1 {
				t.Fatalf("rows after adoption: %d transfers, %d remotes; want 1 and 1", transfers, remotes)
			}
		})
	}
}

// A database a newer release migrated is refused with the typed error, and left
// as it is.
func TestUpRefusesANewerDatabase(t *testing.T) {
	pool := pgtest.NewPool(t)
	exec(t, pool, `CREATE TABLE fiberkit_sync_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`)
	exec(t, pool, `INSERT INTO fiberkit_sync_migrations (version) SELECT generate_series(1, $1::int)`, migrate.Latest()+1)
	err := migrate.Up(context.Background(), pool)
	var tooNew *migrate.TooNewError
	if !errors.As(err, &tooNew) || !errors.Is(err, migrate.ErrTooNew) {
		t.Fatalf("Up on a newer database: %v, want a *TooNewError", err)
	}
	if tooNew.Database != migrate.Latest()+1 || tooNew.Known != migrate.Latest() {
		t.Fatalf("TooNewError %+v, want database %d, known %d", tooNew, migrate.Latest()+1, migrate.Latest())
	}
	var tables int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_tables WHERE tablename = ANY($1)`, syncTables).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Fatalf("a refused Up created %d tables", tables)
	}
	// The stores refuse it too.
	if _, err := history.Open(context.Background(), pool); !errors.Is(err, migrate.ErrTooNew) {
		t.Fatalf("history.Open on a newer database: %v", err)
	}
}

// Several plugin processes (a pool each) starting at once on a fresh database all
// succeed, and every version is applied once.
func TestUpInParallel(t *testing.T) {
	url := pgtest.NewDatabase(t)
	const processes = 8
	errs := make(chan error, processes)
	var wg sync.WaitGroup
	for range processes {
		wg.Go(func() {
			pool, err := pgxpool.New(context.Background(), url)
			if err != nil {
				errs <- err
				return
			}
			defer pool.Close()
			errs <- migrate.Up(context.Background(), pool)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("parallel Up: %v", err)
		}
	}
	check, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	wantAllVersions(t, check)
}

// The four stores opened at once by several processes on a fresh database all
// open.
func TestStoreOpensInParallel(t *testing.T) {
	url := pgtest.NewDatabase(t)
	const processes = 4
	opens := []func(context.Context, *pgxpool.Pool) error{
		func(ctx context.Context, p *pgxpool.Pool) error {
			_, err := session.Open(ctx, p, session.Limits{})
			return err
		},
		func(ctx context.Context, p *pgxpool.Pool) error { _, err := connection.Open(ctx, p); return err },
		func(ctx context.Context, p *pgxpool.Pool) error { _, err := remote.Open(ctx, p); return err },
		func(ctx context.Context, p *pgxpool.Pool) error { _, err := history.Open(ctx, p); return err },
	}
	errs := make(chan error, processes*len(opens))
	var wg sync.WaitGroup
	for range processes {
		pool, err := pgxpool.New(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		for _, open := range opens {
			wg.Go(func() { errs <- open(context.Background(), pool) })
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("parallel Open: %v", err)
		}
	}
}
