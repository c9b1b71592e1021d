package host_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/internal/testsupport"
)

func processAlive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// startSupervised starts a site with module tm enabled and the given health interval.
// Its cleanup does not hang the test binary if Close does.
func startSupervised(t *testing.T, healthInterval time.Duration) *site {
	t.Helper()
	return startSite(t, kitOptions{enabled: []string{"tm"}, healthInterval: healthInterval})
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

func TestDisableStopsProcessAndRoutesThenEnableBringsThemBack(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	st := s.waitState(t, "tm", host.StateRunning)
	pid := st.PID
	if !processAlive(pid) {
		t.Fatalf("plugin pid %d not alive", pid)
	}
	ctx := context.Background()
	if err := s.kit.SetEnabled(ctx, "tm", false, "test"); err != nil {
		t.Fatal(err)
	}
	s.waitState(t, "tm", host.StateDisabled)
	testsupport.Eventually(t, "plugin process gone", func() bool { return !processAlive(pid) })
	if code, _ := testsupport.Get(t, s.url+"/fiberkit/tm/ping"); code != 404 {
		t.Fatalf("disabled module route answered %d, want 404", code)
	}
	if err := s.kit.SetEnabled(ctx, "tm", true, "test"); err != nil {
		t.Fatal(err)
	}
	st = s.waitState(t, "tm", host.StateRunning)
	if st.PID == pid || !processAlive(st.PID) {
		t.Fatalf("re-enabled module has pid %d (old %d)", st.PID, pid)
	}
	if code, body := testsupport.Get(t, s.url+"/fiberkit/tm/ping"); code != 200 || body != "pong" {
		t.Fatalf("after re-enable: %d %q", code, body)
	}
}

func TestKilledPluginIsRestarted(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	st := s.waitState(t, "tm", host.StateRunning)
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, "restart", func() bool {
		now, _ := s.kit.Module("tm")
		return now.State == host.StateRunning && now.PID != st.PID && now.Restarts == st.Restarts+1
	})
	if code, body := testsupport.Get(t, s.url+"/fiberkit/tm/ping"); code != 200 || body != "pong" {
		t.Fatalf("after restart: %d %q", code, body)
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
	if code, body := testsupport.Get(t, s.url+"/fiberkit/tm/ping"); code != 200 || body != "pong" {
		t.Errorf("after restart: %d %q", code, body)
	}
	if d := testsupport.CloseWithin(s.kit, 10*time.Second); d < 0 {
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
	if code, _ := testsupport.Get(t, s.url+"/fiberkit/tm/ping"); code != 404 {
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
	d := testsupport.CloseWithin(s.kit, 10*time.Second)
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
	if code, _ := testsupport.Get(t, s.url+"/fiberkit/tm/ping"); code != 404 {
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
