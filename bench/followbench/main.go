// Command followbench measures follow (a receiving site applying a sender's changes
// continuously, plugins/sync/follow) end to end: the lag from a sender's commit to
// the change being visible on the receiver, under a steady load of row changes.
//
//	go run ./bench/followbench
//
// Two throwaway PostgreSQL clusters (the sender's with wal_level=logical, both with
// synchronous_commit on); a host kit with the Sync plugin (a built binary, no race
// detector) serving the sending site over HTTP, with a permanent connection allowed
// to follow; fiberkit-pull -follow (a built binary) as the receiver, copying the
// table once and then following it. Writers make -rate row changes a second for
// -duration (transactions of two changes: inserts, updates, deletes).
//
// Lag of a change: from when the writer's COMMIT returned on the sender to when the
// receiver's applying transaction committed, as a NOTIFY sent by an AFTER trigger on
// the receiver's table (created once the first copy is done) arrives at a LISTENing
// connection in this process; both times are read from this process's clock. It
// includes the notification's delivery (well under a millisecond on loopback) and
// the trigger's cost in the apply. It prints a table and, last, one JSON line.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/bench/internal/measure"
	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/host/devpg"
)

func main() {
	rate := flag.Int("rate", 1000, "row changes a second the writers make on the sender")
	duration := flag.Duration("duration", 30*time.Second, "how long the writers write")
	rows := flag.Int("rows", 50000, "rows of the followed table before the follow starts")
	writers := flag.Int("writers", 4, "writer connections")
	flag.Parse()
	if err := run(*rate, *duration, *rows, *writers); err != nil {
		fmt.Fprintln(os.Stderr, "followbench:", err)
		os.Exit(1)
	}
}

// result is the JSON line.
type result struct {
	Rate          int                      `json:"rate_target"`
	Written       int64                    `json:"changes_written"`
	WrittenPerSec float64                  `json:"changes_per_s_written"`
	Seen          int64                    `json:"changes_seen"`
	Missing       int64                    `json:"changes_missing"`
	Lag           map[string]float64       `json:"lag_ms"`
	CatchUp       float64                  `json:"catch_up_after_writers_s"`
	Usage         map[string]measure.Usage `json:"usage"`
	Seconds       float64                  `json:"seconds"`
}

func run(rate int, duration time.Duration, nRows, nWriters int) error {
	ctx := context.Background()
	root, err := repoRoot()
	if err != nil {
		return err
	}
	bin, err := os.MkdirTemp("", "followbench-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	plugin, cli := filepath.Join(bin, "fiberkit-sync"), filepath.Join(bin, "fiberkit-pull")
	for _, b := range [][2]string{{plugin, "./plugins/sync"}, {cli, "./plugins/sync/cmd/fiberkit-pull"}} {
		cmd := exec.Command("go", "build", "-o", b[0], b[1])
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %w\n%s", b[1], err, out)
		}
	}
	settings := map[string]string{"synchronous_commit": "on"}
	sendSrv, err := devpg.Start(ctx, devpg.Options{Settings: settings})
	if err != nil {
		return err
	}
	defer func() { _ = sendSrv.Stop() }()
	recvSrv, err := devpg.Start(ctx, devpg.Options{Settings: settings})
	if err != nil {
		return err
	}
	defer func() { _ = recvSrv.Stop() }()
	aURL, err := sendSrv.CreateDatabase(ctx, "sender")
	if err != nil {
		return err
	}
	bURL, err := recvSrv.CreateDatabase(ctx, "receiver")
	if err != nil {
		return err
	}
	a, err := pgxpool.New(ctx, aURL)
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := pgxpool.New(ctx, bURL)
	if err != nil {
		return err
	}
	defer b.Close()
	if _, err := a.Exec(ctx, `CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0, v text, at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return err
	}
	if _, err := a.Exec(ctx, `INSERT INTO items (id, v) SELECT i, md5(i::text) FROM generate_series(1, $1::int) i`, nRows); err != nil {
		return err
	}

	// The sending site.
	kit, stopKit, err := measure.SyncHost(ctx, root, plugin, aURL, "      incoming_mode: auto_accept\n      allow_internal_urls: true\n", nil,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer stopKit()
	app := fiber.New(host.FiberConfig())
	kit.Mount(app)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = app.Listener(ln) }()
	defer func() { _ = app.ShutdownWithTimeout(5 * time.Second) }()
	senderURL := "http://" + ln.Addr().String()
	var conn struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	if err := call(ctx, kit, "create_connection", map[string]any{"name": "followbench", "site_url": "http://receiver.example",
		"limits": map[string]any{"follow": true}}, &conn); err != nil {
		return err
	}
	if err := call(ctx, kit, "set_connection_status", map[string]string{"id": conn.ID, "status": "active"}, nil); err != nil {
		return err
	}

	// The receiver: copy, then follow.
	t0 := time.Now()
	pull := exec.Command(cli, "-follow", "-url", senderURL, "-token", conn.Token, "-db", bURL, "-tables", "items", "-create-missing")
	var pullOut strings.Builder
	out := &syncWriter{w: &pullOut}
	pull.Stdout, pull.Stderr = out, out
	if err := pull.Start(); err != nil {
		return err
	}
	defer func() {
		_ = pull.Process.Signal(os.Interrupt)
		_ = pull.Wait()
	}()
	if err := waitFollowing(ctx, b, senderURL, 2*time.Minute); err != nil {
		return fmt.Errorf("%w\nfiberkit-pull:\n%s", err, pullOut.String())
	}
	copied := time.Since(t0)
	if _, err := b.Exec(ctx, `CREATE FUNCTION bench_applied() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF TG_OP = 'DELETE' THEN PERFORM pg_notify('applied', 'd' || OLD.id);
			ELSE PERFORM pg_notify('applied', NEW.id || ':' || NEW.n); END IF;
			RETURN NULL;
		END $$;
		CREATE TRIGGER bench_applied AFTER INSERT OR UPDATE OR DELETE ON items FOR EACH ROW EXECUTE FUNCTION bench_applied()`); err != nil {
		return err
	}

	// The listener: when each change became visible on the receiver.
	lconn, err := pgx.Connect(ctx, bURL)
	if err != nil {
		return err
	}
	defer lconn.Close(context.Background())
	if _, err := lconn.Exec(ctx, "LISTEN applied"); err != nil {
		return err
	}
	var mu sync.Mutex
	seen := map[string]time.Time{}
	lctx, stopListen := context.WithCancel(ctx)
	defer stopListen()
	listened := make(chan struct{})
	go func() {
		defer close(listened)
		for {
			n, err := lconn.WaitForNotification(lctx)
			if err != nil {
				return
			}
			at := time.Now()
			mu.Lock()
			if _, ok := seen[n.Payload]; !ok {
				seen[n.Payload] = at
			}
			mu.Unlock()
		}
	}()

	// Processes measured while the writers write.
	pids := map[string]measure.Proc{}
	st, _ := kit.Module("sync")
	pids["sender plugin"] = measure.Proc{PID: st.PID}
	pids["fiberkit-pull"] = measure.Proc{PID: pull.Process.Pid}
	pids["bench process (host, writers, listener)"] = measure.Proc{PID: os.Getpid()}
	for name, p := range map[string]*pgxpool.Pool{"sender postgres": a, "receiver postgres": b} {
		var backend int
		if err := p.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
			return err
		}
		pm, err := measure.ParentPID(backend)
		if err != nil {
			return err
		}
		pids[name] = measure.Proc{PID: pm, Tree: true}
	}
	watch := measure.StartWatch(pids, 200*time.Millisecond)

	// The writers: each owns the ids ≡ w (mod writers) above nRows, and the seeded
	// rows ≡ w, so no two wait on one another.
	var commits sync.Map // change key → commit time
	var written atomic.Int64
	wctx, stopWriters := context.WithTimeout(ctx, duration)
	defer stopWriters()
	var wg sync.WaitGroup
	var werr atomic.Value
	txnsPerSec := float64(rate) / 2 / float64(nWriters)
	began := time.Now()
	for w := range nWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := write(wctx, a, w, nWriters, nRows, txnsPerSec, &commits, &written); err != nil && wctx.Err() == nil {
				werr.Store(err)
				stopWriters()
			}
		}()
	}
	wg.Wait()
	wrote := time.Since(began)
	if err, _ := werr.Load().(error); err != nil {
		return err
	}
	// Wait for every change to show on the receiver.
	total := written.Load()
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		n := 0
		commits.Range(func(k, _ any) bool {
			if _, ok := seen[k.(string)]; ok {
				n++
			}
			return true
		})
		mu.Unlock()
		if int64(n) >= total || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	catchUp := time.Since(began) - wrote
	usage := watch.Stop()
	stopListen()
	<-listened

	var lags []float64
	commits.Range(func(k, v any) bool {
		if at, ok := seen[k.(string)]; ok {
			lags = append(lags, float64(at.Sub(v.(time.Time)).Microseconds())/1000)
		}
		return true
	})
	slices.Sort(lags)
	pct := func(p float64) float64 {
		if len(lags) == 0 {
			return 0
		}
		return measure.Round(lags[min(len(lags)-1, int(p*float64(len(lags))))])
	}
	if err := measure.Same(ctx, a, b, "items"); err != nil {
		return err
	}
	r := result{Rate: rate, Written: total, WrittenPerSec: measure.Round(float64(total) / wrote.Seconds()), Seen: int64(len(lags)),
		Missing: total - int64(len(lags)), Lag: map[string]float64{"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1)},
		CatchUp: measure.Round(catchUp.Seconds()), Usage: usage, Seconds: measure.Round(wrote.Seconds())}

	fmt.Printf("followbench: %d rows copied and following in %.1fs; writers for %.0fs at a target of %d row changes/s\n",
		nRows, copied.Seconds(), wrote.Seconds(), rate)
	fmt.Printf("  changes written     %d (%.0f/s)\n", r.Written, r.WrittenPerSec)
	fmt.Printf("  changes seen        %d (missing %d); receiver equal to sender (md5)\n", r.Seen, r.Missing)
	fmt.Printf("  lag commit→visible  p50 %.1f ms  p90 %.1f ms  p99 %.1f ms  max %.1f ms\n", r.Lag["p50"], r.Lag["p90"], r.Lag["p99"], r.Lag["max"])
	fmt.Printf("  caught up %.2fs after the writers stopped\n", r.CatchUp)
	names := make([]string, 0, len(usage))
	for n := range usage {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		u := usage[n]
		fmt.Printf("  %-40s CPU %5.1fs (%3.0f%% of a core)  peak RSS %6.1f MiB  private %6.1f MiB\n", n, u.CPU, 100*u.CPU/wrote.Seconds(), u.PeakMB, u.PrivateMB)
	}
	line, _ := json.Marshal(r)
	fmt.Println(string(line))
	return nil
}

// write runs transactions of two row changes at perSec a second until ctx ends,
// recording each change's key (what the receiver's trigger notifies) and when its
// COMMIT returned.
func write(ctx context.Context, pool *pgxpool.Pool, w, nWriters, nRows int, perSec float64, commits *sync.Map, written *atomic.Int64) error {
	r := rand.New(rand.NewPCG(uint64(w)+1, 42))
	var live []int64
	for id := int64(w + nWriters); id <= int64(nRows); id += int64(nWriters) {
		live = append(live, id)
	}
	next := int64(nRows + 1 + w)
	every := time.Duration(float64(time.Second) / perSec)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		var keys []string
		for range 2 {
			switch k := r.IntN(10); {
			case k < 4 || len(live) < 10:
				id := next
				next += int64(nWriters)
				if _, err = tx.Exec(ctx, `INSERT INTO items (id, v, at) VALUES ($1, md5($1::bigint::text), clock_timestamp())`, id); err == nil {
					live = append(live, id)
					keys = append(keys, strconv.FormatInt(id, 10)+":0")
				}
			case k < 8:
				i := r.IntN(len(live))
				id := live[i]
				var nv int
				if err = tx.QueryRow(ctx, `UPDATE items SET n = n + 1, v = md5(random()::text), at = clock_timestamp() WHERE id = $1 RETURNING n`, id).Scan(&nv); err == nil {
					keys = append(keys, strconv.FormatInt(id, 10)+":"+strconv.Itoa(nv))
				}
			default:
				i := r.IntN(len(live))
				id := live[i]
				if _, err = tx.Exec(ctx, `DELETE FROM items WHERE id = $1`, id); err == nil {
					live[i] = live[len(live)-1]
					live = live[:len(live)-1]
					keys = append(keys, "d"+strconv.FormatInt(id, 10))
				}
			}
			if err != nil {
				_ = tx.Rollback(context.Background())
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		if err := tx.Commit(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		at := time.Now()
		for _, k := range keys {
			commits.Store(k, at)
		}
		written.Add(int64(len(keys)))
	}
}

// waitFollowing waits for the receiver's follow of the sender to be following.
func waitFollowing(ctx context.Context, b *pgxpool.Pool, id string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		var state string
		err := b.QueryRow(ctx, `SELECT state FROM fiberkit_sync_follows WHERE id = $1`, id).Scan(&state)
		if err == nil && state == "following" {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the follow was not following within %s", d)
}

// call runs a Sync operation on the sending site as its admin.
func call(ctx context.Context, kit *host.Kit, op string, in, out any) error {
	payload, err := json.Marshal(in)
	if err != nil {
		return err
	}
	res, err := kit.Call(ctx, "admin", "sync", op, payload)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if out != nil {
		return json.Unmarshal(res, out)
	}
	return nil
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		return "", fmt.Errorf("run from the FiberKit repository")
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}
