package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/fiberkit/fiberkit/bench/internal/measure"
	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/plugins/sync/syncweb"
)

// hostProc is the host child process (this program re-executed with -host). It
// reads commands on stdin and answers one line each on stdout.
type hostProc struct {
	*measure.Child
	url string // the host app's base URL
}

func startHost(dbURL, pluginBin, root, profiles, pluginEnv string) (*hostProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c, err := measure.StartChild(exec.Command(self, "-host", dbURL, "-plugin", pluginBin, "-root", root, "-profile", profiles, "-plugin-env", pluginEnv))
	if err != nil {
		return nil, err
	}
	h := &hostProc{Child: c, url: c.Ready}
	if !strings.HasPrefix(h.url, "http://") {
		h.stop()
		return nil, fmt.Errorf("host did not start: %s", h.url)
	}
	return h, nil
}

func (h *hostProc) ask(cmd string) (string, error) {
	line, err := h.Ask(cmd)
	if err == nil && strings.HasPrefix(line, "error") {
		err = fmt.Errorf("host: %s", line)
	}
	return line, err
}

// hostStats is what the host child reports of itself and of its Sync plugin.
type hostStats struct {
	HostPID   int `json:"host_pid"`
	PluginPID int `json:"plugin_pid"`
	// Goroutines, heap in use and goroutine stacks of each process, from the
	// kit's metrics (the plugin's gathered from its process at scrape time).
	HostGoroutines   float64 `json:"host_goroutines"`
	PluginGoroutines float64 `json:"plugin_goroutines"`
	HostHeap         float64 `json:"host_heap_inuse"`
	PluginHeap       float64 `json:"plugin_heap_inuse"`
	HostStack        float64 `json:"host_stack_inuse"`
	PluginStack      float64 `json:"plugin_stack_inuse"`
	// Subscribers is the events shape's readers: polls waiting in the plugin.
	Subscribers int `json:"subscribers"`
	// Restarts counts the plugin's restarts; LastError says why it last failed.
	Restarts  int    `json:"restarts"`
	LastError string `json:"last_error,omitempty"`
	// ListError is list_shapes's error (Subscribers is then -1).
	ListError string `json:"list_error,omitempty"`
}

func (h *hostProc) stats() (hostStats, error) {
	var s hostStats
	line, err := h.ask("stats")
	if err == nil {
		err = json.Unmarshal([]byte(line), &s)
	}
	return s, err
}

func (h *hostProc) stop() { h.Stop() }

// runHost is the child: a host app embedding the kit with the Sync module
// enabled and live sync on (from its config file, as an app developer sets them),
// serving the events table's shape at /shape with syncweb, on a free port. It
// prints its URL once live capture runs, then answers stdin's commands: "stats"
// (a hostStats line) and "heap <file>" (writes a heap profile of this process).
// extraEnv (comma-separated K=V) is added to the plugin's environment. With
// profiles set it writes CPU profiles of itself and of the plugin, over
// their lifetimes, there (host.pprof, plugin.pprof).
func runHost(dbURL, pluginBin, root, profiles, extraEnv string) error {
	raiseFDLimit()
	ctx := context.Background()
	var pluginEnv []string
	if extraEnv != "" {
		pluginEnv = strings.Split(extraEnv, ",")
	}
	profEnv, stopProfile, err := measure.ProfileHost(profiles)
	if err != nil {
		return err
	}
	defer stopProfile()
	pluginEnv = append(pluginEnv, profEnv...)
	kit, stopKit, err := measure.SyncHost(ctx, root, pluginBin, dbURL, "      live: true\n", pluginEnv, logger())
	if err != nil {
		return err
	}
	defer stopKit()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	app := fiber.New(host.FiberConfig())
	kit.Mount(app)
	app.Get("/shape", syncweb.Shape(kit, syncapi.ShapeSpec{Table: "events"}))
	go func() { _ = app.Listener(ln) }()
	defer func() { _ = app.Shutdown() }()

	call := func(op string, out any) error {
		b, err := kit.Call(ctx, "admin", syncapi.ModuleID, op, []byte(`{}`))
		if err != nil {
			return err
		}
		return json.Unmarshal(b, out)
	}
	// Wait until this replica captures: before that a shape has no changes to serve.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var st syncapi.LiveStatus
		err := call(syncapi.OpLiveStatus, &st)
		if err == nil && st.Enabled && st.Capturing {
			break
		}
		if time.Now().After(deadline) {
			fmt.Printf("error: live capture not running within 60 s: %+v %v\n", st, err)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Println("http://" + ln.Addr().String())

	metrics := kit.MetricsHTTPHandler()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "stats":
			st, _ := kit.Module(syncapi.ModuleID)
			s := hostStats{HostPID: os.Getpid(), PluginPID: st.PID, Restarts: st.Restarts, LastError: st.LastError}
			rec := httptest.NewRecorder()
			metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			for _, line := range strings.Split(rec.Body.String(), "\n") {
				name, v, ok := metricLine(line)
				if !ok {
					continue
				}
				switch name {
				case "go_goroutines":
					s.HostGoroutines = v
				case `go_goroutines{module="sync"}`:
					s.PluginGoroutines = v
				case "go_memstats_heap_inuse_bytes":
					s.HostHeap = v
				case `go_memstats_heap_inuse_bytes{module="sync"}`:
					s.PluginHeap = v
				case "go_memstats_stack_inuse_bytes":
					s.HostStack = v
				case `go_memstats_stack_inuse_bytes{module="sync"}`:
					s.PluginStack = v
				}
			}
			var shapes []syncapi.ShapeInfo
			if err := call(syncapi.OpListShapes, &shapes); err != nil {
				s.Subscribers, s.ListError = -1, err.Error()
			}
			for _, sh := range shapes {
				if sh.Shape.Table == "events" {
					s.Subscribers += sh.Subscribers
				}
			}
			b, _ := json.Marshal(s)
			fmt.Println(string(b))
		case "heap":
			runtime.GC()
			f, err := os.Create(arg)
			if err == nil {
				err = pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
			if err != nil {
				fmt.Println("error: heap profile:", err)
				continue
			}
			fmt.Println("ok")
		default:
			fmt.Println("error: unknown command")
		}
	}
	return nil
}

// logger discards the kit's log unless SHAPEBENCH_LOG is set: then warnings and
// errors (the plugin's included) go to stderr.
func logger() *slog.Logger {
	if os.Getenv("SHAPEBENCH_LOG") == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// metricLine splits a line of the Prometheus text format into the series (name
// and labels) and its value.
func metricLine(line string) (string, float64, bool) {
	if line == "" || line[0] == '#' {
		return "", 0, false
	}
	i := strings.LastIndexByte(line, ' ')
	if i < 0 {
		return "", 0, false
	}
	v, err := strconv.ParseFloat(line[i+1:], 64)
	return line[:i], v, err == nil
}
