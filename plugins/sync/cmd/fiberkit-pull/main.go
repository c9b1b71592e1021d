// Command fiberkit-pull pulls tables from a FiberKit site running Sync into a local
// PostgreSQL database, for scripts and migrations.
//
//	SYNC_PASSWORD=… fiberkit-pull -url https://prod.example.com -code ABCD2345 \
//	    -db postgres://localhost/dev -tables users,orders -strategy overwrite -create-missing
//
// On a terminal it draws a progress bar per table; otherwise it prints plain lines.
//
// Exit codes:
//
//	0    every row landed
//	1    the transfer finished but some records were refused (listed)
//	2    bad usage (flags, strategy, a malformed -db URL)
//	3    the sender refused the connection (code, password, denied, rate limited,
//	     no approval in time)
//	4    the transfer failed part-way, the sender going silent included (rerun with
//	     -strategy skip to finish it)
//	5    could not connect to the sender (network, DNS, TLS, timeout, or no Sync
//	     there: HTTP 404 when it is disabled or the URL is wrong)
//	6    the local database cannot be reached
//	130  interrupted (Ctrl-C; 143 for SIGTERM); what was applied stays applied
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// Exit codes scripts can rely on (documented in the package comment, -help and the
// README).
const (
	exitOK          = 0
	exitRecordErrs  = 1
	exitUsage       = 2
	exitRefused     = 3
	exitFailed      = 4
	exitUnreachable = 5
	exitLocalDB     = 6
	exitInterrupted = 130 // 128 + SIGINT
	exitTerminated  = 143 // 128 + SIGTERM
)

const exitCodesHelp = `
Exit codes:
  0    every row landed
  1    the transfer finished but some records were refused (listed)
  2    bad usage
  3    the sender refused the connection (code, password, denied, rate limited, no approval)
  4    the transfer failed part-way (a silent sender included): rerun with -strategy skip
  5    could not connect to the sender (network, TLS, timeout, HTTP 404: Sync disabled or wrong URL)
  6    the local database cannot be reached
  130  interrupted (Ctrl-C; 143 for SIGTERM)
`

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
	ignoreMissing := fs.Bool("ignore-missing-columns", false, "import without the sender's columns a local table lacks (listed), instead of failing the table")
	splitWorkers := fs.Int("split-workers", client.DefaultSplitWorkers(), "key ranges of a large table copied at once, a stream and a local connection each (1: never split)")
	batch := fs.Int("batch", wire.DefaultBatchRows, "rows per batch")
	compression := fs.String("compression", wire.CompressionAuto, "auto (zstd only when the link is what is slow) | zstd | none")
	timeout := fs.Duration("timeout", 2*time.Minute, "time allowed to connect (and wait for the sender's approval)")
	idle := fs.Duration("idle-timeout", 75*time.Second, "give up when nothing arrives from the sender for this long (0: never)")
	token := fs.String("token", "", "a permanent connection's token (fkc_…), instead of -code; better in $SYNC_TOKEN, which ps does not show")
	followFlag := fs.Bool("follow", false, "after the pull, keep applying the sender's changes until interrupted (needs -token of a connection allowed to follow; rerun to resume)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this run to `file` (for go tool pprof)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: fiberkit-pull -url URL -code CODE -db DATABASE_URL [flags]\n\nThe password of a require_password sender is read from $SYNC_PASSWORD.\n\nFlags:")
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), exitCodesHelp)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(stderr, "fiberkit-pull: -cpuprofile:", err)
			return exitUsage
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	password := os.Getenv("SYNC_PASSWORD") // never on the command line, where ps shows it
	if *token == "" {
		*token = os.Getenv("SYNC_TOKEN") // read here, so -help never prints it as a default
	}
	if *senderURL == "" || *code == "" && *token == "" || *db == "" {
		fmt.Fprintln(stderr, "fiberkit-pull: -url, -code (or -token) and -db (or $DATABASE_URL) are required")
		fs.Usage()
		return exitUsage
	}
	if *followFlag && *token == "" {
		fmt.Fprintln(stderr, "fiberkit-pull: -follow needs -token (a permanent connection allowed to follow)")
		fs.Usage()
		return exitUsage
	}
	strat, err := importer.ParseStrategy(*strategy)
	if err != nil {
		fmt.Fprintln(stderr, "fiberkit-pull:", err)
		return exitUsage
	}
	ctx, interrupted := onSignal()
	// stopped tells a failure caused by a signal (exit 130/143) from any other.
	stopped := func() (int, bool) {
		select {
		case sig := <-interrupted:
			fmt.Fprintln(stderr, "fiberkit-pull: interrupted; what was applied stays (rerun with -strategy skip to finish)")
			if sig == syscall.SIGTERM {
				return exitTerminated, true
			}
			return exitInterrupted, true
		default:
			return 0, false
		}
	}

	cfg, err := pgxpool.ParseConfig(*db)
	if err != nil {
		fmt.Fprintln(stderr, "fiberkit-pull: -db:", err)
		return exitUsage
	}
	if !strings.Contains(*db, "pool_max_conns") {
		// A local connection per range of a split table, and one more.
		cfg.MaxConns = max(cfg.MaxConns, int32(min(*splitWorkers, wire.MaxStreams)+1))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "fiberkit-pull: -db:", err)
		return exitUsage
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		if code, ok := stopped(); ok {
			return code
		}
		fmt.Fprintln(stderr, "fiberkit-pull: local database:", err)
		return exitLocalDB
	}

	idleTimeout := *idle
	if idleTimeout <= 0 {
		idleTimeout = -1 // off
	}
	host, _ := os.Hostname()
	copts := client.Options{
		Token: *token, Password: password, Timeout: *timeout, IdleTimeout: idleTimeout, ReceiverInfo: map[string]any{"tool": "fiberkit-pull", "host": host},
		OnAwaitingApproval: func() { fmt.Fprintln(stderr, "waiting for an admin of the sending site to approve…") },
	}
	if *followFlag {
		code := runFollow(ctx, pool, followRun{url: *senderURL, token: *token, tables: splitList(*tables), strategy: strat, options: copts,
			transfer: client.TransferOptions{CreateMissing: *create, BatchSize: *batch, Compression: *compression, IgnoreMissingColumns: *ignoreMissing,
				SplitWorkers: *splitWorkers},
			stdout: stdout, stderr: stderr})
		if c, ok := stopped(); ok && code == exitOK {
			return c
		}
		return code
	}
	c, err := client.Connect(ctx, *senderURL, *code, copts)
	if err != nil {
		if code, ok := stopped(); ok {
			return code
		}
		var re *client.RemoteError
		if errors.As(err, &re) {
			fmt.Fprintln(stderr, "fiberkit-pull: refused:", err)
			return exitRefused
		}
		fmt.Fprintln(stderr, "fiberkit-pull: could not connect:", err)
		return exitUnreachable
	}
	defer c.Close()

	list := splitList(*tables)
	tty := false
	if f, ok := stdout.(*os.File); ok {
		tty = isatty.IsTerminal(f.Fd())
	}
	progress := newReporter(stdout, tty)
	results, err := c.TransferAll(ctx, pool, client.TransferAllOptions{
		Tables: list, Strategy: strat,
		TransferOptions: client.TransferOptions{CreateMissing: *create, BatchSize: *batch, Compression: *compression, IgnoreMissingColumns: *ignoreMissing,
			SplitWorkers: *splitWorkers, Progress: progress.report},
	})
	progress.finish()
	printSummary(stdout, results)
	if err != nil {
		if code, ok := stopped(); ok {
			return code
		}
		fmt.Fprintln(stderr, "fiberkit-pull:", err)
		if errors.Is(err, client.ErrPeerSilent) {
			fmt.Fprintf(stderr, "fiberkit-pull: nothing came from the sender for %s (-idle-timeout); rerun with -strategy skip to finish\n", *idle)
		}
		return exitFailed
	}
	for _, r := range results {
		if r.Failed > 0 {
			return exitRecordErrs
		}
	}
	return exitOK
}

// splitList reads a comma-separated list, blanks dropped.
func splitList(s string) []string {
	var list []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			list = append(list, t)
		}
	}
	return list
}

// onSignal returns a context cancelled by the first SIGINT or SIGTERM, and the
// signal. A second one kills the process the usual way.
func onSignal() (context.Context, <-chan os.Signal) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	got := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		signal.Stop(sigs)
		got <- sig
		cancel()
	}()
	return ctx, got
}

// reporter shows progress: bars on a terminal, a line per table otherwise. A table
// whose last report is not Done failed: its bar stays where it stopped, marked.
type reporter struct {
	w     io.Writer
	tty   bool
	bar   *progressbar.ProgressBar
	last  string
	lastP client.Progress
	open  bool // a table has reported and not been finished
}

func newReporter(w io.Writer, tty bool) *reporter { return &reporter{w: w, tty: tty} }

func (r *reporter) report(p client.Progress) {
	if r.last != p.Table {
		r.finish()
		r.last = p.Table
		if r.tty {
			r.bar = progressbar.NewOptions64(max(p.Total, 1), progressbar.OptionSetWriter(r.w), progressbar.OptionSetDescription(fmt.Sprintf("%-20s", p.Table)),
				progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("rows"), progressbar.OptionThrottle(100*time.Millisecond))
		}
	}
	r.lastP, r.open = p, true
	if r.bar != nil {
		_ = r.bar.Set64(p.Rows)
	} else if p.Done {
		fmt.Fprintf(r.w, "%s: %d/%d rows in %.1fs\n", p.Table, p.Rows, p.Total, p.Elapsed.Seconds())
	}
}

// finish closes the current table's line: full when it completed, else marked failed
// at the rows it got to.
func (r *reporter) finish() {
	if !r.open {
		return
	}
	r.open = false
	p := r.lastP
	if r.bar != nil {
		if p.Done {
			_ = r.bar.Finish()
		} else {
			_ = r.bar.Exit()
		}
		fmt.Fprintln(r.w)
		r.bar = nil
	}
	if !p.Done {
		fmt.Fprintf(r.w, "%s: FAILED after %d/%d rows\n", p.Table, p.Rows, p.Total)
	}
}

func printSummary(w io.Writer, results map[string]client.Result) {
	names := make([]string, 0, len(results))
	for n := range results {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "%-20s %9s %9s %9s %9s %7s\n", "table", "rows", "created", "updated", "skipped", "failed")
	for _, n := range names {
		r := results[n]
		fmt.Fprintf(w, "%-20s %9d %9d %9d %9d %7d\n", n, r.Rows, r.Created, r.Updated, r.Skipped, r.Failed)
		if len(r.DroppedColumns) > 0 {
			fmt.Fprintf(w, "  ~ columns not here, left out: %s\n", strings.Join(r.DroppedColumns, ", "))
		}
		for i, e := range r.Errors {
			if i == 10 {
				fmt.Fprintf(w, "  … %d more\n", r.Failed-10)
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
