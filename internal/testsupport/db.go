package testsupport

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Execer is what Exec runs SQL on: a pool, a connection or a transaction.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Exec runs sql on db and fails the test on an error.
func Exec(t testing.TB, db Execer, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// Pool opens a pool on the existing database at url, closed when the test ends.
func Pool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Checksum is the md5 of COPY (SELECT * FROM from ORDER BY order): equal checksums
// mean byte-for-byte equal rows. from is SQL as it stands after FROM — a (quoted)
// table name, or a subquery with an alias — and order an ORDER BY list.
func Checksum(t testing.TB, db *pgxpool.Pool, from, order string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := db.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	h := md5.New()
	if _, err := conn.Conn().PgConn().CopyTo(ctx, h, "COPY (SELECT * FROM "+from+" ORDER BY "+order+") TO STDOUT"); err != nil {
		t.Fatalf("checksum %s: %v", from, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Count returns the single integer the query selects, failing the test on an error.
func Count(t testing.TB, db *pgxpool.Pool, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}
