package settings

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/audit"
	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/host/manifest"
	"github.com/fiberkit/fiberkit/sdk/secret"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func schema(t *testing.T) *manifest.Manifest {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mod"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse([]byte(`id: sync
version: 0.1.0
executable: ./mod
settings:
  - key: incoming_mode
    type: enum
    default: require_approval
    options: [auto_accept, require_approval, require_password, deny_all]
  - key: incoming_password
    type: secret
  - key: limit
    type: number
    default: "5"
`), "module.yaml", dir, "0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func openStore(t *testing.T, url string) *Store {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := Open(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	s.Register(schema(t))
	return s
}

func value(t *testing.T, s *Store, key string) Value {
	t.Helper()
	snap, err := s.Snapshot(context.Background(), "sync")
	if err != nil {
		t.Fatal(err)
	}
	v, ok := snap.Get(key)
	if !ok {
		t.Fatalf("no %s", key)
	}
	return v
}

func TestDefaultsSetAndValidation(t *testing.T) {
	s := openStore(t, pgtest.NewDatabase(t))
	ctx := context.Background()
	if v := value(t, s, "incoming_mode"); v.Value != "require_approval" || v.Locked {
		t.Fatalf("default: %+v", v)
	}
	if v := value(t, s, "enabled"); v.Value != "false" {
		t.Fatalf("enabled default: %+v", v)
	}
	snap0, _ := s.Snapshot(ctx, "sync")
	if err := s.Set(ctx, "sync", map[string]string{"incoming_mode": "deny_all", "enabled": "true"}, "alice"); err != nil {
		t.Fatal(err)
	}
	snap1, _ := s.Snapshot(ctx, "sync")
	if !snap1.Enabled() || snap1.Revision <= snap0.Revision {
		t.Fatalf("after set: enabled %v revision %d → %d", snap1.Enabled(), snap0.Revision, snap1.Revision)
	}
	err := s.Set(ctx, "sync", map[string]string{"incoming_mode": "sometimes", "limit": "many", "nope": "x", "enabled": "false"}, "alice")
	var verr *ValidationError
	if !errors.As(err, &verr) || len(verr.Fields) != 3 || verr.Fields["limit"] == "" || verr.Fields["incoming_mode"] == "" || verr.Fields["nope"] == "" {
		t.Fatalf("want three field errors, got %v", err)
	}
	// All or nothing: the valid change in the refused batch was not saved.
	if v := value(t, s, "enabled"); v.Value != "true" {
		t.Fatalf("a refused Set changed enabled to %q", v.Value)
	}
	if _, err := s.Snapshot(ctx, "other"); !errors.Is(err, ErrUnknownModule) {
		t.Fatalf("unknown module: %v", err)
	}
}

func TestSecretsAreHashedAndNeverStoredPlain(t *testing.T) {
	url := pgtest.NewDatabase(t)
	s := openStore(t, url)
	ctx := context.Background()
	const plain = "hunter2-very-secret"
	if err := s.Set(ctx, "sync", map[string]string{"incoming_password": plain}, "alice"); err != nil {
		t.Fatal(err)
	}
	v := value(t, s, "incoming_password")
	if !v.IsSet || v.Value == plain || !secret.Verify(v.Value, plain) {
		t.Fatalf("secret value %+v", v)
	}
	assertNowhere(t, s.pool, plain)
	entries, err := audit.New(s.pool).Recent(ctx, "sync", 10)
	if err != nil || len(entries) != 1 {
		t.Fatalf("audit entries %v %v", entries, err)
	}
	if e := entries[0]; e.Actor != "alice" || e.Action != "settings.set" || !reflect.DeepEqual(e.Detail, map[string]any{"incoming_password": "changed"}) {
		t.Fatalf("audit entry for a secret: %+v", e)
	}
	// An empty secret clears it (a module's SetSettings, the SDK's set_password("")),
	// audited as cleared.
	if err := s.Set(ctx, "sync", map[string]string{"incoming_password": ""}, "alice"); err != nil {
		t.Fatal(err)
	}
	if v := value(t, s, "incoming_password"); v.IsSet {
		t.Fatal("an empty secret left the secret set")
	}
	if entries, _ := audit.New(s.pool).Recent(ctx, "sync", 1); len(entries) != 1 || !reflect.DeepEqual(entries[0].Detail, map[string]any{"incoming_password": "cleared"}) {
		t.Fatalf("audit entry for a cleared secret: %+v", entries)
	}
	if err := s.Set(ctx, "sync", map[string]string{"incoming_password": plain}, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := s.ClearSecret(ctx, "sync", "incoming_password", "alice"); err != nil {
		t.Fatal(err)
	}
	if v := value(t, s, "incoming_password"); v.IsSet {
		t.Fatal("cleared secret still set")
	}
	if err := s.ClearSecret(ctx, "sync", "limit", "alice"); err == nil {
		t.Fatal("ClearSecret cleared a number")
	}
}

// assertNowhere fails if plain occurs in any row of any table of the database.
func assertNowhere(t *testing.T, pool *pgxpool.Pool, plain string) {
	t.Helper()
	ctx := context.Background()
	rows, err := pool.Query(ctx, `SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables
		WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) < 4 {
		t.Fatalf("only %d tables to scan: %v", len(tables), tables)
	}
	for _, tbl := range tables {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+tbl+` t WHERE strpos(t::text, $1) > 0`, plain).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			t.Fatalf("%s holds the plain secret in %d rows", tbl, n)
		}
	}
}

func TestFileOverlayLocksAndExpandsEnv(t *testing.T) {
	s := openStore(t, pgtest.NewDatabase(t))
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "fiberkit.yaml")
	t.Setenv("SYNC_PW", "from-env-pw")
	t.Setenv("SYNC_MODE", "require_password")
	body := "modules:\n  sync:\n    enabled: true\n    settings:\n      incoming_mode: ${SYNC_MODE}\n      incoming_password: ${SYNC_PW}\n      limit: ${SYNC_LIMIT:-7}\n"
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if changed := s.ApplyFile(f); len(changed) != 1 || changed[0] != "sync" {
		t.Fatalf("changed = %v", changed)
	}
	if v := value(t, s, "incoming_mode"); v.Value != "require_password" || !v.Locked {
		t.Fatalf("mode %+v", v)
	}
	if v := value(t, s, "limit"); v.Value != "7" {
		t.Fatalf("limit default from ${SYNC_LIMIT:-7}: %+v", v)
	}
	pw := value(t, s, "incoming_password")
	if !pw.Locked || !secret.Verify(pw.Value, "from-env-pw") {
		t.Fatalf("file secret %+v", pw)
	}
	if v := value(t, s, "enabled"); v.Value != "true" || !v.Locked {
		t.Fatalf("enabled from the file: %+v", v)
	}
	if v := value(t, s, "limit"); v.Locked != true {
		t.Fatalf("limit from the file not locked: %+v", v)
	}
	assertNowhere(t, s.pool, "from-env-pw")
	err = s.Set(ctx, "sync", map[string]string{"incoming_mode": "auto_accept", "limit": "3"}, "alice")
	var verr *ValidationError
	if !errors.Is(err, ErrLocked) || !errors.As(err, &verr) || len(verr.Locked) != 2 ||
		err.Error() != "settings of sync not saved: incoming_mode: set by the config file; change it there; limit: set by the config file; change it there" {
		t.Fatalf("locked set: %v", err)
	}
	if err := s.ClearSecret(ctx, "sync", "incoming_password", "alice"); !errors.Is(err, ErrLocked) {
		t.Fatalf("clearing a file-set secret: %v", err)
	}
	if err := s.Set(ctx, "sync", map[string]string{"incoming_password": ""}, "alice"); !errors.Is(err, ErrLocked) {
		t.Fatalf("clearing a file-set secret with an empty value: %v", err)
	}
	if v := value(t, s, "incoming_mode"); v.Value != "require_password" {
		t.Fatalf("a refused Set changed a locked value to %q", v.Value)
	}
	// Re-applying the same file changes nothing and keeps the secret's hash.
	f2, _ := LoadFile(path)
	if changed := s.ApplyFile(f2); len(changed) != 0 {
		t.Fatalf("unchanged file reported changes: %v", changed)
	}
	if v := value(t, s, "incoming_password"); v.Value != pw.Value {
		t.Fatal("re-applying the file re-hashed an unchanged secret")
	}
	// A file naming an unknown setting or a bad value is refused as a whole.
	bad := &File{Path: "x.yaml", Modules: map[string]FileModule{"sync": {Settings: map[string]string{"limit": "lots", "colour": "blue"}}}}
	if err := s.CheckFile(bad); err == nil || !strings.Contains(err.Error(), "colour") || !strings.Contains(err.Error(), "lots") {
		t.Fatalf("bad file: %v", err)
	}
	// An unset variable without default is an error naming it.
	if err := os.WriteFile(path, []byte("modules:\n  sync:\n    settings:\n      limit: ${NOT_SET_ANYWHERE}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(path); err == nil || !strings.Contains(err.Error(), "NOT_SET_ANYWHERE") {
		t.Fatalf("unset variable: %v", err)
	}
}

func TestEnvExpansion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fiberkit.yaml")
	t.Setenv("FK_EMPTY", "")
	t.Setenv("FK_PW", "p@ss: [not yaml")
	t.Setenv("FK_MOD", "sync")
	body := `modules:
  ${FK_MOD}:
    settings:
      a: ${FK_EMPTY}
      b: ${FK_EMPTY:-fallback}
      c: $FK_PW
      d: pri$$e
      e: ${FK_UNSET_X:-}
`
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": "", "b": "fallback", "c": "p@ss: [not yaml", "d": "pri$e", "e": ""}
	// Keys are not expanded.
	if got := f.Modules["${FK_MOD}"].Settings; !reflect.DeepEqual(got, want) {
		t.Fatalf("expanded %v, want %v (modules %v)", got, want, f.ModuleIDs())
	}
	if err := os.WriteFile(path, []byte("modules:\n  sync:\n    settings:\n      a: ok\n      b: [unclosed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(path); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), path+": line ") {
		t.Fatalf("syntax error should name file and line: %v", err)
	}
	if err := os.WriteFile(path, []byte("modules:\n  sync:\n    settings:\n      a: [1, 2]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(path); err == nil || !strings.Contains(err.Error(), path+": line 4:") {
		t.Fatalf("type error should name file and line: %v", err)
	}
}

func TestApplyFileAnnouncesAndBumpsTheRevision(t *testing.T) {
	s := openStore(t, pgtest.NewDatabase(t))
	ctx := context.Background()
	seen := make(chan string, 10)
	defer s.Subscribe(func(m string) { seen <- m })()
	before, _ := s.Snapshot(ctx, "sync")
	hash, err := secret.Hash("pre-hashed")
	if err != nil {
		t.Fatal(err)
	}
	f := &File{Path: "f.yaml", Modules: map[string]FileModule{"sync": {Settings: map[string]string{"limit": "8", "incoming_password": hash}}}}
	if changed := s.ApplyFile(f); !reflect.DeepEqual(changed, []string{"sync"}) {
		t.Fatalf("changed %v", changed)
	}
	if m := <-seen; m != "sync" {
		t.Fatalf("subscriber heard %q", m)
	}
	after, _ := s.Snapshot(ctx, "sync")
	if after.Revision <= before.Revision {
		t.Fatalf("revision %d → %d", before.Revision, after.Revision)
	}
	if pw, _ := after.Get("incoming_password"); pw.Value != hash {
		t.Fatalf("a hash in the file was re-hashed: %q", pw.Value)
	}
	// Removing the file's values unlocks them and falls back to the database/defaults.
	if changed := s.ApplyFile(&File{Path: "f.yaml"}); !reflect.DeepEqual(changed, []string{"sync"}) {
		t.Fatalf("changed %v", changed)
	}
	if v := value(t, s, "limit"); v.Value != "5" || v.Locked {
		t.Fatalf("after the file dropped limit: %+v", v)
	}
	final, _ := s.Snapshot(ctx, "sync")
	if final.Revision <= after.Revision {
		t.Fatalf("revision %d → %d", after.Revision, final.Revision)
	}
	// An invalid file changes nothing.
	if changed := s.ApplyFile(&File{Modules: map[string]FileModule{"nope": {}}}); changed != nil {
		t.Fatalf("invalid file applied: %v", changed)
	}
}

func TestOwnChangesAreAnnouncedOnce(t *testing.T) {
	s := openStore(t, pgtest.NewDatabase(t))
	var mu sync.Mutex
	var heard []string
	defer s.Subscribe(func(m string) { mu.Lock(); heard = append(heard, m); mu.Unlock() })()
	if err := s.Set(context.Background(), "sync", map[string]string{"limit": "6"}, "bob"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the store's own NOTIFY comes back meanwhile; it must be skipped
	mu.Lock()
	defer mu.Unlock()
	if !reflect.DeepEqual(heard, []string{"sync"}) {
		t.Fatalf("subscriber heard %v, want [sync] once", heard)
	}
}

func TestWatchFileSeesRewritesRenamesAndSIGHUP(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fiberkit.yaml")
	write := func(body string) {
		tmp := filepath.Join(dir, "tmp.yaml")
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("modules: {}\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan string, 10)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		WatchFile(ctx, path, func(f *File, err error) {
			if err == nil {
				got <- strings.Join(f.ModuleIDs(), ",")
			}
		})
	}()
	time.Sleep(200 * time.Millisecond)
	expect := func(want string) {
		t.Helper()
		select {
		case ids := <-got:
			if ids != want {
				t.Fatalf("reload saw %q, want %q", ids, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no reload (want %q)", want)
		}
	}
	write("modules:\n  a: {}\n") // rename-save
	expect("a")
	if err := os.WriteFile(path, []byte("modules:\n  b: {}\n"), 0o644); err != nil { // in-place rewrite
		t.Fatal(err)
	}
	expect("b")
	// Rewriting the same bytes (touch, save without change) reports nothing.
	if err := os.WriteFile(path, []byte("modules:\n  b: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case ids := <-got:
		t.Fatalf("unchanged rewrite reported %q", ids)
	case <-time.After(500 * time.Millisecond):
	}
	// So this reload can only come from the signal.
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	expect("b")
	cancel()
	wg.Wait()
}

func TestTwoReplicasSeeEachOthersChanges(t *testing.T) {
	url := pgtest.NewDatabase(t)
	// Open both at once: migrations must run once, without errors.
	var a, b *Store
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a = openStoreNoFatal(t, url) }()
	go func() { defer wg.Done(); b = openStoreNoFatal(t, url) }()
	wg.Wait()
	if a == nil || b == nil {
		t.Fatal("concurrent Open failed")
	}
	var n int
	if err := a.pool.QueryRow(context.Background(), `SELECT count(*) FROM fiberkit_schema_migrations`).Scan(&n); err != nil || n != len(migrations)-1 {
		t.Fatalf("migrations recorded %d times (%v)", n, err)
	}
	seen := make(chan string, 10)
	cancel := b.Subscribe(func(m string) { seen <- m })
	defer cancel()
	if err := a.Set(context.Background(), "sync", map[string]string{"limit": "9"}, "alice"); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-seen:
		if m != "sync" {
			t.Fatalf("b heard about %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("replica b never heard of a's change")
	}
	if v := value(t, b, "limit"); v.Value != "9" {
		t.Fatalf("b reads limit %q", v.Value)
	}

	// Kill b's listener connection: b reconnects, tells its subscribers to re-read
	// (notifications may have been lost), and hears a's changes again.
	var killed int
	if err := a.pool.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database() AND pid <> pg_backend_pid()`, listenerName).Scan(&killed); err != nil || killed != 2 {
		t.Fatalf("terminated %d listeners (%v), want 2 (a's and b's)", killed, err)
	}
	select {
	case m := <-seen:
		if m != "sync" {
			t.Fatalf("b re-announced %q", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b did not reconnect")
	}
	if err := a.Set(context.Background(), "sync", map[string]string{"limit": "10"}, "alice"); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-seen:
		if m != "sync" {
			t.Fatalf("b heard about %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b missed a's change after reconnecting")
	}
}

func openStoreNoFatal(t *testing.T, url string) *Store {
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Error(err)
		return nil
	}
	t.Cleanup(pool.Close)
	s, err := Open(context.Background(), pool)
	if err != nil {
		t.Error(err)
		return nil
	}
	t.Cleanup(s.Close)
	s.Register(schema(t))
	return s
}

func TestWatchFileFollowsASymlinkSwap(t *testing.T) {
	// The layout Kubernetes uses for a mounted ConfigMap: the file is a symlink into a
	// versioned directory, and an update atomically replaces the "..data" link.
	dir := t.TempDir()
	for i, body := range []string{"modules:\n  a: {}\n", "modules:\n  b: {}\n"} {
		v := filepath.Join(dir, "v"+string(rune('1'+i)))
		if err := os.Mkdir(v, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(v, "fiberkit.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "fiberkit.yaml")
	if err := os.Symlink("..data/fiberkit.yaml", path); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		WatchFile(ctx, path, func(f *File, err error) {
			if err == nil {
				got <- strings.Join(f.ModuleIDs(), ",")
			}
		})
	}()
	defer func() { cancel(); <-done }()
	time.Sleep(200 * time.Millisecond)
	if err := os.Symlink("v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	select {
	case ids := <-got:
		if ids != "b" {
			t.Fatalf("reload saw %q, want b", ids)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("symlink swap not seen")
	}
}
