package settings

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

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
	// An empty secret leaves it as it was.
	if err := s.Set(ctx, "sync", map[string]string{"incoming_password": ""}, "alice"); err != nil {
		t.Fatal(err)
	}
	if v2 := value(t, s, "incoming_password"); v2.Value != v.Value {
		t.Fatal("empty secret changed the stored hash")
	}
	pool := s.pool
	for _, q := range []string{`SELECT string_agg(t::text, ' ') FROM fiberkit_settings t`, `SELECT string_agg(t::text, ' ') FROM fiberkit_audit t`} {
		var dump string
		if err := pool.QueryRow(ctx, q).Scan(&dump); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(dump, plain) {
			t.Fatalf("%s holds the plain secret", q)
		}
	}
	var detail string
	if err := pool.QueryRow(ctx, `SELECT detail::text FROM fiberkit_audit ORDER BY id LIMIT 1`).Scan(&detail); err != nil {
		t.Fatal(err)
	}
	if detail != `{"incoming_password": "changed"}` {
		t.Fatalf("audit detail for a secret: %s", detail)
	}
	if err := s.ClearSecret(ctx, "sync", "incoming_password", "alice"); err != nil {
		t.Fatal(err)
	}
	if v := value(t, s, "incoming_password"); v.IsSet {
		t.Fatal("cleared secret still set")
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
	err = s.Set(ctx, "sync", map[string]string{"incoming_mode": "auto_accept"}, "alice")
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "config file") {
		t.Fatalf("locked set: %v", err)
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
	time.Sleep(200 * time.Millisecond) // let b's LISTEN start
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
