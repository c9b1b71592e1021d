package server

import (
	"context"
	"slices"
	"testing"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/migrate"
)

// The sweep drops the follow slots nobody may or will use — a revoked
// connection's, one whose follow permission was removed, an orphan without a
// follower, one idle past the limit — and keeps the others (a suspended
// connection's, an active follower's, an idle one when idle slots are kept).
func TestDropStaleFollowers(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	if err := migrate.Up(ctx, pool); err != nil {
		t.Fatal(err)
	}
	type conn struct {
		status, limits string
		hoursAgo       int
	}
	slots := map[string]conn{
		"fiberkit_follow_revoked":   {"revoked", `{"follow": true}`, 0},
		"fiberkit_follow_nofollow":  {"active", `{}`, 0},
		"fiberkit_follow_suspended": {"suspended", `{"follow": true}`, 0},
		"fiberkit_follow_fresh":     {"active", `{"follow": true}`, 1},
		"fiberkit_follow_idle":      {"active", `{"follow": true}`, 100},
	}
	t.Cleanup(func() {
		testsupport.Exec(t, pool, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()`)
	})
	for slot, c := range slots {
		testsupport.Exec(t, pool, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
		var id string
		if err := pool.QueryRow(ctx, `INSERT INTO fiberkit_sync_connections (name, token_hash, status, limits) VALUES ($1, sha256(convert_to($1, 'UTF8')), $2, $3::jsonb)
			RETURNING id::text`, slot, c.status, c.limits).Scan(&id); err != nil {
			t.Fatal(err)
		}
		testsupport.Exec(t, pool, `INSERT INTO fiberkit_sync_followers (connection_id, slot, tables, started_at)
			VALUES ($1::uuid, $2, '{items}', now() - make_interval(hours => $3))`, id, slot, c.hoursAgo)
	}
	testsupport.Exec(t, pool, `SELECT pg_create_logical_replication_slot('fiberkit_follow_orphan', 'pgoutput')`)
	left := func() []string {
		var out []string
		rows, err := pool.Query(ctx, `SELECT slot_name FROM pg_replication_slots WHERE database = current_database() ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
	// Idle slots kept (0): only those no connection may use go.
	if err := dropStaleFollowers(ctx, pool, 0); err != nil {
		t.Fatal(err)
	}
	if got, want := left(), []string{"fiberkit_follow_fresh", "fiberkit_follow_idle", "fiberkit_follow_suspended"}; !slices.Equal(got, want) {
		t.Fatalf("slots left %v, want %v", got, want)
	}
	// Idle for more than 72 hours: that one goes too.
	if err := dropStaleFollowers(ctx, pool, 72); err != nil {
		t.Fatal(err)
	}
	if got, want := left(), []string{"fiberkit_follow_fresh", "fiberkit_follow_suspended"}; !slices.Equal(got, want) {
		t.Fatalf("slots left %v, want %v", got, want)
	}
	if n := testsupport.Count(t, pool, `SELECT count(*) FROM fiberkit_sync_followers`); n != 2 {
		t.Fatalf("%d followers recorded, want the 2 whose slots stay", n)
	}
}
