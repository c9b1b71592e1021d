// Command kitbench measures what running a handler in a plugin process costs: a route
// served through a plugin against the same handler in-process (requests/s, p50, p99
// on loopback), and WebSocket messages/s through the host's bridge against a direct
// Fiber WebSocket; then how long a scrape of the kit's Prometheus metrics takes (the
// module's own metrics gathered through the plugin channel included), checking that
// the kit counted every request. It prints a table and, last, one JSON line.
//
//	go run ./bench/kitbench
//
// It starts a throwaway PostgreSQL (the host keeps its settings there) unless
// DATABASE_URL is set, and builds the test module from host/internal/testmodule.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
	fws "github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fiberkit/fiberkit/bench/internal/measure"
	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/sdk"
)

const manifest = `id: tm
name: Bench module
version: 0.1.0
executable: %s
routes:
  - path: /ping
    methods: [GET]
websockets:
  - path: /ws
`

func main() {
	requests := flag.Int("requests", 20000, "HTTP requests per target")
	concurrency := flag.Int("concurrency", 8, "concurrent HTTP clients")
	messages := flag.Int("messages", 50000, "WebSocket messages per target")
	flag.IntVar(&rounds, "rounds", 5, "rounds over which the loads are split, plugin and in-process alternating; each figure is the median of the rounds'")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write CPU profiles of the host (`PREFIX`.host.pprof) and of the module process (PREFIX.plugin.pprof) over the measured loads")
	flag.Parse()
	if err := run(*requests, *concurrency, *messages); err != nil {
		fmt.Fprintln(os.Stderr, "kitbench:", err)
		os.Exit(1)
	}
}

// cpuProfile is the -cpuprofile prefix; empty means no profiles.
var cpuProfile string

// rounds is the -rounds flag.
var rounds int

func run(requests, concurrency, messages int) error {
	ctx := context.Background()
	admin, stop, err := measure.Server(ctx)
	if err != nil {
		return err
	}
	defer stop()
	db, err := measure.CreateDB(ctx, admin, measure.NewName("kitbench"))
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "kitbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "testmodule")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/fiberkit/fiberkit/host/internal/testmodule").CombinedOutput(); err != nil {
		return fmt.Errorf("build test module: %v\n%s", err, out)
	}
	mpath := filepath.Join(dir, "module.yaml")
	if err := os.WriteFile(mpath, []byte(fmt.Sprintf(manifest, bin)), 0o644); err != nil {
		return err
	}
	var pluginEnv []string
	if cpuProfile != "" {
		abs, err := filepath.Abs(cpuProfile + ".plugin.pprof")
		if err != nil {
			return err
		}
		pluginEnv = append(pluginEnv, sdk.CPUProfileEnv+"="+abs)
	}
	kit, err := host.New(ctx, host.Config{DatabaseURL: db, Manifests: []string{mpath}, InsecureDevAdmin: true, PluginEnv: pluginEnv,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	defer kit.Close()
	if err := kit.SetEnabled(ctx, "tm", true, "bench"); err != nil {
		return err
	}
	for st, _ := kit.Module("tm"); st.State != host.StateRunning; st, _ = kit.Module("tm") {
		time.Sleep(20 * time.Millisecond)
	}
	plugin := fiber.New(host.FiberConfig())
	kit.Mount(plugin)
	pluginURL, err := serve(plugin)
	if err != nil {
		return err
	}
	defer plugin.Shutdown()

	direct := fiber.New(fiber.Config{DisableStartupMessage: true})
	direct.Get("/ping", func(c *fiber.Ctx) error { return c.SendString("pong") })
	direct.Get("/ws", fws.New(func(c *fws.Conn) {
		for {
			t, m, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(t, m); err != nil {
				return
			}
		}
	}))
	directURL, err := serve(direct)
	if err != nil {
		return err
	}
	defer direct.Shutdown()

	if cpuProfile != "" {
		f, err := os.Create(cpuProfile + ".host.pprof")
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	// Latency one request at a time (what a plugin adds to each request), then
	// throughput with concurrent clients (where the 2 cores are shared with the plugin).
	// Plugin and in-process alternate over rounds, and each figure is the median of
	// the rounds': a burst of noise on the machine then spoils one round, not a side.
	var hps, hds, cps, cds []httpResult
	var wps, wds []float64
	for r := 0; r < rounds; r++ {
		hp, err := httpLoad(pluginURL+"/fiberkit/tm/ping", requests/2/rounds, 1)
		if err != nil {
			return fmt.Errorf("plugin route: %w", err)
		}
		hd, err := httpLoad(directURL+"/ping", requests/2/rounds, 1)
		if err != nil {
			return fmt.Errorf("direct route: %w", err)
		}
		cp, err := httpLoad(pluginURL+"/fiberkit/tm/ping", requests/rounds, concurrency)
		if err != nil {
			return fmt.Errorf("plugin route: %w", err)
		}
		cd, err := httpLoad(directURL+"/ping", requests/rounds, concurrency)
		if err != nil {
			return fmt.Errorf("direct route: %w", err)
		}
		wp, err := wsLoad(strings.Replace(pluginURL, "http", "ws", 1)+"/fiberkit/tm/ws", messages/rounds)
		if err != nil {
			return fmt.Errorf("bridge: %w", err)
		}
		wd, err := wsLoad(strings.Replace(directURL, "http", "ws", 1)+"/ws", messages/rounds)
		if err != nil {
			return fmt.Errorf("direct websocket: %w", err)
		}
		hps, hds, cps, cds = append(hps, hp), append(hds, hd), append(cps, cp), append(cds, cd)
		wps, wds = append(wps, wp), append(wds, wd)
	}
	hp, hd, cp, cd := medianResult(hps), medianResult(hds), medianResult(cps), medianResult(cds)
	wp, wd := median(wps), median(wds)

	scrapeMS, counted, err := scrapeLoad(kit, 50)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if sent := rounds * (2*warmUp + requests/2/rounds + requests/rounds); counted != float64(sent) {
		return fmt.Errorf("metrics: %v requests to /ping counted, %d sent", counted, sent)
	}

	fmt.Printf("%-30s %12s %10s %10s\n", "HTTP GET /ping", "req/s", "p50 ms", "p99 ms")
	fmt.Printf("%-30s %12.0f %10.3f %10.3f\n", "through plugin, 1 client", hp.rps, hp.p50, hp.p99)
	fmt.Printf("%-30s %12.0f %10.3f %10.3f\n", "in-process, 1 client", hd.rps, hd.p50, hd.p99)
	fmt.Printf("%-30s %12.0f %10.3f %10.3f\n", fmt.Sprintf("through plugin, %d clients", concurrency), cp.rps, cp.p50, cp.p99)
	fmt.Printf("%-30s %12.0f %10.3f %10.3f\n", fmt.Sprintf("in-process, %d clients", concurrency), cd.rps, cd.p50, cd.p99)
	fmt.Printf("p50 overhead of the plugin (1 client): %.3f ms (medians of %d rounds)\n\n", hp.p50-hd.p50, rounds)
	fmt.Printf("%-22s %12s\n", "WebSocket echo", "msgs/s")
	fmt.Printf("%-22s %12.0f\n", "through bridge", wp)
	fmt.Printf("%-22s %12.0f\n", "direct", wd)
	fmt.Printf("bridge / direct: %.2f\n\n", wp/wd)
	fmt.Printf("metrics scrape p50: %.3f ms (%v requests to /ping counted)\n", scrapeMS, counted)
	line, _ := json.Marshal(map[string]float64{
		"http_plugin_rps": round(hp.rps), "http_direct_rps": round(hd.rps),
		"http_plugin_p50_ms": round(hp.p50), "http_direct_p50_ms": round(hd.p50), "http_p50_overhead_ms": round(hp.p50 - hd.p50),
		"http_plugin_p99_ms": round(hp.p99), "http_direct_p99_ms": round(hd.p99),
		"http_plugin_rps_concurrent": round(cp.rps), "http_direct_rps_concurrent": round(cd.rps),
		"http_plugin_p50_ms_concurrent": round(cp.p50), "http_direct_p50_ms_concurrent": round(cd.p50),
		"ws_bridge_msgs_per_s": round(wp), "ws_direct_msgs_per_s": round(wd), "ws_ratio": round(wp / wd),
		"metrics_scrape_p50_ms": round(scrapeMS),
	})
	fmt.Println(string(line))
	return nil
}

// medianResult is the median of each figure of rs, taken separately.
func medianResult(rs []httpResult) httpResult {
	var rps, p50, p99 []float64
	for _, r := range rs {
		rps, p50, p99 = append(rps, r.rps), append(p50, r.p50), append(p99, r.p99)
	}
	return httpResult{rps: median(rps), p50: median(p50), p99: median(p99)}
}

func median(xs []float64) float64 {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return xs[len(xs)/2]
}

func round(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

func serve(app *fiber.App) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() { _ = app.Listener(ln) }()
	return "http://" + ln.Addr().String(), nil
}

type httpResult struct{ rps, p50, p99 float64 }

// warmUp is how many requests httpLoad sends before it measures.
const warmUp = 500

// httpLoad sends n GETs from c keep-alive clients and records each latency.
func httpLoad(u string, n, c int) (httpResult, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c, MaxConnsPerHost: c}}
	get := func() error {
		resp, err := client.Get(u)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	for i := 0; i < warmUp; i++ {
		if err := get(); err != nil {
			return httpResult{}, err
		}
	}
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	var firstErr error
	var mu sync.Mutex
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	start := time.Now()
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t := time.Now()
				if err := get(); err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				lat[i] = time.Since(t)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return httpResult{}, firstErr
	}
	total := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return httpResult{rps: float64(n) / total.Seconds(), p50: ms(lat[n/2]), p99: ms(lat[n*99/100])}, nil
}

// wsLoad pipelines n 64-byte messages over one connection and counts the echoes.
func wsLoad(u string, n int) (float64, error) {
	conn, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	msg := []byte(strings.Repeat("m", 64))
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		for i := 0; i < n; i++ {
			if _, _, err := conn.ReadMessage(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := 0; i < n; i++ {
		if err := conn.WriteMessage(websocket.TextMessage, msg); err != nil {
			return 0, err
		}
	}
	if err := <-done; err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// scrapeLoad scrapes the kit's metrics n times and returns the median scrape time
// (ms) and how many requests to /ping the last scrape counted.
func scrapeLoad(kit *host.Kit, n int) (float64, float64, error) {
	h := kit.MetricsHTTPHandler()
	lat := make([]time.Duration, n)
	var last string
	for i := range lat {
		rec := httptest.NewRecorder()
		t := time.Now()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		lat[i] = time.Since(t)
		if rec.Code != http.StatusOK {
			return 0, 0, fmt.Errorf("scrape: status %d", rec.Code)
		}
		last = rec.Body.String()
	}
	slices.Sort(lat)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(last))
	if err != nil {
		return 0, 0, fmt.Errorf("parse scrape: %w", err)
	}
	counted := 0.0
	for _, m := range fams["fiberkit_http_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "route" && l.GetValue() == "/ping" {
				counted += m.GetCounter().GetValue()
			}
		}
	}
	return float64(lat[n/2]) / float64(time.Millisecond), counted, nil
}
