// Package sdk is what a FiberKit module author imports. A module is a set of optional
// handlers — HTTP routes as a plain http.Handler, WebSocket handlers, typed operations
// and streaming ones, a settings callback — served as a go-plugin process in a few
// lines:
//
//	func main() {
//		sdk.Serve(sdk.Module{
//			HTTP:       mux,
//			WebSockets: map[string]sdk.WebSocketHandler{"/ws": echo},
//			Operations: sdk.Operations{"greet": sdk.Op(greet)},
//			Streams:    sdk.Streams{"watch": sdk.StreamOp(watch)},
//			Configure:  func(ctx context.Context, env *sdk.Env) error { ...; return nil },
//			Metrics:    reg, // a prometheus.Registry with the module's own collectors
//		})
//	}
//
// The host process starts the binary; run by hand it says so and exits.
package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-plugin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fiberkit/fiberkit/sdk/transport"
)

// Module lists a module's handlers. Every field is optional: a module without
// WebSockets simply has none, and the host treats the missing capability as absent.
type Module struct {
	// ID and Version are reported to the host, which checks them against the manifest.
	ID      string
	Version string
	// HTTP serves the module's routes. Paths are relative to the module's mount
	// prefix; route parameters are read with Param.
	HTTP http.Handler
	// WebSockets maps a manifest WebSocket path to its handler.
	WebSockets map[string]WebSocketHandler
	// Operations are the named operations other modules and the SDK call.
	Operations Operations
	// Streams are the named streaming operations: each sends a series of values
	// (Host.CallStream, host.Kit.CallStream) for as long as it runs. A name is
	// either an operation or a stream, not both.
	Streams Streams
	// Configure is called on start and on every settings change, in order of revision.
	Configure func(ctx context.Context, env *Env) error
	// Logger receives the module's own logs; nil means Logger().
	Logger *slog.Logger
	// Metrics holds the module's own Prometheus metrics, usually a
	// prometheus.NewRegistry() its collectors are registered on. The host gathers
	// them through the plugin channel when it is scraped and adds the module label
	// (a label of the module's own called "module" becomes "exported_module"). The
	// process's Go runtime and process metrics are reported whether or not it is set.
	Metrics prometheus.Gatherer
}

// Serve runs the module as a plugin process until the host stops it. A process
// whose host is gone — killed, or exited without stopping its plugins — exits too,
// within a fraction of a second: it would otherwise keep its database pools and
// schedules running beside the next host's plugins.
func Serve(m Module) {
	if m.Logger == nil {
		m.Logger = Logger()
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go watchHost(ctx, hostCheckInterval, os.Getppid, func(was, now int) {
		m.Logger.Error("host process gone; exiting", "host_pid", was, "parent_pid", now)
		os.Exit(1)
	})
	if path := os.Getenv(CPUProfileEnv); path != "" {
		if stopProfile, err := startCPUProfile(path); err != nil {
			m.Logger.Warn("cpu profile not started", "path", path, "err", err)
		} else {
			defer stopProfile()
		}
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  transport.Handshake(),
		VersionedPlugins: transport.ServerPlugins(newAdapter(m)),
		GRPCServer:       transport.NewServer,
	})
}

// CPUProfileEnv names an environment variable that, when the host passes it to the
// module process (host.Config.PluginEnv), makes Serve write a CPU profile of the
// process to that file until the host stops the module.
const CPUProfileEnv = "FIBERKIT_CPUPROFILE"

func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// Logger returns a logger writing JSON lines to stderr in the form go-plugin
// re-emits on the host under the module's name.
func Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				a.Key = "@timestamp"
			case slog.LevelKey:
				a = slog.String("@level", levelName(a.Value.Any()))
			case slog.MessageKey:
				a.Key = "@message"
			}
			return a
		},
	}))
}

func levelName(v any) string {
	l, _ := v.(slog.Level)
	switch {
	case l >= slog.LevelError:
		return "error"
	case l >= slog.LevelWarn:
		return "warn"
	case l >= slog.LevelInfo:
		return "info"
	}
	return "debug"
}

// Env is what the host tells the module on every Configure.
type Env struct {
	ModuleID    string
	Revision    int64
	Settings    Settings
	DatabaseURL string
	PublicURL   string
	// MountPrefix is where the host mounts the module's public routes, e.g. "/m/sync".
	MountPrefix string
	// AdminPrefix is where the host mounts the module's admin routes.
	AdminPrefix string
	HostVersion string
	// Host reaches the host: settings, other modules' operations, publishing, audit.
	Host *Host
}

// adapter turns a Module into a transport.Module.
type adapter struct {
	m       Module
	log     *slog.Logger
	runtime *prometheus.Registry // the process's Go runtime and process collectors

	gatherErr atomic.Pointer[string] // the last metrics gathering error logged

	mu      sync.Mutex // serialises Configure calls and guards lastRev
	lastRev int64
}

func newAdapter(m Module) *adapter {
	return &adapter{m: m, log: m.Logger, runtime: runtimeMetrics()}
}

func (a *adapter) Describe(context.Context) (transport.Description, error) {
	ops := make([]string, 0, len(a.m.Operations)+len(a.m.Streams))
	for name := range a.m.Operations {
		ops = append(ops, name)
	}
	for name := range a.m.Streams {
		if _, dup := a.m.Operations[name]; !dup {
			ops = append(ops, name)
		}
	}
	sort.Strings(ops)
	return transport.Description{ID: a.m.ID, Version: a.m.Version, HTTP: a.m.HTTP != nil, WebSocket: len(a.m.WebSockets) > 0, Operations: ops}, nil
}

func (a *adapter) Configure(ctx context.Context, c transport.Configuration) (err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c.Revision != 0 && c.Revision < a.lastRev {
		return nil // an older revision arriving late changes nothing
	}
	a.lastRev = c.Revision
	if a.m.Configure == nil {
		return nil
	}
	defer a.recoverInto(&err, "configure")
	var host *Host
	if c.Host != nil {
		host = &Host{c: c.Host}
	}
	return a.m.Configure(ctx, &Env{
		ModuleID: c.ModuleID, Revision: c.Revision, Settings: Settings(c.Settings), DatabaseURL: c.DatabaseURL,
		PublicURL: c.PublicURL, MountPrefix: c.MountPrefix, AdminPrefix: c.AdminPrefix, HostVersion: c.HostVersion, Host: host,
	})
}

func (a *adapter) Call(ctx context.Context, c transport.Call) (out []byte, err error) {
	op, ok := a.m.Operations[c.Operation]
	if !ok {
		return nil, transport.Errorf(transport.CodeUnknownOperation, "no operation %q", c.Operation)
	}
	defer a.recoverInto(&err, "operation "+c.Operation)
	return op.call(withCaller(ctx, Caller(c.Caller)), c.Payload)
}

// recoverInto turns a panic in module code into an internal error, so one bad
// handler costs one request, not the process.
func (a *adapter) recoverInto(err *error, what string) {
	if r := recover(); r != nil {
		a.logPanic(what, r)
		*err = transport.Errorf(transport.CodeInternal, "%s panicked: %v", what, r)
	}
}

func (a *adapter) logPanic(what string, r any) {
	a.log.Error("panic", "in", what, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
}
