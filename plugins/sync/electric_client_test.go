package main_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/plugins/sync/syncweb"
)

var electricInstall struct {
	once sync.Once
	err  error
	out  []byte
}

// electricJS installs testdata/electric (the pinned @electric-sql/client) once per
// test binary, and returns node's path and the folder.
func electricJS(t *testing.T) (node, dir string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: the Electric client test needs Node.js and npm (Debian: apt-get install nodejs npm; .ci/run installs them)")
	}
	dir, err = filepath.Abs("testdata/electric")
	if err != nil {
		t.Fatal(err)
	}
	electricInstall.once.Do(func() {
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		electricInstall.out, electricInstall.err = cmd.CombinedOutput()
	})
	if electricInstall.err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, electricInstall.err, electricInstall.out)
	}
	return node, dir
}

// TestElectricClient runs the real @electric-sql/client (ShapeStream and Shape,
// testdata/electric/electric.test.mjs) against shapes served with syncweb: the
// initial sync with every type parsed by the schema header, live insert / update /
// delete, where with params, a where the endpoint refuses (400), columns, replica
// full, must-refetch after an interrupt and after TRUNCATE, resuming after the Sync
// plugin is killed and restarted, and server-sent events.
func TestElectricClient(t *testing.T) {
	node, dir := electricJS(t)
	s := liveSite(t, siteOptions{})
	electricItems(t, s)
	s.exec(t, `CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'a'), (2, 'b')`)
	base := shapeApp(t, s, func(app *fiber.App) {
		app.Get("/shapes/notes", syncweb.Shape(s.kit, syncapi.ShapeSpec{Table: "notes"}))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-force-exit", "--test-concurrency=1", "--test-reporter=spec", "electric.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SHAPES_URL="+base, "NODE_ENV=test")
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("the Electric client test failed: %v", err)
	}
}
