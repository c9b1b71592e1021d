// Command shapebench measures a shape served over Electric's HTTP API from a host
// app's Fiber route (syncweb.Shape) as clients see it: the latency from a write
// to the real @electric-sql/client (Node) receiving the row, and what 10,000 idle
// live long-polls held by one host cost in memory and CPU, and how long one change
// takes to answer them all. It prints a table and, last, one JSON line.
//
//	go run ./bench/shapebench                  # 300 writes, 10,000 polls (under a minute)
//	go run ./bench/shapebench -polls 4000      # fewer polls
//	go run ./bench/shapebench -profile /tmp/sb # also heap and CPU profiles
//
// A throwaway PostgreSQL (host/devpg, synchronous_commit on: see livebench) holds
// the events table. The Sync plugin (./plugins/sync) is built with `go build` at
// the start. The host is a process of its own (this program re-executed with
// -host): the host kit with the Sync module enabled and live sync on (config
// file), serving GET /shape = syncweb.Shape(kit, ShapeSpec{Table: "events"}).
//
//   - write → client: a Node script (node/subscribe.mjs; `npm ci` is run when
//     node_modules is missing) follows the shape with ShapeStream, live, and prints
//     each inserted row's id with its receive time (performance.timeOrigin +
//     performance.now()). This process inserts -writes rows one after another, each
//     once the previous was seen, the clock read before the INSERT is sent; p50
//     and p99 of receive − send. Then the same with server-sent events (liveSse).
//   - idle long-polls: once the shape is up to date, -polls concurrent live
//     long-polls (offset=<current>&handle=<h>&live=true, each on its own
//     connection, -ramp a second or all at once) from a clients process of its own
//     (this program re-executed with -polls and -url). When the plugin counts them
//     all as the shape's readers, and again -idle later, the host's and the
//     plugin's RSS and their goroutines, heap and stacks (from the kit's metrics)
//     are read, beside the same before the polls; total and per poll. The CPU of
//     the host, the plugin and PostgreSQL over those -idle seconds is read too.
//     Then one INSERT: the time from sending it until each poll got the change
//     (p50, last).
//
// If the plugin is restarted (the host kills a plugin that misses its health
// check) or the polls are not all waiting at once within 60 s, the run reports
// that, with the memory at the most polls seen waiting, as "held": false.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/bench/internal/measure"
)

func main() {
	writes := flag.Int("writes", 300, "rows written one after another for the latency")
	polls := flag.Int("polls", 10000, "idle live long-polls held by the host")
	ramp := flag.Int("ramp", 0, "idle long-polls opened per second (0: as fast as they connect)")
	idle := flag.Duration("idle", 5*time.Second, "how long the CPU of the waiting polls is measured")
	profiles := flag.String("profile", "", "write profiles to this `dir`: the host's heap while the polls wait (host-heap.pprof), the host's and the plugin's CPU over the run (host.pprof, plugin.pprof)")
	pluginEnv := flag.String("plugin-env", "", "comma-separated `K=V` added to the Sync plugin's environment (GOGC=400, say)")
	hostDB := flag.String("host", "", "internal: run as the host for this database URL")
	pluginBin := flag.String("plugin", "", "internal: the host's Sync plugin binary")
	root := flag.String("root", "", "internal: the repository root")
	shapeURL := flag.String("url", "", "internal: the clients' shape URL")
	handle := flag.String("handle", "", "internal: the clients' shape handle")
	offset := flag.String("offset", "", "internal: the clients' offset")
	flag.Parse()
	var err error
	switch {
	case *hostDB != "":
		err = runHost(*hostDB, *pluginBin, *root, *profiles, *pluginEnv)
	case *shapeURL != "":
		err = runPolls(*polls, *ramp, *shapeURL, *handle, *offset)
	default:
		err = run(*writes, *polls, *ramp, *idle, *profiles, *pluginEnv)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "shapebench:", err)
		os.Exit(1)
	}
}

// raiseFDLimit raises this process's open-file soft limit to the hard limit (a
// child inherits it).
func raiseFDLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// memory is one reading of the host's and the plugin's memory.
type memory struct {
	HostRSS     float64 `json:"host_rss"` // bytes (VmRSS)
	PluginRSS   float64 `json:"plugin_rss"`
	HostAnon    float64 `json:"host_anon"` // bytes (RssAnon)
	PluginAnon  float64 `json:"plugin_anon"`
	Stats       hostStats
	Subscribers int `json:"subscribers"`
}

func (m memory) total() float64 { return m.HostRSS + m.PluginRSS }

func readMemory(h *hostProc) (memory, error) {
	s, err := h.stats()
	if err != nil {
		return memory{}, err
	}
	hp, pp := strconv.Itoa(s.HostPID), strconv.Itoa(s.PluginPID)
	return memory{
		HostRSS: statusBytes(hp, "VmRSS:"), PluginRSS: statusBytes(pp, "VmRSS:"),
		HostAnon: statusBytes(hp, "RssAnon:"), PluginAnon: statusBytes(pp, "RssAnon:"),
		Stats: s, Subscribers: s.Subscribers,
	}, nil
}

// statusBytes reads a field of /proc/<pid>/status, a size in kB, as bytes.
func statusBytes(pid, field string) float64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0
			}
			v, _ := strconv.ParseFloat(f[0], 64)
			if len(f) > 1 && f[1] == "kB" {
				v *= 1024
			}
			return v
		}
	}
	return 0
}

func run(nWrites, nPolls, ramp int, idle time.Duration, profiles, pluginEnv string) error {
	raiseFDLimit()
	if profiles != "" {
		var err error
		if profiles, err = filepath.Abs(profiles); err == nil {
			err = os.MkdirAll(profiles, 0o755)
		}
		if err != nil {
			return err
		}
	}
	ctx := context.Background()
	root, err := repoRoot()
	if err != nil {
		return err
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return errors.New("node is not installed: the Electric client needs Node.js and npm (Debian: apt-get install nodejs npm)")
	}
	nodeDir := filepath.Join(root, "bench", "shapebench", "node")
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "@electric-sql", "client")); err != nil {
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = nodeDir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("npm ci in %s: %w\n%s", nodeDir, err, out)
		}
	}
	tmp, err := os.MkdirTemp("", "shapebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	pluginBin := filepath.Join(tmp, "fiberkit-sync")
	build := exec.Command("go", "build", "-o", pluginBin, "./plugins/sync")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./plugins/sync: %w\n%s", err, out)
	}

	admin, stop, err := server(ctx)
	if err != nil {
		return err
	}
	defer stop()
	dbURL, err := measure.CreateDB(ctx, admin, measure.NewName("shapebench"))
	if err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE events (id bigserial PRIMARY KEY, body text NOT NULL, at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return err
	}
	var pgPID int
	if err := pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'`).Scan(&pgPID); err != nil {
		return err
	}
	if pgPID, err = measure.ParentPID(pgPID); err != nil {
		return err
	}

	h, err := startHost(dbURL, pluginBin, root, profiles, pluginEnv)
	if err != nil {
		return err
	}
	defer h.stop()
	shapeURL := h.url + "/shape"

	// write → Electric client, long-poll then SSE.
	lp, err := clientLatency(ctx, pool, node, nodeDir, shapeURL, nWrites, false)
	if err != nil {
		return fmt.Errorf("latency (long-poll): %w", err)
	}
	sse, err := clientLatency(ctx, pool, node, nodeDir, shapeURL, nWrites, true)
	if err != nil {
		return fmt.Errorf("latency (SSE): %w", err)
	}

	// Idle long-polls.
	handle, offset, err := upToDate(shapeURL)
	if err != nil {
		return err
	}
	time.Sleep(2 * time.Second) // the Node clients' requests end
	before, err := readMemory(h)
	if err != nil {
		return err
	}
	t0 := time.Now()
	pc, err := startPollers(nPolls, ramp, shapeURL, handle, offset)
	if err != nil {
		return err
	}
	if err := pc.sent(); err != nil {
		return err
	}
	// Wait until every poll waits in the plugin (the shape's readers), keeping the
	// reading with the most.
	var waiting, peak memory
	failure := ""
	for {
		m, err := readMemory(h)
		if err != nil {
			return err
		}
		if m.Stats.Restarts > 0 {
			failure = fmt.Sprintf("the Sync plugin was killed and restarted by the host %.0f s after the first poll was sent: %s",
				time.Since(t0).Seconds(), m.Stats.LastError)
			break
		}
		if m.Subscribers > peak.Subscribers {
			peak = m
		}
		if m.Subscribers >= nPolls {
			waiting = m
			break
		}
		if os.Getenv("SHAPEBENCH_LOG") != "" {
			fmt.Fprintf(os.Stderr, "%5.1f s: %d polls waiting, plugin %d goroutines\n", time.Since(t0).Seconds(), m.Subscribers, int(m.Stats.PluginGoroutines))
		}
		if time.Since(t0) > 60*time.Second {
			failure = fmt.Sprintf("at most %d of the %d polls were waiting at once within 60 s", peak.Subscribers, nPolls)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	opened := time.Since(t0)
	r2 := measure.Round
	res := map[string]any{
		"p50_ms_longpoll": r2(pct(lp, 50)), "p99_ms_longpoll": r2(pct(lp, 99)),
		"p50_ms_sse": r2(pct(sse, 50)), "p99_ms_sse": r2(pct(sse, 99)),
		"polls": nPolls, "ramp_per_s": ramp,
	}
	printLatency(lp, sse)
	if failure != "" {
		_ = pc.cmd.Process.Kill()
		_ = pc.cmd.Wait()
		fmt.Printf("\n%d idle long-polls NOT held: %s\n", nPolls, failure)
		if peak.Subscribers > 0 {
			fmt.Printf("the most waiting at once: %d\n", peak.Subscribers)
			printMemory(before, peak, peak, peak.Subscribers, "peak", "")
			addMemory(res, before, peak, peak.Subscribers)
		}
		res["held"], res["failure"], res["peak_waiting"] = false, failure, peak.Subscribers
		line, _ := json.Marshal(res)
		fmt.Println(string(line))
		return nil
	}
	// Idle: CPU over the window, memory at its end.
	pids := map[string]measure.Proc{"host": {PID: waiting.Stats.HostPID}, "plugin": {PID: waiting.Stats.PluginPID}, "pg": {PID: pgPID, Tree: true}}
	w := measure.StartWatch(pids, 250*time.Millisecond)
	time.Sleep(idle)
	usage := w.Stop()
	settled, err := readMemory(h)
	if err != nil {
		return err
	}
	if profiles != "" {
		if _, err := h.ask("heap " + filepath.Join(profiles, "host-heap.pprof")); err != nil {
			return err
		}
	}
	// One change answers them all.
	sent := unixMS(time.Now())
	if _, err := pool.Exec(ctx, `INSERT INTO events (body) VALUES ('wake')`); err != nil {
		return err
	}
	rep, err := pc.report()
	if err != nil {
		return err
	}
	if rep.Got < nPolls {
		return fmt.Errorf("only %d of %d polls got the change (%d errors)", rep.Got, nPolls, rep.Errors)
	}
	fanP50 := rep.Times[len(rep.Times)/2] - sent
	fanLast := rep.Times[len(rep.Times)-1] - sent

	fmt.Printf("\n%d idle long-polls held by one host (all waiting %.1f s after the first was sent)\n", nPolls, opened.Seconds())
	printMemory(before, waiting, settled, nPolls, "all waiting", "+"+idle.String())
	fmt.Printf("CPU while they wait (%s): host %.2f s, plugin %.2f s, PostgreSQL %.2f s\n", idle, usage["host"].CPU, usage["plugin"].CPU, usage["pg"].CPU)
	fmt.Printf("one INSERT → all %d polls answered: p50 %.0f ms, last %.0f ms (%d empty polls renewed, %d errors)\n",
		nPolls, fanP50, fanLast, rep.Repolls, rep.Errors)
	if profiles != "" {
		fmt.Printf("profiles in %s (the CPU ones are written when the host stops)\n", profiles)
	}
	addMemory(res, before, settled, nPolls)
	res["held"], res["polls_open_s"] = true, r2(opened.Seconds())
	res["idle_window_s"] = idle.Seconds()
	res["idle_cpu_s_host"], res["idle_cpu_s_plugin"], res["idle_cpu_s_pg"] = r2(usage["host"].CPU), r2(usage["plugin"].CPU), r2(usage["pg"].CPU)
	res["fanout_p50_ms"], res["fanout_last_ms"], res["renewed_polls"] = r2(fanP50), r2(fanLast), rep.Repolls
	line, _ := json.Marshal(res)
	fmt.Println(string(line))
	return nil
}

func mb(b float64) float64 { return b / (1 << 20) }

func printLatency(lp, sse []float64) {
	fmt.Printf("%-52s %10s %10s\n", "write → @electric-sql/client (Node)", "p50 ms", "p99 ms")
	fmt.Printf("%-52s %10.2f %10.2f\n", fmt.Sprintf("long-poll (%d writes)", len(lp)), pct(lp, 50), pct(lp, 99))
	fmt.Printf("%-52s %10.2f %10.2f\n", fmt.Sprintf("server-sent events (%d writes)", len(sse)), pct(sse, 50), pct(sse, 99))
}

// printMemory prints the readings before the polls, at x and at y, and the
// difference y − before in all and per poll (n polls waiting).
func printMemory(before, x, y memory, n int, xName, yName string) {
	per := func(a, b float64) float64 { return (a - b) / float64(n) }
	fmt.Printf("%-22s %12s %12s %12s %12s %12s\n", "", "before", xName, yName, "delta", "per poll")
	row := func(name string, b, xv, yv float64, bytes bool) {
		ys := fmt.Sprintf("%12.1f", mb(yv))
		if yName == "" {
			ys = fmt.Sprintf("%12s", "")
		}
		if bytes {
			fmt.Printf("%-22s %12.1f %12.1f %s %12.1f %10.1f KB\n", name+" MB", mb(b), mb(xv), ys, mb(yv-b), per(yv, b)/1024)
			return
		}
		if yName != "" {
			ys = fmt.Sprintf("%12.0f", yv)
		}
		fmt.Printf("%-22s %12.0f %12.0f %s %12.0f %12.2f\n", name, b, xv, ys, yv-b, per(yv, b))
	}
	row("host RSS", before.HostRSS, x.HostRSS, y.HostRSS, true)
	row("plugin RSS", before.PluginRSS, x.PluginRSS, y.PluginRSS, true)
	row("total RSS", before.total(), x.total(), y.total(), true)
	row("host heap in use", before.Stats.HostHeap, x.Stats.HostHeap, y.Stats.HostHeap, true)
	row("host stacks", before.Stats.HostStack, x.Stats.HostStack, y.Stats.HostStack, true)
	row("plugin heap in use", before.Stats.PluginHeap, x.Stats.PluginHeap, y.Stats.PluginHeap, true)
	row("plugin stacks", before.Stats.PluginStack, x.Stats.PluginStack, y.Stats.PluginStack, true)
	row("host goroutines", before.Stats.HostGoroutines, x.Stats.HostGoroutines, y.Stats.HostGoroutines, false)
	row("plugin goroutines", before.Stats.PluginGoroutines, x.Stats.PluginGoroutines, y.Stats.PluginGoroutines, false)
}

// addMemory adds the memory readings (y, with n polls waiting, against before)
// to the JSON result.
func addMemory(res map[string]any, before, y memory, n int) {
	r2 := measure.Round
	per := func(a, b float64) float64 { return r2((a - b) / float64(n)) }
	res["host_rss_before_mb"], res["plugin_rss_before_mb"] = r2(mb(before.HostRSS)), r2(mb(before.PluginRSS))
	res["host_rss_waiting_mb"], res["plugin_rss_waiting_mb"] = r2(mb(y.HostRSS)), r2(mb(y.PluginRSS))
	res["total_rss_waiting_mb"] = r2(mb(y.total()))
	res["bytes_per_poll"] = per(y.total(), before.total())
	res["host_bytes_per_poll"], res["plugin_bytes_per_poll"] = per(y.HostRSS, before.HostRSS), per(y.PluginRSS, before.PluginRSS)
	res["host_stack_bytes_per_poll"], res["plugin_stack_bytes_per_poll"] = per(y.Stats.HostStack, before.Stats.HostStack), per(y.Stats.PluginStack, before.Stats.PluginStack)
	res["host_heap_bytes_per_poll"], res["plugin_heap_bytes_per_poll"] = per(y.Stats.HostHeap, before.Stats.HostHeap), per(y.Stats.PluginHeap, before.Stats.PluginHeap)
	res["host_goroutines_per_poll"] = per(y.Stats.HostGoroutines, before.Stats.HostGoroutines)
	res["plugin_goroutines_per_poll"] = per(y.Stats.PluginGoroutines, before.Stats.PluginGoroutines)
}

// clientLatency runs the Node client on the shape and times n writes to it, one
// after another: receive (Node's clock) − send (read before the INSERT is sent),
// in milliseconds. A few untimed writes first warm the path.
func clientLatency(ctx context.Context, pool *pgxpool.Pool, node, dir, shapeURL string, n int, sse bool) ([]float64, error) {
	cmd := exec.Command(node, "subscribe.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SHAPE_URL="+shapeURL)
	if sse {
		cmd.Env = append(cmd.Env, "LIVE_SSE=1")
	}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		_ = in.Close()
		_ = cmd.Wait()
	}()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(d time.Duration) (string, error) {
		select {
		case l, ok := <-lines:
			if !ok {
				return "", errors.New("the Node client exited")
			}
			return l, nil
		case <-time.After(d):
			return "", fmt.Errorf("nothing from the Node client within %s", d)
		}
	}
	if l, err := next(30 * time.Second); err != nil || l != "ready" {
		return nil, fmt.Errorf("node client not ready: %q %v", l, err)
	}
	const warm = 10
	var lat []float64
	for i := 0; i < warm+n; i++ {
		sent := unixMS(time.Now())
		var id int64
		if err := pool.QueryRow(ctx, `INSERT INTO events (body) VALUES ($1) RETURNING id`, fmt.Sprintf("latency %d", i)).Scan(&id); err != nil {
			return nil, err
		}
		for {
			l, err := next(10 * time.Second)
			if err != nil {
				return nil, fmt.Errorf("write %d: %w", i, err)
			}
			f := strings.Fields(l)
			if len(f) != 3 || f[0] != "row" || f[1] != strconv.FormatInt(id, 10) {
				continue // an earlier row's, or not a row
			}
			got, err := strconv.ParseFloat(f[2], 64)
			if err != nil {
				return nil, fmt.Errorf("node client: %q", l)
			}
			if i >= warm {
				lat = append(lat, got-sent)
			}
			break
		}
	}
	return lat, nil
}

// upToDate reads the shape from the beginning (non-live requests, as a client's
// initial sync) and returns its handle and the offset it is up to date at.
func upToDate(shapeURL string) (handle, offset string, err error) {
	offset = "-1"
	for i := 0; i < 1000; i++ {
		u := shapeURL + "?offset=" + offset
		if handle != "" {
			u += "&handle=" + handle
		}
		resp, err := http.Get(u)
		if err != nil {
			return "", "", err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return "", "", err
		}
		if resp.StatusCode != http.StatusOK {
			return "", "", fmt.Errorf("GET %s: %s %s", u, resp.Status, body)
		}
		handle, offset = resp.Header.Get("electric-handle"), resp.Header.Get("electric-offset")
		if resp.Header.Get("electric-up-to-date") != "" {
			return handle, offset, nil
		}
	}
	return "", "", errors.New("the shape is not up to date after 1,000 requests")
}

// server is measure.Server with synchronous_commit on, PostgreSQL's default:
// devpg turns it off for speed, and then the walsender sees a commit only when the
// WAL writer flushes it (every 200 ms), which is all a change would wait for.
func server(ctx context.Context) (string, func(), error) {
	return measure.ServerWith(ctx, map[string]string{"synchronous_commit": "on"})
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		return "", fmt.Errorf("run from the FiberKit repository")
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

func unixMS(t time.Time) float64 { return float64(t.UnixNano()) / 1e6 }

// pct is the p-th percentile of xs (nearest rank).
func pct(xs []float64, p int) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}
