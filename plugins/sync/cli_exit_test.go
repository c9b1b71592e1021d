package main_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var pullBin struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// pullBinary builds fiberkit-pull once per test binary.
func pullBinary(t *testing.T) string {
	t.Helper()
	pullBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "fiberkit-pull-")
		if err != nil {
			pullBin.err = err
			return
		}
		pullBin.path = filepath.Join(dir, "fiberkit-pull")
		pullBin.out, pullBin.err = exec.Command("go", "build", "-o", pullBin.path, "github.com/fiberkit/fiberkit/plugins/sync/cmd/fiberkit-pull").CombinedOutput()
	})
	if pullBin.err != nil {
		t.Fatalf("build: %v\n%s", pullBin.err, pullBin.out)
	}
	return pullBin.path
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

func runPull(t *testing.T, args ...string) (int, string, time.Duration) {
	t.Helper()
	cmd := exec.Command(pullBinary(t), args...)
	var out logBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	return exitCode(t, err), out.String(), time.Since(start)
}

func TestCommandLineExitCodesForConnectionFailures(t *testing.T) {
	a := startSite(t, siteOptions{})
	b := startSite(t, siteOptions{})
	// No Sync at that address (HTTP 404), nothing listening: could not connect.
	if code, out, _ := runPull(t, "-url", a.url+"/nowhere", "-code", "ABCD2345", "-db", b.db); code != 5 || !strings.Contains(out, "HTTP 404") {
		t.Fatalf("HTTP 404: exit %d\n%s", code, out)
	}
	if code, out, _ := runPull(t, "-url", "http://127.0.0.1:1", "-code", "ABCD2345", "-db", b.db); code != 5 || !strings.Contains(out, "could not connect") {
		t.Fatalf("nothing listening: exit %d\n%s", code, out)
	}
	// The local database: unreachable is not bad usage; a malformed URL is.
	if code, out, _ := runPull(t, "-url", a.url, "-code", "ABCD2345", "-db", "postgres://fk@127.0.0.1:1/x?connect_timeout=5"); code != 6 || !strings.Contains(out, "local database") {
		t.Fatalf("unreachable local database: exit %d\n%s", code, out)
	}
	if code, out, _ := runPull(t, "-url", a.url, "-code", "ABCD2345", "-db", "postgres://%zz"); code != 2 {
		t.Fatalf("malformed -db: exit %d\n%s", code, out)
	}
	// The help lists the exit codes.
	if code, out, _ := runPull(t, "-help"); code != 0 || !strings.Contains(out, "5    could not connect") || !strings.Contains(out, "130  interrupted") {
		t.Fatalf("-help: exit %d\n%s", code, out)
	}

	// A sender whose Sync module is disabled answers 404: could not connect (5).
	code := a.newCode(t).Code
	cfg, _ := os.ReadFile(a.cfg)
	if err := os.WriteFile(a.cfg, []byte(strings.Replace(string(cfg), "enabled: true\n    settings", "enabled: false\n    settings", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for st, _ := a.kit.Module("sync"); st.Enabled; st, _ = a.kit.Module("sync") {
		if time.Now().After(deadline) {
			t.Fatal("sync still enabled")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, out, _ := runPull(t, "-url", a.url, "-code", code, "-db", b.db); code != 5 || !strings.Contains(out, "HTTP 404") {
		t.Fatalf("disabled sender: exit %d\n%s", code, out)
	}
}

// Ctrl-C ends the command with 130.
func TestCommandLineInterruptExits130(t *testing.T) {
	a := startSite(t, siteOptions{mode: "require_approval"})
	b := startSite(t, siteOptions{})
	cmd := exec.Command(pullBinary(t), "-url", a.url, "-code", a.newCode(t).Code, "-db", b.db)
	var out logBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), "waiting for an admin") {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("never waited for approval:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	if code := exitCode(t, cmd.Wait()); code != 130 || !strings.Contains(out.String(), "interrupted") {
		t.Fatalf("Ctrl-C: exit %d\n%s", code, out.String())
	}
}

// A sender that goes silent mid-transfer ends the command (exit 4) within its
// -idle-timeout.
func TestCommandLineIdleTimeout(t *testing.T) {
	a := bigSender(t)
	b := startSite(t, siteOptions{})
	proxy := newFreezingProxy(t, strings.TrimPrefix(a.url, "http://"), 300<<10)
	code, out, took := runPull(t, "-url", "http://"+proxy.ln.Addr().String(), "-code", a.newCode(t).Code, "-db", b.db,
		"-tables", "big", "-create-missing", "-batch", "1000", "-idle-timeout", "2s")
	if !proxy.frozen.Load() {
		t.Fatalf("the transfer ended before the network froze: exit %d\n%s", code, out)
	}
	if code != 4 || !strings.Contains(out, "nothing came from the sender") || !strings.Contains(out, "big: FAILED after") {
		t.Fatalf("silent sender: exit %d after %s\n%s", code, took, out)
	}
	if took > 20*time.Second {
		t.Fatalf("the command took %s to notice a silent sender (idle timeout 2s)", took)
	}
}
