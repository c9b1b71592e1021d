// Command livebench measures live sync's engine (plugins/sync/live) on a throwaway
// PostgreSQL with wal_level=logical: the latency from a committed write to a
// subscriber's receiving it, with one shape and with 1,000 shapes (`user_id = $1`,
// indexed by the shape registry), the sustained rate of row changes delivered with
// 1,000 shapes subscribed, the memory an idle shape costs, and the slot's lag
// under that load. It prints a table and, last, one JSON line.
//
//	go run ./bench/livebench
//
// The engine runs in this process, as it does in the Sync plugin; writes go
// through a separate pool, as an app's would.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/bench/internal/measure"
	"github.com/fiberkit/fiberkit/plugins/sync/live"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

func main() {
	shapes := flag.Int("shapes", 1000, "shapes subscribed in the many-shapes runs")
	latencyN := flag.Int("latency-writes", 500, "single-row writes timed per latency run")
	changes := flag.Int("changes", 50000, "row changes in the throughput run")
	idle := flag.Int("idle", 2000, "idle shapes created to measure memory per shape")
	flag.Parse()
	if err := run(*shapes, *latencyN, *changes, *idle); err != nil {
		fmt.Fprintln(os.Stderr, "livebench:", err)
		os.Exit(1)
	}
}

// subscriber receives one shape's changes and records when each row arrived.
type subscriber struct {
	user   int
	cancel context.CancelFunc
	ready  chan struct{} // closed at the first up-to-date
	once   sync.Once
}

type bench struct {
	e     *live.Engine
	pool  *pgxpool.Pool
	mu    sync.Mutex
	sent  map[string]time.Time // a timed row's body → when its write was sent
	lat   []time.Duration
	got   atomic.Int64
	subs  []*subscriber
	subWG sync.WaitGroup
}

func run(nShapes, latencyN, nChanges, nIdle int) error {
	ctx := context.Background()
	admin, stop, err := server(ctx)
	if err != nil {
		return err
	}
	defer stop()
	url, err := measure.CreateDB(ctx, admin, measure.NewName("livebench"))
	if err != nil {
		return err
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return err
	}
	cfg.MaxConns = 32
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE events (id bigserial PRIMARY KEY, user_id int NOT NULL, body text NOT NULL, at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return err
	}
	e, err := live.Start(ctx, live.Config{Pool: pool, ElectEvery: 200 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	defer func() {
		e.Close()
		_ = live.Disable(context.Background(), pool, "")
	}()
	b := &bench{e: e, pool: pool, sent: map[string]time.Time{}}

	// One shape.
	if err := b.subscribe(ctx, 0, 1); err != nil {
		return err
	}
	one, err := b.latency(ctx, latencyN, 1)
	if err != nil {
		return fmt.Errorf("latency, one shape: %w", err)
	}
	b.unsubscribe()

	// Many shapes.
	t0 := time.Now()
	if err := b.subscribe(ctx, 0, nShapes); err != nil {
		return err
	}
	setup := time.Since(t0)
	many, err := b.latency(ctx, latencyN, nShapes)
	if err != nil {
		return fmt.Errorf("latency, %d shapes: %w", nShapes, err)
	}
	rate, lag, err := b.throughput(ctx, nChanges, nShapes)
	if err != nil {
		return fmt.Errorf("throughput: %w", err)
	}
	b.unsubscribe()

	perShape, err := b.idleMemory(ctx, nIdle)
	if err != nil {
		return fmt.Errorf("idle memory: %w", err)
	}

	fmt.Printf("%-44s %10s %10s\n", "write → subscriber", "p50 ms", "p99 ms")
	fmt.Printf("%-44s %10.2f %10.2f\n", "1 shape", ms(pct(one, 50)), ms(pct(one, 99)))
	fmt.Printf("%-44s %10.2f %10.2f\n", fmt.Sprintf("%d shapes (user_id = $1), 1 subscriber each", nShapes), ms(pct(many, 50)), ms(pct(many, 99)))
	fmt.Printf("\n%d shapes subscribed in %.1f s\n", nShapes, setup.Seconds())
	fmt.Printf("sustained: %.0f row changes/s delivered with %d shapes (%d changes)\n", rate, nShapes, nChanges)
	fmt.Printf("slot lag under that load: max %.1f MB\n", float64(lag)/(1<<20))
	fmt.Printf("memory per idle shape: %.1f KB (%d shapes, each with a waiting subscriber)\n", perShape/1024, nIdle)
	line, _ := json.Marshal(map[string]float64{
		"p50_ms_1_shape": round(ms(pct(one, 50))), "p99_ms_1_shape": round(ms(pct(one, 99))),
		"p50_ms_many_shapes": round(ms(pct(many, 50))), "p99_ms_many_shapes": round(ms(pct(many, 99))),
		"shapes": float64(nShapes), "changes_per_s": round(rate), "slot_lag_max_bytes": float64(lag),
		"idle_shape_bytes": round(perShape),
	})
	fmt.Println(string(line))
	return nil
}

// server is measure.Server with synchronous_commit on, PostgreSQL's default: devpg
// turns it off for speed, and then the walsender sees a commit only when the WAL
// writer flushes it (every wal_writer_delay, 200 ms), which is all a change would
// wait for.
func server(ctx context.Context) (string, func(), error) {
	return measure.ServerWith(ctx, map[string]string{"synchronous_commit": "on"})
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func round(f float64) float64    { return float64(int64(f*100+0.5)) / 100 }

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[min(len(ds)-1, len(ds)*p/100)]
}

// subscribe opens a stream per user in [from, from+n) and waits for each to be up
// to date.
func (b *bench) subscribe(ctx context.Context, from, n int) error {
	for u := from; u < from+n; u++ {
		sctx, cancel := context.WithCancel(ctx)
		s := &subscriber{user: u, cancel: cancel, ready: make(chan struct{})}
		b.subs = append(b.subs, s)
		b.subWG.Add(1)
		go func() {
			defer b.subWG.Done()
			_ = b.e.Stream(sctx, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "events", Where: "user_id = $1",
				Params: []string{strconv.Itoa(s.user)}}}, func(m syncapi.StreamMessage) error {
				if m.Message.Headers.Control == syncapi.ControlUpToDate {
					s.once.Do(func() { close(s.ready) })
					return nil
				}
				if m.Message.Headers.Operation != syncapi.OperationInsert || m.Message.Value["body"] == nil {
					return nil
				}
				now := time.Now()
				body := *m.Message.Value["body"]
				b.mu.Lock()
				if t, ok := b.sent[body]; ok {
					b.lat = append(b.lat, now.Sub(t))
					delete(b.sent, body)
				}
				b.mu.Unlock()
				b.got.Add(1)
				return nil
			})
		}()
	}
	deadline := time.After(5 * time.Minute)
	for _, s := range b.subs {
		select {
		case <-s.ready:
		case <-deadline:
			return fmt.Errorf("shape for user %d not up to date within 5 minutes", s.user)
		}
	}
	return nil
}

func (b *bench) unsubscribe() {
	for _, s := range b.subs {
		s.cancel()
	}
	b.subWG.Wait()
	b.subs = nil
}

// latency writes n single-row transactions one after another, each for a user of
// [0, users), and waits for each to reach its subscriber.
func (b *bench) latency(ctx context.Context, n, users int) ([]time.Duration, error) {
	b.mu.Lock()
	b.lat = nil
	b.mu.Unlock()
	for i := 0; i < n; i++ {
		want := b.got.Load() + 1
		body := fmt.Sprintf("latency %d/%d", users, i)
		// The clock starts before the write is sent: its own round trip counts.
		b.mu.Lock()
		b.sent[body] = time.Now()
		b.mu.Unlock()
		if _, err := b.pool.Exec(ctx, `INSERT INTO events (user_id, body) VALUES ($1, $2)`, i%users, body); err != nil {
			return nil, err
		}
		deadline := time.Now().Add(10 * time.Second)
		for b.got.Load() < want {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("write %d not delivered within 10 s", i)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.lat) != n {
		return nil, fmt.Errorf("%d of %d timed writes matched", len(b.lat), n)
	}
	return slices.Clone(b.lat), nil
}

// throughput writes n rows spread over users from 4 writers (100 rows per
// transaction) and measures how fast the subscribers receive them all, sampling the
// slot's lag meanwhile.
func (b *bench) throughput(ctx context.Context, n, users int) (float64, int64, error) {
	start := b.got.Load()
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	per := n / 4
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i += 100 {
				if _, err := b.pool.Exec(ctx, `INSERT INTO events (user_id, body) SELECT (g + $1) % $2, 'throughput' FROM generate_series(1, 100) g`,
					w*per+i, users); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	var maxLag atomic.Int64
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(200 * time.Millisecond):
			}
			st, err := b.e.Status(ctx)
			if err == nil && st.LagBytes > maxLag.Load() {
				maxLag.Store(st.LagBytes)
			}
		}
	}()
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		close(done)
		return 0, 0, err
	}
	want := start + int64(per*4)
	deadline := time.Now().Add(5 * time.Minute)
	for b.got.Load() < want {
		if time.Now().After(deadline) {
			close(done)
			return 0, 0, fmt.Errorf("%d of %d changes delivered within 5 minutes", b.got.Load()-start, per*4)
		}
		time.Sleep(time.Millisecond)
	}
	el := time.Since(t0)
	close(done)
	return float64(per*4) / el.Seconds(), maxLag.Load(), nil
}

// idleMemory subscribes n more shapes that receive nothing and returns the growth
// of heap and goroutine stacks per shape (after a collection, before and after):
// the shape in the capture loop's registry, its reader, its wait.
func (b *bench) idleMemory(ctx context.Context, n int) (float64, error) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := b.subscribe(ctx, 1_000_000, n); err != nil {
		return 0, err
	}
	time.Sleep(time.Second)
	runtime.GC()
	runtime.ReadMemStats(&after)
	defer b.unsubscribe()
	// Goroutine stacks are not heap: both count.
	used := func(m runtime.MemStats) int64 { return int64(m.HeapAlloc + m.StackInuse) }
	return float64(used(after)-used(before)) / float64(n), nil
}
