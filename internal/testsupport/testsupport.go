// Package testsupport holds what the module's tests share: a host site serving on a
// loopback port, plugin binaries built once per test binary with the race detector,
// SQL helpers on a test's database, and a log buffer goroutines may write to while
// the test reads it. It is for tests only.
//
//	func TestMain(m *testing.M) { testsupport.Main(m) }
//
//	func TestX(t *testing.T) {
//		bin := testsupport.Binary(t, "github.com/fiberkit/fiberkit/plugins/sync")
//		s := testsupport.StartSite(t, func(url string) host.Config { return host.Config{Manifests: ...} })
//		...
//	}
package testsupport

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
)

// builds are the binaries of this test binary, built on first use and removed by Main.
// Like pgtest's cluster, they are shared by every test of the binary on purpose.
var builds struct {
	mu   sync.Mutex
	dir  string
	bins map[string]*build
}

type build struct {
	once sync.Once
	path string
	err  error
}

// Main runs the tests, removes the binaries Binary built, and stops the throwaway
// PostgreSQL cluster. Call it from TestMain.
func Main(m *testing.M) {
	pgtest.Main(m, removeBuilds)
}

func removeBuilds() {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		_ = os.RemoveAll(builds.dir)
	}
}

// Binary returns the path of the command pkg (an import path) built with the race
// detector, so that a data race in the program fails the test that ran it (StartSite
// watches the plugins' stderr for RaceReport). It is built on first use, once per
// test binary, into a temporary directory that Main removes.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	builds.mu.Lock()
	if builds.bins == nil {
		builds.bins = map[string]*build{}
	}
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "fiberkit-test-bin-")
		if err != nil {
			builds.mu.Unlock()
			t.Fatalf("testsupport: %v", err)
		}
		builds.dir = dir
	}
	b := builds.bins[pkg]
	if b == nil {
		b = &build{path: filepath.Join(builds.dir, strconv.Itoa(len(builds.bins)), path.Base(pkg))}
		builds.bins[pkg] = b
	}
	builds.mu.Unlock()
	b.once.Do(func() {
		if err := os.MkdirAll(filepath.Dir(b.path), 0o755); err != nil {
			b.err = err
			return
		}
		if out, err := exec.Command("go", "build", "-race", "-o", b.path, pkg).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("build %s: %v\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}
