package host_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/internal/testsupport"
)

// orphanHelperEnv makes the test binary, re-run as a child, act as a host app.
const orphanHelperEnv = "FIBERKIT_ORPHAN_HELPER"

// A host that dies without Close — SIGKILL, SIGTERM without a handler, os.Exit —
// leaves no plugin process behind: each is gone within a few seconds (the
// parent-death signal on Linux, and the SDK noticing its parent changed).
func TestPluginsDieWithTheirHost(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	bin := moduleBinary(t, "testmodule")
	for _, how := range []string{"SIGKILL", "SIGTERM", "exit"} {
		t.Run(how, func(t *testing.T) {
			manifests := writeManifests(t, t.TempDir(), moduleManifest, bin, []string{"tm"})
			cmd := exec.Command(os.Args[0], "-test.run=^TestOrphanHelperProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), orphanHelperEnv+"="+how, "FIBERKIT_ORPHAN_DB="+pgtest.NewDatabase(t),
				"FIBERKIT_ORPHAN_MANIFEST="+manifests[0])
			logs := &testsupport.LogBuffer{}
			cmd.Stderr = logs
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("helper host's output:\n%s", logs)
				}
			})
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			in, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			pid := readPluginPID(t, out)
			if !running(pid) {
				t.Fatalf("plugin process %d not running while its host runs", pid)
			}
			switch how {
			case "SIGKILL":
				_ = cmd.Process.Signal(syscall.SIGKILL)
			case "SIGTERM":
				_ = cmd.Process.Signal(syscall.SIGTERM)
			case "exit":
				_ = in.Close() // the helper exits when its stdin ends
			}
			_ = cmd.Wait()
			deadline := time.Now().Add(5 * time.Second)
			for running(pid) {
				if time.Now().After(deadline) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					t.Fatalf("plugin process %d still running 5 s after its host died (%s)", pid, how)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// readPluginPID reads the helper host's "PID n" line.
func readPluginPID(t *testing.T, out interface{ Read([]byte) (int, error) }) int {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if pid, ok := strings.CutPrefix(sc.Text(), "PID "); ok {
				got <- pid
				return
			}
		}
		close(got)
	}()
	select {
	case s, ok := <-got:
		pid, err := strconv.Atoi(s)
		if !ok || err != nil || pid <= 0 {
			t.Fatalf("helper host did not report its plugin's pid (%q)", s)
		}
		return pid
	case <-time.After(60 * time.Second):
		t.Fatal("helper host did not start its plugin within 60 s")
	}
	return 0
}

// running reports whether pid is a process that has not exited (a zombie
// waiting for init to reap it has).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// TestOrphanHelperProcess is the host app TestPluginsDieWithTheirHost kills: run
// as a child with orphanHelperEnv set, it starts a kit with the test module,
// prints the plugin's pid and then waits to be killed, or exits without Close when
// its stdin ends.
func TestOrphanHelperProcess(t *testing.T) {
	how := os.Getenv(orphanHelperEnv)
	if how == "" {
		t.Skip("a helper process for TestPluginsDieWithTheirHost")
	}
	ctx := context.Background()
	kit, err := host.New(ctx, host.Config{
		DatabaseURL: os.Getenv("FIBERKIT_ORPHAN_DB"), Manifests: []string{os.Getenv("FIBERKIT_ORPHAN_MANIFEST")},
		InsecureDevAdmin: true, HealthInterval: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := kit.SetEnabled(ctx, "tm", true, "test"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st, _ := kit.Module("tm")
		if st.State == host.StateRunning && st.PID > 0 {
			fmt.Printf("PID %d\n", st.PID)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("module did not start: %s %s", st.State, st.LastError)
		}
	}
	if how == "exit" {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	select {}
}
