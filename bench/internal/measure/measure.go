// Package measure holds what the benchmarks share: a database to work in, the plain
// COPY pipe they compare against, equality checks and peak RSS readings.
package measure

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/devpg"
)

// CreateDB creates database name on the server adminURL points at and returns its URL.
func CreateDB(ctx context.Context, adminURL, name string) (string, error) {
	if err := devpg.CreateDatabase(ctx, adminURL, name); err != nil {
		return "", err
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// Pipe is the baseline: COPY table TO STDOUT on src streamed into COPY table FROM STDIN on dst.
func Pipe(ctx context.Context, src, dst *pgxpool.Pool, table string) error {
	sc, err := src.Acquire(ctx)
	if err != nil {
		return err
	}
	defer sc.Release()
	dc, err := dst.Acquire(ctx)
	if err != nil {
		return err
	}
	defer dc.Release()
	r, w := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		_, err := sc.Conn().PgConn().CopyTo(ctx, w, "COPY "+table+" TO STDOUT")
		w.CloseWithError(err)
		errc <- err
	}()
	if _, err := dc.Conn().PgConn().CopyFrom(ctx, r, "COPY "+table+" FROM STDIN"); err != nil {
		return err
	}
	return <-errc
}

// Same checks that table holds the same rows (ordered by id) in both databases.
func Same(ctx context.Context, src, dst *pgxpool.Pool, table string) error {
	sum := func(p *pgxpool.Pool) (string, error) {
		var s string
		err := p.QueryRow(ctx, "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM "+table+" t").Scan(&s)
		return s, err
	}
	a, err := sum(src)
	if err != nil {
		return err
	}
	b, err := sum(dst)
	if err != nil {
		return err
	}
	if a != b {
		return fmt.Errorf("%s differs after the transfer", table)
	}
	return nil
}

// ResetPeak resets this process's peak RSS, so the next reading covers what follows.
func ResetPeak() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// PeakMB returns the peak RSS (VmHWM) of process pid ("self" for this one) in MiB.
func PeakMB(pid string) float64 { return statusMB(pid, "VmHWM:") }

// statusMB returns the field (a size in kB) of /proc/<pid>/status in MiB.
func statusMB(pid, field string) float64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field) {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, field)), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}

// Round keeps two decimals.
func Round(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// Server returns the URL of a database to create benchmark databases from: the
// server in DATABASE_URL, or a throwaway cluster that stop removes.
func Server(ctx context.Context) (adminURL string, stop func(), err error) {
	return ServerWith(ctx, nil)
}

// NewName returns a database name unique to this run.
func NewName(prefix string) string {
	return prefix + "_" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
}
