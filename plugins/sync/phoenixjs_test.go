package main_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
)

// phoenixJS installs the receiver written with the npm phoenix client
// (testdata/phoenixjs) once, and returns node's path and the script's.
func phoenixJS(t *testing.T) (node, script string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: the phoenix.js test needs Node.js and npm (Debian: apt-get install nodejs npm; .ci/run installs them)")
	}
	dir, err := filepath.Abs("testdata/phoenixjs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "phoenix")); err != nil {
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	}
	return node, filepath.Join(dir, "receiver.mjs")
}

// TestPhoenixJSClientReconnectRejoins runs a receiver written with the real npm
// phoenix client against a sender. A network drop makes the client reconnect on
// its own (10, 50, 100 … ms) with the code it already used: those retries must not
// lock the address out, and once the sender has seen the drop the same receiver
// rejoins its session and goes on — without a new code.
func TestPhoenixJSClientReconnectRejoins(t *testing.T) {
	node, script := phoenixJS(t)
	a := seeded(t, siteOptions{mode: "auto_accept"})
	code := a.newCode(t).Code
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, script, "ws"+strings.TrimPrefix(a.url, "http")+"/fiberkit/sync", code).Output()
	var seen struct {
		Error      string
		Opens      int
		Joins      int
		Tables     []string
		Records    int
		FirstID    json.Number
		JoinReplie []map[string]any `json:"joinReplies"`
	}
	if jerr := json.Unmarshal(out, &seen); jerr != nil || err != nil {
		t.Fatalf("phoenix.js receiver: %v, %v\n%s", err, jerr, out)
	}
	if seen.Opens < 2 || seen.Joins != 2 || seen.Records != 5 || seen.FirstID != "1" {
		t.Fatalf("phoenix.js receiver saw %+v", seen)
	}
	found := false
	for _, tb := range seen.Tables {
		found = found || tb == "customers"
	}
	if !found {
		t.Fatalf("tables %v", seen.Tables)
	}
	// The retries were not guesses: a fresh code from the same address works.
	c, err := client.Connect(ctx, a.url, a.newCode(t).Code, client.Options{})
	if err != nil {
		t.Fatalf("a fresh code after the reconnects: %v", err)
	}
	c.Close()
}
