package testsupport

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
)

// Site is a host app serving on a free loopback port for one test.
type Site struct {
	Kit  *host.Kit
	App  *fiber.App
	URL  string     // http://127.0.0.1:port
	DB   string     // the kit's database URL
	Logs *LogBuffer // everything the host and its plugins logged
}

// StartSite runs a host for the test. config returns the kit's configuration given
// the site's URL (the port is taken first, so the configuration can name it). An
// empty DatabaseURL gets a fresh database and a nil Logger one writing to the test's
// log and to Site.Logs. When the test ends the app is shut down and the kit closed —
// an error if Close takes over 30 s — and the test fails if a plugin reported a data
// race.
func StartSite(t *testing.T, config func(url string) host.Config) *Site {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Site{URL: "http://" + ln.Addr().String(), Logs: &LogBuffer{}}
	cfg := config(s.URL)
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = pgtest.NewDatabase(t)
	}
	if cfg.Logger == nil {
		cfg.Logger = Logger(t, s.Logs)
	}
	s.DB = cfg.DatabaseURL
	// Registered before the kit's cleanup, so run after it: once Close returned the
	// plugins' stderr has been read to the end.
	FailOnRace(t, s.Logs)
	kit, err := host.New(context.Background(), cfg)
	if err != nil {
		ln.Close()
		t.Fatalf("host.New: %v", err)
	}
	s.Kit = kit
	t.Cleanup(func() {
		if CloseWithin(kit, 30*time.Second) < 0 {
			t.Error("Kit.Close still blocked after 30s")
		}
	})
	s.App = fiber.New(host.FiberConfig())
	kit.Mount(s.App)
	go func() { _ = s.App.Listener(ln) }()
	t.Cleanup(func() { _ = s.App.ShutdownWithTimeout(5 * time.Second) })
	return s
}

// CloseWithin closes kit and returns how long it took, or -1 if it did not return
// within d (it is then left closing in the background).
func CloseWithin(kit *host.Kit, d time.Duration) time.Duration {
	start := time.Now()
	done := make(chan struct{})
	go func() { _ = kit.Close(); close(done) }()
	select {
	case <-done:
		return time.Since(start)
	case <-time.After(d):
		return -1
	}
}

// RaceReport is how the race detector starts a report. A plugin's report goes to its
// stderr, which the host copies into its log.
const RaceReport = "WARNING: DATA RACE"

// FailOnRace fails the test, when it ends, if logs hold a data race report. Call it
// before creating the kit whose log is logs: cleanups run last-in first-out, so the
// check then runs after the kit is closed.
func FailOnRace(t testing.TB, logs *LogBuffer) {
	t.Helper()
	t.Cleanup(func() {
		if l := logs.String(); strings.Contains(l, RaceReport) {
			i := strings.Index(l, RaceReport)
			t.Errorf("a plugin process reported a data race:\n%s", l[i:min(len(l), i+4000)])
		}
	})
}

// Logger returns a debug-level text logger writing to the test's log and to logs.
func Logger(t testing.TB, logs *LogBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// LogBuffer collects output (logs, a command's stdout) that goroutines write while
// the test reads it.
type LogBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write appends p.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Serve serves app on a free loopback port until the test ends and returns its URL.
func Serve(t testing.TB, app *fiber.App) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() { _ = app.ShutdownWithTimeout(5 * time.Second) })
	return "http://" + ln.Addr().String()
}
