// Package browsertest drives headless Chromium (Debian's chromium package) in tests:
// a browser per test, optional extra request headers (e.g. the admin's credentials),
// and screenshots written as test artifacts.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// Path returns the Chromium binary, failing the test when there is none.
func Path(t testing.TB) string {
	t.Helper()
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	t.Fatal("headless Chromium not found: install Debian's chromium package (apt-get install chromium) or set CHROMIUM")
	return ""
}

// New starts a headless Chromium for one test (closed at its end) and returns its
// context. headers are sent with every request.
func New(t testing.TB, headers map[string]any) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Path(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	actions := []chromedp.Action{network.Enable()}
	if len(headers) > 0 {
		actions = append(actions, network.SetExtraHTTPHeaders(network.Headers(headers)))
	}
	if err := chromedp.Run(ctx, actions...); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// Screenshot saves the page as $ARTIFACTS_DIR/name (default: artifacts/ at the
// repository root, found from the test's working directory).
func Screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("ARTIFACTS_DIR")
	if dir == "" {
		dir = "artifacts"
		if root, err := exec.Command("go", "env", "GOMOD").Output(); err == nil && len(root) > 1 {
			dir = filepath.Join(filepath.Dir(string(root[:len(root)-1])), "artifacts")
		}
	}
	_ = os.MkdirAll(dir, 0o755)
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}
