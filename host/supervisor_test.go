package host_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
)

// startSupervised starts a site with module tm enabled and the given health interval.
// Its cleanup does not hang the test binary if Close does.
func startSupervised(t *testing.T, healthInterval time.Duration) *site {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tm", "module.yaml")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(fmt.Sprintf(moduleManifest, "tm", "tm", testBinary)), 0o644); err != nil {
		t.Fatal(err)
	}
	db := pgtest.NewDatabase(t)
	logs := &syncBuffer{}
	checkPluginRaces(t, logs)
	ctx := context.Background()
	kit, err := host.New(ctx, host.Config{
		DatabaseURL:    db,
		Manifests:      []string{p},
		AdminAuth:      basicAuth("admin", "secret-admin-pw"),
		HealthInterval: healthInterval,
		Logger:         slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("host.New: %v", err)
	}
	t.Cleanup(func() {
		if d := closeWithin(kit, 30*time.Second); d < 0 {
			t.Error("Kit.Close still blocked after 30s")
		}
	})
	if err := kit.SetEnabled(ctx, "tm", true, "test"); err != nil {
		t.Fatal(err)
	}
	s := serveKit(t, kit, db, logs)
	s.waitState(t, "tm", host.StateRunning)
	return s
}

// closeWithin closes kit and returns how long it took, or -1 if it did not return
// within d.
func closeWithin(kit *host.Kit, d time.Duration) time.Duration {
	start := time.Now()
	done := make(chan struct{})
	go func() {
		_ = kit.Close()
		close(done)
	}()
	select {
	case <-done:
		return time.Since(start)
	case <-time.After(d):
		return -1
	}
}

// freeze SIGSTOPs the plugin process pid; the test's cleanup kills it should the
// host not have.
func freeze(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(cmd), "testmodule") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// waitGone waits up to d for process pid to be gone (killed and reaped).
func waitGone(t *testing.T, pid int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for syscall.Kill(pid, 0) != syscall.ESRCH {
		if time.Now().After(deadline) {
			t.Fatalf("plugin process %d still exists after %s", pid, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A stopped (hung) plugin fails its health check within seconds: it is killed and a
// new process takes over, with the reason in the module's status.
func TestHungPluginIsKilledAndRestarted(t *testing.T) {
	s := startSupervised(t, 200*time.Millisecond)
	old := s.waitState(t, "tm", host.StateRunning).PID
	freeze(t, old)

	deadline := time.Now().Add(15 * time.Second)
	var st host.ModuleStatus
	for {
		st, _ = s.kit.Module("tm")
		if st.State == host.StateRunning && st.PID != 0 && st.PID != old {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hung plugin not replaced after 15s: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitGone(t, old, 5*time.Second)
	if st.Restarts != 1 || !strings.Contains(st.LastError, "health check") {
		t.Errorf("status after restart: restarts %d, last error %q", st.Restarts, st.LastError)
	}
	if code, body := get(t, s.url+"/fiberkit/tm/ping"); code != 200 || body != "pong" {
		t.Errorf("after restart: %d %q", code, body)
	}
	if d := closeWithin(s.kit, 10*time.Second); d < 0 {
		t.Fatal("Close blocked")
	}
}

// With a plugin hung and no health check due, disabling the module answers 404 at
// once, the process is killed when it ignores the shutdown request, and so is it on
// Close.
func TestDisableAndCloseWithHungPlugin(t *testing.T) {
	s := startSupervised(t, time.Hour)
	pid := s.waitState(t, "tm", host.StateRunning).PID
	freeze(t, pid)

	start := time.Now()
	if err := s.kit.SetEnabled(context.Background(), "tm", false, "test"); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, s.url+"/fiberkit/tm/ping"); code != 404 {
		t.Fatalf("right after disabling: %d, want 404", code)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("disabling took %s", d)
	}
	waitGone(t, pid, 10*time.Second)
	s.waitState(t, "tm", host.StateDisabled)

	// Again, hung at Close.
	if err := s.kit.SetEnabled(context.Background(), "tm", true, "test"); err != nil {
		t.Fatal(err)
	}
	pid = s.waitState(t, "tm", host.StateRunning).PID
	freeze(t, pid)
	d := closeWithin(s.kit, 10*time.Second)
	if d < 0 {
		t.Fatal("Close still blocked after 10s with a hung plugin")
	}
	t.Logf("Close took %s", d)
	waitGone(t, pid, 5*time.Second)
}

// A module busy in a slow Configure is disabled at once: its routes answer 404 and
// the configure is abandoned, the process stopped.
func TestDisableDuringSlowConfigure(t *testing.T) {
	s := startSupervised(t, 200*time.Millisecond)
	pid := s.waitState(t, "tm", host.StateRunning).PID
	ctx := context.Background()
	if err := s.kit.Settings().Set(ctx, "tm", map[string]string{"greeting": "sleep:20s"}, "test"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the supervisor is now waiting on Configure
	if err := s.kit.SetEnabled(ctx, "tm", false, "test"); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, s.url+"/fiberkit/tm/ping"); code != 404 {
		t.Fatalf("right after disabling: %d, want 404", code)
	}
	start := time.Now()
	s.waitState(t, "tm", host.StateDisabled)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stopping took %s", d)
	}
	waitGone(t, pid, 5*time.Second)
	if st, _ := s.kit.Module("tm"); st.Restarts != 0 || st.Enabled {
		t.Errorf("status: %+v", st)
	}
}
