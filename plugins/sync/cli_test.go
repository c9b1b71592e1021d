package main_test

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCommandLineClientExitCodes(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "fiberkit-pull")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/fiberkit/fiberkit/plugins/sync/cmd/fiberkit-pull").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{})
	pull := func(args ...string) (int, string) {
		cmd := exec.Command(bin, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), out.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, out.String()
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
