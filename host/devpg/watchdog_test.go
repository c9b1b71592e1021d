package devpg

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// clusterHelperEnv makes the test binary, re-run as a child, start a cluster and wait.
const clusterHelperEnv = "FIBERKIT_DEVPG_HELPER"

// A cluster does not outlive the process that started it: SIGKILL that process (as
// go test's -timeout ends a hung test binary, or kill -9) and the postmaster is gone
// within seconds, and so is the directory Start made.
func TestClusterDiesWithItsProcess(t *testing.T) {
	if _, err := FindBinaries(); err != nil {
		t.Skip(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestClusterHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), clusterHelperEnv+"=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "CLUSTER ") {
				line <- sc.Text()
				return
			}
		}
		close(line)
	}()
	var pid int
	var dir string
	select {
	case l, ok := <-line:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("helper did not start a cluster:\n%s", stderr.String())
		}
		if _, err := fmt.Sscanf(l, "CLUSTER %d %s", &pid, &dir); err != nil {
			t.Fatalf("helper said %q: %v", l, err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("helper did not start a cluster within 90 s")
	}
	if !running(pid) {
		t.Fatalf("postmaster %d not running while the helper runs", pid)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGQUIT)
			t.Fatalf("postmaster %d still running 10 s after the process that started it was killed", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			_ = os.RemoveAll(dir)
			t.Fatalf("cluster directory %s still there after its process was killed", dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// running reports whether pid is a process that has not exited (a zombie not yet
// reaped has).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return pid > 0 && syscall.Kill(pid, 0) == nil
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

// TestClusterHelperProcess is the process TestClusterDiesWithItsProcess kills: run
// as a child with clusterHelperEnv set, it starts a cluster, prints its postmaster's
// pid and directory, and waits.
func TestClusterHelperProcess(t *testing.T) {
	if os.Getenv(clusterHelperEnv) == "" {
		t.Skip("a helper process for TestClusterDiesWithItsProcess")
	}
	s, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(s.dir, "data", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		t.Fatalf("postmaster.pid: %q", b)
	}
	fmt.Printf("CLUSTER %d %s\n", pid, s.dir)
	select {}
}
