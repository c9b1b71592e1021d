package main_test

import (
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/internal/testsupport"
)

func runPull(t *testing.T, args ...string) (int, string, time.Duration) {
	t.Helper()
	cmd := exec.Command(testsupport.Binary(t, pullPackage), args...)
	var out testsupport.LogBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	return exitCode(t, err), out.String(), time.Since(start)
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

func TestCommandLineClientExitCodes(t *testing.T) {
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{})
	pull := func(args ...string) (int, string) {
		t.Helper()
		code, out, _ := runPull(t, args...)
		return code, out
	}
	if code, out := pull("-url", a.url); code != 2 {
		t.Fatalf("missing flags: exit %d\n%s", code, out)
	}
	if code, out := pull("-url", a.url, "-code", "NOPE2345", "-db", b.db); code != 3 || !strings.Contains(out, "invalid_code") {
		t.Fatalf("bad code: exit %d\n%s", code, out)
	}
	code, out := pull("-url", a.url, "-code", a.newCode(t).Code, "-db", b.db, "-tables", "customers,products", "-create-missing")
	if code != 0 || !strings.Contains(out, "customers: 2000/2000 rows") || !strings.Contains(out, "products: 300/300 rows") {
		t.Fatalf("pull: exit %d\n%s", code, out)
	}
	// Records the receiver refuses: exit 1 with the keys listed.
	b.exec(t, `TRUNCATE customers CASCADE`)
	b.exec(t, `ALTER TABLE customers ADD CONSTRAINT no_vip CHECK (NOT ('vip' = ANY (tags)))`)
	code, out = pull("-url", a.url, "-code", a.newCode(t).Code, "-db", b.db, "-tables", "customers")
	if code != 1 || !strings.Contains(out, "! key id=3: new row for relation") {
		t.Fatalf("refused records: exit %d\n%s", code, out)
	}
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
	a.disableSync(t)
	if code, out, _ := runPull(t, "-url", a.url, "-code", code, "-db", b.db); code != 5 || !strings.Contains(out, "HTTP 404") {
		t.Fatalf("disabled sender: exit %d\n%s", code, out)
	}
}

// Ctrl-C ends the command with 130.
func TestCommandLineInterruptExits130(t *testing.T) {
	a := startSite(t, siteOptions{mode: "require_approval"})
	b := startSite(t, siteOptions{})
	cmd := exec.Command(testsupport.Binary(t, pullPackage), "-url", a.url, "-code", a.newCode(t).Code, "-db", b.db)
	var out testsupport.LogBuffer
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
