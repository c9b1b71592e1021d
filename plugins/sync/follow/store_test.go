package follow_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/follow"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// The store's life of a follow: started copying at 0/0, following from the
// snapshot, positions and the sender's WAL end never moving backwards, states,
// the history entry, a restart resetting it all, not found, delete.
func TestStore(t *testing.T) {
	pool := pgtest.NewPool(t)
	store := open(t, pool)
	ctx := context.Background()
	f := follow.Follow{ID: "remote-1", Peer: "https://a.example", Tables: []string{"orders", "app.items"}, Strategy: importer.Merge}
	if err := store.Start(ctx, f); err != nil {
		t.Fatal(err)
	}
	st, err := store.Get(ctx, "remote-1")
	if err != nil {
		t.Fatal(err)
	}
	want := syncapi.FollowStatus{ID: "remote-1", Peer: "https://a.example", Tables: []string{"orders", "app.items"},
		State: syncapi.FollowCopying, Position: "0/0", Strategy: "merge", UpdatedAt: st.UpdatedAt}
	if !reflect.DeepEqual(st, want) || st.UpdatedAt.IsZero() {
		t.Fatalf("started: %+v", st)
	}
	got, err := store.Follow(ctx, "remote-1")
	if err != nil {
		t.Fatal(err)
	}
	f.Schema = "public"
	if !reflect.DeepEqual(got, f) {
		t.Fatalf("follow %+v, want %+v", got, f)
	}
	if p, err := store.Position(ctx, "remote-1"); err != nil || p != 0 {
		t.Fatalf("position %x, %v", p, err)
	}

	// The copy done at 1/A0: following, no lag.
	if err := store.Following(ctx, "remote-1", 0x1_000000A0); err != nil {
		t.Fatal(err)
	}
	st, _ = store.Get(ctx, "remote-1")
	if st.State != syncapi.FollowFollowing || st.Position != "1/A0" || st.SenderPosition != "1/A0" || st.LagBytes != 0 || st.LagSeconds != 0 {
		t.Fatalf("following: %+v", st)
	}
	// Heard: the sender is 0x60 bytes further on; an older keepalive changes nothing.
	for _, p := range []uint64{0x1_00000100, 0x1_000000B0} {
		if err := store.Heard(ctx, "remote-1", p); err != nil {
			t.Fatal(err)
		}
	}
	st, _ = store.Get(ctx, "remote-1")
	if st.SenderPosition != "1/100" || st.LagBytes != 0x60 || st.LagSeconds != 0 {
		t.Fatalf("heard: %+v", st)
	}
	// Following never moves the position backwards.
	if err := store.Following(ctx, "remote-1", 0x10); err != nil {
		t.Fatal(err)
	}
	if p, _ := store.Position(ctx, "remote-1"); p != 0x1_000000A0 {
		t.Fatalf("position moved back to %x", p)
	}

	// States and errors.
	if err := store.SetState(ctx, "remote-1", syncapi.FollowFailed, "sender gone"); err != nil {
		t.Fatal(err)
	}
	st, _ = store.Get(ctx, "remote-1")
	if st.State != syncapi.FollowFailed || st.Error != "sender gone" {
		t.Fatalf("failed: %+v", st)
	}
	if err := store.SetState(ctx, "remote-1", "dancing", ""); !errors.Is(err, follow.ErrBadState) {
		t.Fatalf("bad state: %v", err)
	}
	if err := store.Following(ctx, "remote-1", 0x1_000000A0); err != nil {
		t.Fatal(err)
	}
	if st, _ = store.Get(ctx, "remote-1"); st.State != syncapi.FollowFollowing || st.Error != "" {
		t.Fatalf("following again: %+v", st)
	}

	// The history entry.
	if _, ok, err := store.HistoryID(ctx, "remote-1"); err != nil || ok {
		t.Fatalf("history entry before one is set: %v %v", ok, err)
	}
	if err := store.SetHistoryID(ctx, "remote-1", 42); err != nil {
		t.Fatal(err)
	}
	if h, ok, err := store.HistoryID(ctx, "remote-1"); err != nil || !ok || h != 42 {
		t.Fatalf("history entry %d %v %v", h, ok, err)
	}

	// A second follow; List in id order.
	if err := store.Start(ctx, follow.Follow{ID: "a-first", Peer: "p", Tables: []string{"t"}, Schema: "mirror"}); err != nil {
		t.Fatal(err)
	}
	list, err := store.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "a-first" || list[0].Strategy != "skip" || list[1].ID != "remote-1" {
		t.Fatalf("list %+v", list)
	}
	if g, _ := store.Follow(ctx, "a-first"); g.Schema != "mirror" || g.Strategy != importer.Skip {
		t.Fatalf("second follow %+v", g)
	}

	// Starting again resets everything.
	f.Strategy = importer.Overwrite
	f.Tables = []string{"orders"}
	if err := store.Start(ctx, f); err != nil {
		t.Fatal(err)
	}
	st, _ = store.Get(ctx, "remote-1")
	want = syncapi.FollowStatus{ID: "remote-1", Peer: "https://a.example", Tables: []string{"orders"},
		State: syncapi.FollowCopying, Position: "0/0", Strategy: "overwrite", UpdatedAt: st.UpdatedAt}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("restarted: %+v", st)
	}
	if _, ok, _ := store.HistoryID(ctx, "remote-1"); ok {
		t.Fatal("history entry kept over a restart")
	}

	// Refused and not found.
	for _, bad := range []follow.Follow{
		{Peer: "p", Tables: []string{"t"}},
		{ID: "x", Peer: "p"},
		{ID: "x", Peer: "p", Tables: []string{"t"}, Strategy: importer.Append},
		{ID: "x", Peer: "p", Tables: []string{"t"}, Strategy: "bogus"},
	} {
		if err := store.Start(ctx, bad); err == nil {
			t.Fatalf("started %+v", bad)
		}
	}
	if err := store.Start(ctx, follow.Follow{ID: "x", Peer: "p", Tables: []string{"t"}, Strategy: importer.Append}); !errors.Is(err, follow.ErrAppend) {
		t.Fatalf("append: %v", err)
	}
	for name, err := range map[string]error{
		"get":       func() error { _, err := store.Get(ctx, "nope"); return err }(),
		"follow":    func() error { _, err := store.Follow(ctx, "nope"); return err }(),
		"position":  func() error { _, err := store.Position(ctx, "nope"); return err }(),
		"following": store.Following(ctx, "nope", 1),
		"heard":     store.Heard(ctx, "nope", 1),
		"state":     store.SetState(ctx, "nope", syncapi.FollowStopped, ""),
		"history":   store.SetHistoryID(ctx, "nope", 1),
		"historyID": func() error { _, _, err := store.HistoryID(ctx, "nope"); return err }(),
		"delete":    store.Delete(ctx, "nope"),
	} {
		if !errors.Is(err, follow.ErrNotFound) {
			t.Fatalf("%s of an unknown follow: %v", name, err)
		}
	}
	if err := store.Delete(ctx, "a-first"); err != nil {
		t.Fatal(err)
	}
	if list, _ := store.List(ctx); len(list) != 1 {
		t.Fatalf("after delete: %+v", list)
	}
}

// Applied transactions move the counters and the lag: bytes to the sender's WAL end
// as the transaction or a keepalive told it, seconds since the last applied commit
// while behind, 0 once caught up.
func TestStoreLag(t *testing.T) {
	pool := pgtest.NewPool(t)
	store := open(t, pool)
	ctx := context.Background()
	testsupport.Exec(t, pool, `CREATE TABLE lag (id int PRIMARY KEY)`)
	a := begin(t, pool, store, "lag", importer.Skip, "lag")
	tx := txn(0x1000, ins("lag", vals{"id": v("1")}), ins("lag", vals{"id": v("2")}))
	tx.CommitTime = time.Now().Add(-10 * time.Second).UTC().Format(time.RFC3339Nano)
	tx.SenderPosition = "0/1400"
	apply(t, a, tx)
	st, err := store.Get(ctx, "lag")
	if err != nil {
		t.Fatal(err)
	}
	if st.Position != "0/1000" || st.SenderPosition != "0/1400" || st.LagBytes != 0x400 || st.LagSeconds < 9.5 || st.LagSeconds > 60 ||
		st.Transactions != 1 || st.Changes != 2 || st.Conflicts != 0 {
		t.Fatalf("behind: %+v", st)
	}
	// Caught up: the next transaction reaches the sender's end (its insert finds
	// the row there already, equal: no conflict).
	tx = txn(0x1400, ins("lag", vals{"id": v("1")}))
	tx.SenderPosition = ""
	apply(t, a, tx)
	st, _ = store.Get(ctx, "lag")
	if st.Position != "0/1400" || st.SenderPosition != "0/1400" || st.LagBytes != 0 || st.LagSeconds != 0 ||
		st.Transactions != 2 || st.Changes != 3 || st.Conflicts != 0 {
		t.Fatalf("caught up: %+v", st)
	}
	// A keepalive further on: behind again, by bytes and by time since that commit.
	if err := store.Heard(ctx, "lag", 0x1800); err != nil {
		t.Fatal(err)
	}
	if st, _ = store.Get(ctx, "lag"); st.LagBytes != 0x400 || st.SenderPosition != wire.FormatLSN(0x1800) {
		t.Fatalf("heard: %+v", st)
	}
	// A keepalive saying the sender has nothing more for it: no lag, however far
	// its WAL went for other tables; the position stays.
	if err := store.CaughtUp(ctx, "lag"); err != nil {
		t.Fatal(err)
	}
	if st, _ = store.Get(ctx, "lag"); st.LagBytes != 0 || st.LagSeconds != 0 || st.Position != "0/1400" {
		t.Fatalf("caught up by keepalive: %+v", st)
	}
	if err := store.CaughtUp(ctx, "nobody"); !errors.Is(err, follow.ErrNotFound) {
		t.Fatalf("caught up, unknown follow: %v", err)
	}
}
