// Command fiberkit-pull pulls tables from a FiberKit site running Sync into a local
// PostgreSQL database, for scripts and migrations.
//
//	SYNC_PASSWORD=… fiberkit-pull -url https://prod.example.com -code ABCD2345 \
//	    -db postgres://localhost/dev -tables users,orders -strategy overwrite -create-missing
//
// On a terminal it draws a progress bar per table; otherwise it prints plain lines.
//
// Exit codes: 0 every row landed; 1 the transfer finished but some records were
// refused (listed); 2 bad usage; 3 the sender refused the connection (code, password,
// denied, rate limited); 4 the transfer failed part-way (rerun with -strategy skip to
// finish it).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"

	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/sdk/syncclient"
)

// Exit codes scripts can rely on.
const (
	exitOK         = 0
	exitRecordErrs = 1
	exitUsage      = 2
	exitRefused    = 3
	exitFailed     = 4
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fiberkit-pull", flag.ContinueOnError)
	fs.SetOutput(stderr)
	senderURL := fs.String("url", "", "the sending site's URL (required)")
	code := fs.String("code", os.Getenv("SYNC_CODE"), "the one-time code shown by the sender (or $SYNC_CODE)")
	db := fs.String("db", os.Getenv("DATABASE_URL"), "the local database (or $DATABASE_URL)")
	tables := fs.String("tables", "", "comma-separated tables (default: all the sender offers)")
	strategy := fs.String("strategy", "skip", "skip | overwrite | merge | append")
	create := fs.Bool("create-missing", false, "create tables missing locally")
	batch := fs.Int("batch", 5000, "rows per batch")
	timeout := fs.Duration("timeout", 2*time.Minute, "time allowed to connect (and wait for the sender's approval)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	password := os.Getenv("SYNC_PASSWORD") // never on the command line, where ps shows it
	if *senderURL == "" || *code == "" || *db == "" {
		fmt.Fprintln(stderr, "fiberkit-pull: -url, -code and -db (or $DATABASE_URL) are required")
		fs.Usage()
		return exitUsage
	}
	strat, err := importer.ParseStrategy(*strategy)
	if err != nil {
		fmt.Fprintln(stderr, "fiberkit-pull:", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	pool, err := pgxpool.New(ctx, *db)
	if err != nil {
		fmt.Fprintln(stderr, "fiberkit-pull: local database:", err)
		return exitUsage
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		fmt.Fprintln(stderr, "fiberkit-pull: local database:", err)
		return exitUsage
	}

	host, _ := os.Hostname()
	c, err := syncclient.Connect(ctx, *senderURL, strings.ToUpper(strings.TrimSpace(*code)), syncclient.Options{
		Password: password, Timeout: *timeout, ReceiverInfo: map[string]any{"tool": "fiberkit-pull", "host": host},
		OnAwaitingApproval: func() { fmt.Fprintln(stderr, "waiting for an admin of the sending site to approve…") },
	})
	if err != nil {
		fmt.Fprintln(stderr, "fiberkit-pull: connect:", err)
		var re *syncclient.RemoteError
		if errors.As(err, &re) {
			return exitRefused
		}
		return exitFailed
	}
	defer c.Close()

	var list []string
	if *tables != "" {
		for _, t := range strings.Split(*tables, ",") {
			if t = strings.TrimSpace(t); t != "" {
				list = append(list, t)
			}
		}
	}
	tty := false
	if f, ok := stdout.(*os.File); ok {
		tty = isatty.IsTerminal(f.Fd())
	}
	progress := newReporter(stdout, tty)
	results, err := c.TransferAll(ctx, pool, syncclient.TransferAllOptions{
		Tables: list, Strategy: strat,
		TransferOptions: syncclient.TransferOptions{CreateMissing: *create, BatchSize: *batch, Progress: progress.report},
	})
	progress.finish()
	printSummary(stdout, results)
	if err != nil {
		fmt.Fprintln(stderr, "fiberkit-pull:", err)
		return exitFailed
	}
	for _, r := range results {
		if len(r.Errors) > 0 {
			return exitRecordErrs
		}
	}
	return exitOK
}

// reporter shows progress: bars on a terminal, a line per table otherwise.
type reporter struct {
	w    io.Writer
	tty  bool
	bar  *progressbar.ProgressBar
	last string
}

func newReporter(w io.Writer, tty bool) *reporter { return &reporter{w: w, tty: tty} }

func (r *reporter) report(p syncclient.Progress) {
	if !r.tty {
		if p.Done {
			fmt.Fprintf(r.w, "%s: %d/%d rows in %.1fs\n", p.Table, p.Rows, p.Total, p.Elapsed.Seconds())
		}
		return
	}
	if r.last != p.Table {
		r.finish()
		r.last = p.Table
		r.bar = progressbar.NewOptions64(max(p.Total, 1), progressbar.OptionSetWriter(r.w), progressbar.OptionSetDescription(fmt.Sprintf("%-20s", p.Table)),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("rows"), progressbar.OptionThrottle(100*time.Millisecond))
	}
	_ = r.bar.Set64(p.Rows)
}

func (r *reporter) finish() {
	if r.bar != nil {
		_ = r.bar.Finish()
		fmt.Fprintln(r.w)
		r.bar = nil
	}
}

func printSummary(w io.Writer, results map[string]syncclient.Result) {
	names := make([]string, 0, len(results))
	for n := range results {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "%-20s %9s %9s %9s %9s %7s\n", "table", "rows", "created", "updated", "skipped", "errors")
	for _, n := range names {
		r := results[n]
		fmt.Fprintf(w, "%-20s %9d %9d %9d %9d %7d\n", n, r.Rows, r.Created, r.Updated, r.Skipped, len(r.Errors))
		for i, e := range r.Errors {
			if i == 10 {
				fmt.Fprintf(w, "  … %d more\n", len(r.Errors)-10)
				break
			}
			fmt.Fprintf(w, "  ! key %s: %s\n", keyString(e.Key), e.Reason)
		}
		if r.Error != "" {
			fmt.Fprintf(w, "  ! %s\n", r.Error)
		}
	}
}

func keyString(k map[string]*string) string {
	parts := make([]string, 0, len(k))
	for name, v := range k {
		val := "NULL"
		if v != nil {
			val = *v
		}
		parts = append(parts, name+"="+val)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}
