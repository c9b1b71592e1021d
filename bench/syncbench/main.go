// Command syncbench measures what a user of Sync gets when pulling a table from one
// site to another, side by side in one run with the plain psql COPY pipes between
// the same two PostgreSQL servers.
//
//	go run ./bench/syncbench                        # 1,000,000 rows, 3 repetitions (~10 min on 2 cores)
//	go run ./bench/syncbench -rows 100000 -reps 1   # quick check (~1 min)
//	go run ./bench/syncbench -link-mbit 200         # also pull through a 200 Mbit/s link
//
// The two sites are two separate PostgreSQL clusters started with host/devpg (the
// server binaries on the machine, PostgreSQL 15 here; fsync, synchronous_commit and
// full_page_writes off, autovacuum off so no background vacuum lands in a
// measurement): A is the sender, B the receiver. A holds a realistic table "items" —
// bigint primary key, uuid, unique email text, text, int, numeric(12,2), bool,
// text[], jsonb, timestamptz, 200 incompressible bytea bytes, nullable text (NULL
// on a third of the rows, a sentence on most, ~2 KB on one in a hundred) — generated
// in SQL, about 470 MiB for the default 1M rows. B has the same table, created from the same DDL.
//
// The plugin (./plugins/sync) and the CLI (./plugins/sync/cmd/fiberkit-pull) are built
// with `go build` at the start of every run, so the current code is measured. The
// sender is a host process (this program re-executed with -sender) embedding the
// host kit with the Sync module enabled (incoming_mode auto_accept), serving HTTP on
// a free port; each pull gets a fresh one-time code from it, as an admin would read
// it off the sender's page.
//
// The methods, each repeated -reps times (interleaved: one rep of every method, then
// the next), the median reported:
//
//   - binary pipe: psql -c "COPY items TO STDOUT (FORMAT binary)" on A piped into
//     psql -c "COPY items FROM STDIN (FORMAT binary)" on B, two real psql processes
//     (from the server binaries' directory), into B's emptied table;
//   - text pipe: the same in text format;
//   - fiberkit-pull skip: the CLI with its default flags (-url -code -db -tables items
//     only) into B's emptied table;
//   - fiberkit-pull overwrite: the CLI with -strategy overwrite into B's table holding
//     every id with every value different (reloaded before each rep from a stale copy
//     generated once on B, then vacuumed);
//   - fiberkit-pull skip over a throttled link (only with -link-mbit N): as the skip
//     pull, through a TCP proxy in this process between the CLI and the sender host
//     that limits each direction to N Mbit/s with a token bucket. The psql pipes are
//     not throttled; the ratio is still to the unthrottled binary pipe, and the output
//     gives the time the binary pipe's bytes would need on that link;
//   - PhoenixKit-style: on the first -pk-rows rows only, the way PhoenixKit's client
//     moves data — OFFSET pages of 500 records as JSON over the same WebSocket
//     (client.FetchRecords, in this process), one INSERT per row — compared by
//     throughput (its "× binary pipe" is per row).
//
// Before each timed run both clusters CHECKPOINT. After each, B's table must equal
// A's: the row count and an md5 of the rows' md5s in key order must match (A's is
// computed once).
//
// For every run it records the wall seconds (from starting the processes to their
// exit, connecting and schema exchange included) and, per process, the CPU seconds
// (user+system) and peak RSS:
//
//   - sender PostgreSQL and receiver PostgreSQL: the postmaster and all its
//     processes. CPU is read from the postmaster's /proc/<pid>/stat before and after
//     (utime+stime+cutime+cstime, the last two holding the backends it reaped) plus its
//     live children's utime+stime. Peak RSS is the largest VmHWM of any one of its
//     processes, sampled every 100 ms (reset at the start of each run); it counts the
//     shared buffers a process has mapped, so the checkpointer's sets a floor near
//     shared_buffers. The JSON also gives peak_private_mb: the largest RssAnon sampled,
//     a process's own memory without the shared buffers;
//   - sender host and sender plugin: /proc/<pid>/stat utime+stime before and after,
//     VmHWM reset at the start and sampled;
//   - the client: the CLI's or each psql's rusage from wait4 (ru_maxrss, user+system
//     time); for the PhoenixKit-style path this process's own;
//   - with -link-mbit, the proxy's CPU (this process's) goes to the JSON as link_proxy.
//
// The table gives the median wall seconds, the ratio to the binary pipe's median and,
// per process, the median CPU seconds and the largest peak RSS over the reps ("—"
// where the process takes no part: the sender host and plugin idle during the
// pipes). The last line is one JSON object with every run's figures, the medians and
// the ratios of medians.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/bench/internal/measure"
	"github.com/fiberkit/fiberkit/host/devpg"
	"github.com/fiberkit/fiberkit/plugins/sync/client"
)

func main() {
	rows := flag.Int("rows", 1_000_000, "rows in the table")
	reps := flag.Int("reps", 3, "repetitions of each method (the median is reported)")
	pkRows := flag.Int("pk-rows", 20_000, "rows moved by the PhoenixKit-style path")
	linkMbit := flag.Float64("link-mbit", 0, "also pull through a link limited to this many Mbit/s each way (0: no)")
	only := flag.String("only", "", "comma-separated methods to run (binary,text,skip,overwrite,link,phoenixkit; default all)")
	senderDB := flag.String("sender", "", "internal: run as the sender host for this database URL")
	pluginBin := flag.String("plugin", "", "internal: the sender host's Sync plugin binary")
	root := flag.String("root", "", "internal: the repository root")
	walLevel := flag.String("wal-level", "replica", "the clusters' wal_level: PostgreSQL's default replica, or logical (a site running live sync)")
	split := flag.Int("split", 0, "also pull with -split-workers 1 and with this many (methods split-1 and split-N, alternating with the others)")
	profiles := flag.String("cpuprofile", "", "write CPU profiles to this `dir`: the sender host's and its plugin's (host.pprof, plugin.pprof, over the whole run) and each pull's CLI (cli-<method>-<n>.pprof)")
	flag.Parse()
	var err error
	if *senderDB != "" {
		err = runSender(*senderDB, *pluginBin, *root, *profiles)
	} else {
		err = run(config{rows: *rows, reps: max(1, *reps), pkRows: *pkRows, linkMbit: *linkMbit, only: *only, profiles: *profiles, walLevel: *walLevel, split: *split})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "syncbench:", err)
		os.Exit(1)
	}
}

type config struct {
	rows, reps, pkRows int
	linkMbit           float64
	only               string
	profiles           string // a directory for CPU profiles ("": none)
	walLevel           string // the clusters' wal_level
	split              int    // workers of the split-N method (0: no split methods)
}

// The processes reported.
const (
	pSenderPG   = "sender_pg"
	pPlugin     = "sender_plugin"
	pHost       = "sender_host"
	pClient     = "client" // the CLI, or this process for the PhoenixKit-style path
	pPsqlOut    = "psql_out"
	pPsqlIn     = "psql_in"
	pReceiverPG = "receiver_pg"
	pLink       = "link_proxy" // this process, relaying the throttled link (JSON only)
)

// runResult is one timed run of a method.
type runResult struct {
	Seconds float64                  `json:"seconds"`
	Procs   map[string]measure.Usage `json:"procs"`
}

// method is one way of moving the table, with its runs.
type method struct {
	Key    string      `json:"key"`
	Name   string      `json:"name"`
	Rows   int         `json:"rows"`
	Runs   []runResult `json:"runs"`
	Median float64     `json:"median_s"`
	Ratio  float64     `json:"x_binary_pipe"`
	// Procs holds each process's median CPU seconds and largest peak RSS over the runs.
	Procs map[string]measure.Usage `json:"median_procs"`
	run   func() (runResult, error)
	prep  func() error
}

type bench struct {
	ctx          context.Context
	cfg          config
	psql, cli    string
	aURL, bURL   string
	a, b         *pgxpool.Pool
	aPM, bPM     int // postmaster pids
	snd          *sender
	want, wantPK sum
	lnk          *link
	pipeBytes    int64 // bytes of the binary COPY stream (measured with -link-mbit)
	tableMiB     float64
	setupSeconds float64
	pulls        int // pulls run so far (names their CLI profiles)
}

func run(cfg config) error {
	ctx := context.Background()
	if cfg.pkRows > cfg.rows {
		cfg.pkRows = cfg.rows
	}
	want := func(k string) bool {
		if cfg.only == "" {
			return k != "link" || cfg.linkMbit > 0
		}
		for _, s := range strings.Split(cfg.only, ",") {
			if strings.TrimSpace(s) == k {
				return k != "link" || cfg.linkMbit > 0
			}
		}
		return false
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	pgBin, err := devpg.FindBinaries()
	if err != nil {
		return err
	}
	bin, err := os.MkdirTemp("", "syncbench-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	psql, err := findPsql(pgBin)
	if err != nil {
		return err
	}
	b := &bench{ctx: ctx, cfg: cfg, psql: psql, cli: filepath.Join(bin, "fiberkit-pull")}
	plugin := filepath.Join(bin, "fiberkit-sync")

	// Build the binaries and start both clusters at once.
	setup := time.Now()
	fmt.Printf("building the plugin and the CLI, starting two PostgreSQL clusters (%s, psql %s)…\n", pgBin, psql)
	var (
		wg         sync.WaitGroup
		errs       = make([]error, 4)
		srvA, srvB *devpg.Server
		// PostgreSQL's default wal_level (replica), not devpg's logical: a pull does
		// not need logical decoding, and at wal_level=logical every transaction's
		// catalog changes (overwrite's per-batch temp tables) carry decoding
		// information the pipe's single COPY does not pay for. -wal-level logical
		// measures a site that runs live sync.
		pgSettings   = map[string]string{"autovacuum": "off", "wal_level": cfg.walLevel}
		startCluster = func(dst **devpg.Server, i int) {
			defer wg.Done()
			*dst, errs[i] = devpg.Start(ctx, devpg.Options{Settings: pgSettings})
		}
	)
	wg.Add(3)
	go func() {
		defer wg.Done()
		errs[0] = goBuild(root, plugin, "./plugins/sync", b.cli, "./plugins/sync/cmd/fiberkit-pull")
	}()
	go startCluster(&srvA, 1)
	go startCluster(&srvB, 2)
	wg.Wait()
	for _, s := range []*devpg.Server{srvA, srvB} {
		if s != nil {
			defer func() { _ = s.Stop() }()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if b.aURL, err = srvA.CreateDatabase(ctx, "site_a"); err != nil {
		return err
	}
	if b.bURL, err = srvB.CreateDatabase(ctx, "site_b"); err != nil {
		return err
	}
	if b.a, err = pool(ctx, b.aURL); err != nil {
		return err
	}
	defer b.a.Close()
	if b.b, err = pool(ctx, b.bURL); err != nil {
		return err
	}
	defer b.b.Close()
	if b.aPM, err = postmaster(ctx, b.a); err != nil {
		return err
	}
	if b.bPM, err = postmaster(ctx, b.b); err != nil {
		return err
	}

	fmt.Printf("generating %d rows on the sender…\n", cfg.rows)
	if err := b.setupTables(want("overwrite")); err != nil {
		return err
	}
	if cfg.profiles != "" {
		if cfg.profiles, err = filepath.Abs(cfg.profiles); err == nil {
			err = os.MkdirAll(cfg.profiles, 0o755)
		}
		if err != nil {
			return err
		}
		b.cfg.profiles = cfg.profiles
	}
	if b.snd, err = startSender(b.aURL, plugin, root, cfg.profiles); err != nil {
		return err
	}
	defer b.snd.stop()
	if cfg.linkMbit > 0 && want("link") {
		u, err := url.Parse(b.snd.url)
		if err != nil {
			return err
		}
		if b.lnk, err = startLink(u.Host, cfg.linkMbit); err != nil {
			return err
		}
		defer b.lnk.close()
		if b.pipeBytes, err = b.copyBytes(); err != nil {
			return err
		}
	}
	b.setupSeconds = time.Since(setup).Seconds()
	fmt.Printf("ready in %.0f s: table %s is %.0f MiB on the sender; sender host at %s\n", b.setupSeconds, table, b.tableMiB, b.snd.url)

	empty := func() error { _, err := b.b.Exec(ctx, "TRUNCATE "+table); return err }
	all := []*method{
		{Key: "binary", Name: "psql COPY binary | psql COPY", Rows: cfg.rows, prep: empty, run: func() (runResult, error) { return b.pipe("binary") }},
		{Key: "text", Name: "psql COPY text | psql COPY", Rows: cfg.rows, prep: empty, run: func() (runResult, error) { return b.pipe("text") }},
		{Key: "skip", Name: "fiberkit-pull, skip, empty table", Rows: cfg.rows, prep: empty, run: func() (runResult, error) { return b.pull(b.snd.url) }},
		{Key: "overwrite", Name: "fiberkit-pull -strategy overwrite, all stale", Rows: cfg.rows, prep: b.loadStale,
			run: func() (runResult, error) { return b.pull(b.snd.url, "-strategy", "overwrite") }},
	}
	if b.lnk != nil {
		all = append(all, &method{Key: "link", Name: fmt.Sprintf("fiberkit-pull, skip, %g Mbit/s link", cfg.linkMbit), Rows: cfg.rows, prep: empty,
			run: func() (runResult, error) {
				cpu0 := selfCPU()
				r, err := b.pull("http://" + b.lnk.addr())
				if err == nil {
					// The proxy runs in this process: its CPU is this process's.
					r.Procs[pLink] = measure.Usage{CPU: selfCPU() - cpu0}
				}
				return r, err
			}})
	}
	if cfg.split > 1 {
		for _, n := range []int{1, cfg.split} {
			all = append(all, &method{Key: fmt.Sprintf("split-%d", n), Name: fmt.Sprintf("fiberkit-pull -split-workers %d, skip, empty table", n), Rows: cfg.rows, prep: empty,
				run: func() (runResult, error) { return b.pull(b.snd.url, "-split-workers", fmt.Sprint(n)) }})
		}
	}
	all = append(all, &method{Key: "phoenixkit", Name: "PhoenixKit-style (OFFSET JSON pages, row INSERTs)", Rows: cfg.pkRows, prep: empty,
		run: b.phoenixKit})
	var methods []*method
	for _, m := range all {
		if want(m.Key) {
			methods = append(methods, m)
		}
	}

	for rep := 1; rep <= cfg.reps; rep++ {
		for _, m := range methods {
			if err := m.prep(); err != nil {
				return fmt.Errorf("%s: preparing: %w", m.Name, err)
			}
			if err := b.checkpoint(); err != nil {
				return err
			}
			r, err := m.run()
			if err != nil {
				return fmt.Errorf("%s (rep %d): %w", m.Name, rep, err)
			}
			if err := b.verify(m); err != nil {
				return fmt.Errorf("%s (rep %d): %w", m.Name, rep, err)
			}
			m.Runs = append(m.Runs, r)
			fmt.Printf("rep %d  %-50s %8.2f s  (verified)\n", rep, m.Name, r.Seconds)
		}
	}
	report(b, methods)
	return nil
}

// findPsql returns the psql next to the server binaries devpg found (following
// initdb's symlink when that directory holds only links to the server's), or on the PATH.
func findPsql(pgBin string) (string, error) {
	dirs := []string{pgBin}
	if real, err := filepath.EvalSymlinks(filepath.Join(pgBin, "initdb")); err == nil {
		dirs = append(dirs, filepath.Dir(real))
	}
	for _, d := range dirs {
		if p := filepath.Join(d, "psql"); fileExists(p) {
			return p, nil
		}
	}
	return exec.LookPath("psql")
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// goBuild builds pairs of (output, package) from the repository root.
func goBuild(root string, outPkg ...string) error {
	for i := 0; i+1 < len(outPkg); i += 2 {
		cmd := exec.Command("go", "build", "-o", outPkg[i], outPkg[i+1])
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", outPkg[i+1], err, out)
		}
	}
	return nil
}

func pool(ctx context.Context, u string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 2
	return pgxpool.NewWithConfig(ctx, cfg)
}

// postmaster returns the pid of the postmaster serving db: the parent of a backend.
func postmaster(ctx context.Context, db *pgxpool.Pool) (int, error) {
	var backend int
	if err := db.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		return 0, err
	}
	return measure.ParentPID(backend)
}

// setupTables creates and fills the table on A, creates it empty on B and, when the
// overwrite method runs, generates the stale copy on B.
func (b *bench) setupTables(stale bool) error {
	ctx := b.ctx
	if _, err := b.a.Exec(ctx, createSQL); err != nil {
		return err
	}
	if err := fill(ctx, b.a, table, b.cfg.rows, 0); err != nil {
		return err
	}
	var size int64
	if err := b.a.QueryRow(ctx, "SELECT pg_table_size('"+table+"')").Scan(&size); err != nil {
		return err
	}
	b.tableMiB = float64(size) / (1 << 20)
	var err error
	if b.want, err = checksum(ctx, b.a, table, 0); err != nil {
		return err
	}
	if b.want.Rows != int64(b.cfg.rows) {
		return fmt.Errorf("the sender's table holds %d rows, not %d", b.want.Rows, b.cfg.rows)
	}
	if b.wantPK, err = checksum(ctx, b.a, table, b.cfg.pkRows); err != nil {
		return err
	}
	if _, err := b.b.Exec(ctx, createSQL); err != nil {
		return err
	}
	if stale {
		if _, err := b.b.Exec(ctx, "CREATE TABLE items_stale (LIKE items)"); err != nil {
			return err
		}
		if err := fill(ctx, b.b, "items_stale", b.cfg.rows, 1); err != nil {
			return err
		}
	}
	return nil
}

// loadStale fills B's table with every id of A's, every row with other values.
func (b *bench) loadStale() error {
	for _, q := range []string{"TRUNCATE " + table, "INSERT INTO " + table + " SELECT * FROM items_stale", "VACUUM (ANALYZE) " + table} {
		if _, err := b.b.Exec(b.ctx, q); err != nil {
			return err
		}
	}
	var n int
	err := b.b.QueryRow(b.ctx, "SELECT count(*) FROM "+table).Scan(&n)
	if err == nil && n != b.cfg.rows {
		err = fmt.Errorf("the stale table holds %d rows, not %d", n, b.cfg.rows)
	}
	return err
}

func (b *bench) checkpoint() error {
	for _, db := range []*pgxpool.Pool{b.a, b.b} {
		if _, err := db.Exec(b.ctx, "CHECKPOINT"); err != nil {
			return err
		}
	}
	return nil
}

// verify checks B's table against A's after a run of m.
func (b *bench) verify(m *method) error {
	want := b.want
	if m.Rows < b.cfg.rows {
		want = b.wantPK
	}
	got, err := checksum(b.ctx, b.b, table, 0)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("the receiver's table differs from the sender's: %d rows md5 %s, want %d rows md5 %s", got.Rows, got.MD5, want.Rows, want.MD5)
	}
	return nil
}

// watch starts measuring the clusters and, when withSender, the sender host and plugin.
func (b *bench) watch(withSender bool) (*measure.Watch, error) {
	procs := map[string]measure.Proc{pSenderPG: {PID: b.aPM, Tree: true}, pReceiverPG: {PID: b.bPM, Tree: true}}
	if withSender {
		h, p, err := b.snd.pids()
		if err != nil {
			return nil, err
		}
		procs[pHost], procs[pPlugin] = measure.Proc{PID: h}, measure.Proc{PID: p}
	}
	return measure.StartWatch(procs, 100*time.Millisecond), nil
}

// childUsage reads a finished child's CPU seconds and peak RSS from its rusage.
func childUsage(ps *os.ProcessState) measure.Usage {
	u := measure.Usage{CPU: (ps.UserTime() + ps.SystemTime()).Seconds()}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		u.PeakMB = float64(ru.Maxrss) / 1024 // KiB on Linux
	}
	return u
}

func (b *bench) psqlCmd(dbURL, sql string) *exec.Cmd {
	cmd := exec.Command(b.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dbURL, "-c", sql)
	cmd.Env = append(os.Environ(), "PGCLIENTENCODING=UTF8")
	return cmd
}

// pipe runs psql COPY TO STDOUT on A piped into psql COPY FROM STDIN on B.
func (b *bench) pipe(format string) (runResult, error) {
	out := b.psqlCmd(b.aURL, "COPY "+table+" TO STDOUT (FORMAT "+format+")")
	in := b.psqlCmd(b.bURL, "COPY "+table+" FROM STDIN (FORMAT "+format+")")
	var outErr, inErr tail
	out.Stderr, in.Stderr, in.Stdout = &outErr, &inErr, &inErr
	r, w, err := os.Pipe()
	if err != nil {
		return runResult{}, err
	}
	out.Stdout, in.Stdin = w, r
	watch, err := b.watch(false)
	if err != nil {
		return runResult{}, err
	}
	start := time.Now()
	err = in.Start()
	if err == nil {
		err = out.Start()
	}
	r.Close()
	w.Close()
	if err != nil {
		_ = watch.Stop()
		if in.Process != nil {
			_ = in.Process.Kill()
			_ = in.Wait()
		}
		return runResult{}, err
	}
	errOut := out.Wait()
	errIn := in.Wait()
	secs := time.Since(start).Seconds()
	procs := watch.Stop()
	if errOut != nil || errIn != nil {
		return runResult{}, fmt.Errorf("psql: %v %v: %s %s", errOut, errIn, outErr.String(), inErr.String())
	}
	procs[pPsqlOut], procs[pPsqlIn] = childUsage(out.ProcessState), childUsage(in.ProcessState)
	return runResult{Seconds: secs, Procs: procs}, nil
}

// copyBytes returns the size of the binary COPY stream of A's table.
func (b *bench) copyBytes() (int64, error) {
	out := b.psqlCmd(b.aURL, "COPY "+table+" TO STDOUT (FORMAT binary)")
	var n countWriter
	var errs tail
	out.Stdout, out.Stderr = &n, &errs
	if err := out.Run(); err != nil {
		return 0, fmt.Errorf("psql: %w: %s", err, errs.String())
	}
	return int64(n), nil
}

// pull runs fiberkit-pull with its default flags against senderURL, plus extra.
func (b *bench) pull(senderURL string, extra ...string) (runResult, error) {
	code, err := b.snd.code()
	if err != nil {
		return runResult{}, err
	}
	args := append([]string{"-url", senderURL, "-code", code, "-db", b.bURL, "-tables", table}, extra...)
	if b.cfg.profiles != "" {
		b.pulls++
		args = append(args, "-cpuprofile", filepath.Join(b.cfg.profiles, fmt.Sprintf("cli-%d.pprof", b.pulls)))
	}
	cmd := exec.Command(b.cli, args...)
	var output tail
	cmd.Stdout, cmd.Stderr = &output, &output
	watch, err := b.watch(true)
	if err != nil {
		return runResult{}, err
	}
	start := time.Now()
	err = cmd.Run()
	secs := time.Since(start).Seconds()
	procs := watch.Stop()
	if err != nil {
		return runResult{}, fmt.Errorf("fiberkit-pull %s: %w\n%s", strings.Join(extra, " "), err, output.String())
	}
	procs[pClient] = childUsage(cmd.ProcessState)
	return runResult{Seconds: secs, Procs: procs}, nil
}

// phoenixKit moves the first pkRows rows the way PhoenixKit's client does: request:records
// pages of 500 by OFFSET, as JSON, written one INSERT per row.
func (b *bench) phoenixKit() (runResult, error) {
	ctx, n := b.ctx, b.cfg.pkRows
	code, err := b.snd.code()
	if err != nil {
		return runResult{}, err
	}
	watch, err := b.watch(true)
	if err != nil {
		return runResult{}, err
	}
	measure.ResetPeak()
	cpu0 := selfCPU()
	start := time.Now()
	err = func() error {
		c, err := client.Connect(ctx, b.snd.url, code, client.Options{})
		if err != nil {
			return err
		}
		defer c.Close()
		cols := []string{"id", "uid", "email", "name", "qty", "amount", "active", "tags", "attrs", "created_at", "blob", "notes"}
		ph := make([]string, len(cols))
		for i := range cols {
			ph[i] = fmt.Sprintf("$%d", i+1)
		}
		insert := "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES (" + strings.Join(ph, ", ") + ")"
		for done := 0; done < n; {
			page, err := c.FetchRecords(ctx, table, done, min(500, n-done))
			if err != nil {
				return err
			}
			for _, rec := range page.Records {
				args := make([]any, len(cols))
				for i, col := range cols {
					if v := rec[col]; v != nil {
						args[i] = *v
					}
				}
				if _, err := b.b.Exec(ctx, insert, args...); err != nil {
					return err
				}
			}
			done += len(page.Records)
			if !page.HasMore || len(page.Records) == 0 {
				break
			}
		}
		return nil
	}()
	secs := time.Since(start).Seconds()
	procs := watch.Stop()
	if err != nil {
		return runResult{}, err
	}
	procs[pClient] = measure.Usage{CPU: selfCPU() - cpu0, PeakMB: measure.PeakMB("self")}
	return runResult{Seconds: secs, Procs: procs}, nil
}

func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// report prints the table and the JSON line.
func report(b *bench, methods []*method) {
	var pipe float64
	for _, m := range methods {
		var secs []float64
		for _, r := range m.Runs {
			secs = append(secs, r.Seconds)
		}
		m.Median = measure.Median(secs)
		if m.Key == "binary" {
			pipe = m.Median
		}
		m.Procs = map[string]measure.Usage{}
		names := map[string]bool{}
		for _, r := range m.Runs {
			for n := range r.Procs {
				names[n] = true
			}
		}
		for n := range names {
			var cpu []float64
			var peak, priv float64
			for _, r := range m.Runs {
				cpu = append(cpu, r.Procs[n].CPU)
				peak = max(peak, r.Procs[n].PeakMB)
				priv = max(priv, r.Procs[n].PrivateMB)
			}
			m.Procs[n] = measure.Usage{CPU: measure.Round(measure.Median(cpu)), PeakMB: measure.Round(peak), PrivateMB: measure.Round(priv)}
		}
	}
	for _, m := range methods {
		if pipe > 0 {
			// Per row, so the PhoenixKit-style path's fewer rows compare.
			m.Ratio = measure.Round(m.Median / float64(m.Rows) / (pipe / float64(b.cfg.rows)))
		}
	}

	fmt.Printf("\n%d rows, %.0f MiB; median of %d; per process: median CPU s / largest peak RSS MB\n", b.cfg.rows, b.tableMiB, b.cfg.reps)
	cols := []string{pSenderPG, pPlugin, pHost, pClient, pReceiverPG}
	heads := []string{"sender PG", "sender plugin", "sender host", "client", "receiver PG"}
	fmt.Printf("| %-62s | %8s | %8s |", "method", "median s", "× binary")
	for _, h := range heads {
		fmt.Printf(" %-17s |", h)
	}
	fmt.Printf(" %9s |\n", "total CPU")
	fmt.Printf("|%s|%s|%s|", strings.Repeat("-", 64), strings.Repeat("-", 10), strings.Repeat("-", 10))
	for range heads {
		fmt.Printf("%s|", strings.Repeat("-", 19))
	}
	fmt.Printf("%s|\n", strings.Repeat("-", 11))
	for _, m := range methods {
		name := m.Name
		if m.Rows != b.cfg.rows {
			name = fmt.Sprintf("%s, %d rows", m.Name, m.Rows)
		}
		fmt.Printf("| %-62s | %8.2f | %8.2f |", name, m.Median, m.Ratio)
		total := 0.0
		for _, c := range cols {
			u, ok := m.Procs[c]
			if c == pClient && !ok {
				// The pipes: both psql processes, CPU summed, the larger peak.
				o, ok1 := m.Procs[pPsqlOut]
				i, ok2 := m.Procs[pPsqlIn]
				u, ok = measure.Usage{CPU: o.CPU + i.CPU, PeakMB: max(o.PeakMB, i.PeakMB)}, ok1 && ok2
			}
			if !ok {
				fmt.Printf(" %-17s |", "—")
				continue
			}
			total += u.CPU
			cell := fmt.Sprintf("%.2f / %.0f", u.CPU, u.PeakMB)
			if c == pClient && m.Procs[pPsqlOut] != (measure.Usage{}) {
				cell += " (2 psql)"
			}
			fmt.Printf(" %-17s |", cell)
		}
		fmt.Printf(" %9.2f |\n", total)
	}
	for _, m := range methods {
		if m.Key == "link" {
			fmt.Printf("\nthe %g Mbit/s link throttles only the pull (CLI ↔ sender host); the psql pipes run unthrottled.\n", b.cfg.linkMbit)
			fmt.Printf("through it the pull sent %.1f MiB to the receiver per run; the binary COPY stream is %.1f MiB and would need ≥ %.1f s on that link\n",
				float64(b.lnk.sent.Load())/float64(len(m.Runs))/(1<<20), float64(b.pipeBytes)/(1<<20), float64(b.pipeBytes)*8/(b.cfg.linkMbit*1e6))
		}
		if m.Key == "phoenixkit" {
			fmt.Printf("\nthe PhoenixKit-style path moved %d rows per run; its × is per row, its CPU and RSS are for those rows (client = this process).\n", m.Rows)
		}
	}

	ratios := map[string]float64{}
	for _, m := range methods {
		if m.Key != "binary" {
			ratios[m.Key] = m.Ratio
		}
	}
	out := map[string]any{
		"rows": b.cfg.rows, "table_mib": measure.Round(b.tableMiB), "reps": b.cfg.reps, "pk_rows": b.cfg.pkRows,
		"methods": methods, "x_binary_pipe": ratios, "setup_s": measure.Round(b.setupSeconds),
	}
	if b.lnk != nil {
		out["link_mbit"] = b.cfg.linkMbit
		out["link_bytes_to_receiver"] = b.lnk.sent.Load()
		out["link_bytes_to_sender"] = b.lnk.recv.Load()
		out["binary_copy_bytes"] = b.pipeBytes
	}
	var pull, pk *method
	for _, m := range methods {
		switch m.Key {
		case "skip":
			pull = m
		case "phoenixkit":
			pk = m
		}
	}
	var one, many *method
	for _, m := range methods {
		switch m.Key {
		case "split-1":
			one = m
		case fmt.Sprintf("split-%d", b.cfg.split):
			many = m
		}
	}
	if one != nil && many != nil && one.Median > 0 {
		ratio := measure.Round(many.Median / one.Median)
		out["split_workers"], out["split_time_ratio"] = b.cfg.split, ratio
		fmt.Printf("\nsplit: %d workers took %.2f× the time of 1 (medians %.2f s / %.2f s), the receiving table's md5 equal to the sender's after every run\n",
			b.cfg.split, ratio, many.Median, one.Median)
	}
	if pull != nil && pk != nil && pk.Median > 0 {
		out["skip_vs_phoenixkit_throughput"] = measure.Round((float64(pull.Rows) / pull.Median) / (float64(pk.Rows) / pk.Median))
	}
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
}

// tail keeps the last 64 KiB written to it.
type tail struct{ buf bytes.Buffer }

func (t *tail) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if t.buf.Len() > 64<<10 {
		b := t.buf.Bytes()[t.buf.Len()-32<<10:]
		t.buf = *bytes.NewBuffer(append([]byte(nil), b...))
	}
	return len(p), nil
}

func (t *tail) String() string { return t.buf.String() }

// countWriter counts and discards.
type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		return "", fmt.Errorf("run from the FiberKit repository")
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}
