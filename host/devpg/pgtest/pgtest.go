// Package pgtest gives each test a fresh PostgreSQL database. It uses the server in
// DATABASE_URL when set; otherwise one throwaway cluster per test binary, started on
// first use by devpg and stopped by Main.
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestX(t *testing.T) { url := pgtest.NewDatabase(t) ... }
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/devpg"
)

// shared is the one cluster of this test binary. A test helper is the one place where
// process-wide state is the point: every test in the binary shares the server.
var shared struct {
	once   sync.Once
	admin  string // URL of a database to issue CREATE DATABASE on
	server *devpg.Server
	err    error
}

// Main runs the tests, then the functions in after (a test binary's own teardown),
// and stops the throwaway cluster. Call it from TestMain.
func Main(m *testing.M, after ...func()) {
	code := m.Run()
	for _, f := range after {
		f()
	}
	if shared.server != nil {
		_ = shared.server.Stop()
	}
	os.Exit(code)
}

func start() {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		shared.admin = u
		return
	}
	// A package's tests share the cluster one after another: room for the
	// replication slots and senders of many follows and live captures, so one
	// test's slot that outlives it cannot starve the next.
	shared.server, shared.err = devpg.Start(context.Background(), devpg.Options{Settings: map[string]string{
		"max_replication_slots": "40", "max_wal_senders": "40",
	}})
	if shared.err == nil {
		shared.admin = shared.server.URL("postgres")
	}
}

// NewDatabase creates an empty database for this test and returns its URL. The
// database is dropped when the test ends. A test that cannot get a server fails with
// a message saying what to install.
func NewDatabase(t testing.TB) string {
	t.Helper()
	shared.once.Do(start)
	if shared.err != nil {
		t.Fatalf("pgtest: no PostgreSQL: %v", shared.err)
	}
	name := "t_" + randomHex(6) + "_" + sanitize(t.Name())
	if len(name) > 60 {
		name = name[:60]
	}
	ctx := context.Background()
	if err := devpg.CreateDatabase(ctx, shared.admin, name); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() { drop(shared.admin, name) })
	return withDatabase(t, shared.admin, name)
}

func withDatabase(t testing.TB, admin, name string) string {
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("pgtest: parse DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

func drop(admin, name string) {
	ctx := context.Background()
	conn, err := pgxConnect(ctx, admin)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %q WITH (FORCE)", name))
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NewPool creates an empty database for this test, as NewDatabase does, and returns
// a pool connected to it, closed when the test ends.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), NewDatabase(t))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}
