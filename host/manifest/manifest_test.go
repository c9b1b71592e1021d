package manifest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeExe(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "mod")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

const good = `id: sync
name: Sync
version: 1.2.3
min_host_version: 0.1.0
executable: ./mod
settings:
  - key: incoming_mode
    type: enum
    default: require_approval
    options: [auto_accept, require_approval, require_password, deny_all]
  - key: incoming_password
    type: secret
  - key: limit
    type: number
    default: "10"
routes:
  - path: /records/:table
    methods: [GET]
  - path: /records/:table
    methods: [POST]
websockets:
  - path: /websocket
operations:
  - name: list_tables
`

func TestValidManifest(t *testing.T) {
	dir := t.TempDir()
	exe := writeExe(t, dir)
	m, err := Parse([]byte(good), "module.yaml", dir, "0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "sync" || m.Executable != exe || len(m.Routes) != 2 || m.WebSockets[0].Path != "/websocket" {
		t.Fatalf("parsed %+v", m)
	}
	en, ok := m.Setting("enabled")
	if !ok || en.Type != Bool || en.Default != "false" {
		t.Fatalf("implicit enabled setting: %+v %v", en, ok)
	}
	if m.Settings[0].Key != "enabled" {
		t.Fatalf("enabled should come first, got %q", m.Settings[0].Key)
	}
}

func TestBadManifestsNameTheProblem(t *testing.T) {
	dir := t.TempDir()
	writeExe(t, dir)
	cases := []struct {
		name, edit, want string
	}{
		{"unknown type", "type: secret", `settings[1].type: unknown type "colour"`},
		{"missing executable", "executable: ./mod", "executable: " + filepath.Join(dir, "nope") + ": not found"},
		{"duplicate route", "    methods: [POST]", "duplicate route GET /records/:table"},
		{"bad enum default", "default: require_approval", `settings[0].default: invalid value: "sometimes" is not one of`},
		{"enum without options", "    options: [auto_accept, require_approval, require_password, deny_all]", "settings[0].options: an enum needs options"},
		{"bad number default", `default: "10"`, `settings[2].default: invalid value: "ten" is not a number`},
		{"bad id", "id: sync", `id: "Sync!" is not a valid id`},
		{"bad version", "version: 1.2.3", `version: "one" is not a semantic version`},
		{"host too old", "min_host_version: 0.1.0", "min_host_version: module needs host 9.0.0 or newer, this host is 0.1.0"},
		{"duplicate key", "  - key: limit", "settings[2].key: duplicate key \"incoming_mode\""},
		{"unknown field", "name: Sync", "field colour not found"},
	}
	repl := map[string]string{
		"unknown type":         "type: colour",
		"missing executable":   "executable: ./nope",
		"duplicate route":      "    methods: [GET]",
		"bad enum default":     "default: sometimes",
		"enum without options": "",
		"bad number default":   `default: "ten"`,
		"bad id":               `id: "Sync!"`,
		"bad version":          "version: one",
		"host too old":         "min_host_version: 9.0.0",
		"duplicate key":        "  - key: incoming_mode",
		"unknown field":        "name: Sync\ncolour: blue",
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := strings.Replace(good, c.edit, repl[c.name], 1)
			if src == good {
				t.Fatalf("edit %q did not apply", c.edit)
			}
			_, err := Parse([]byte(src), "module.yaml", dir, "0.1.0")
			if err == nil {
				t.Fatalf("accepted a manifest with %s", c.name)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "module.yaml: ") {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

func TestAllProblemsAreReported(t *testing.T) {
	_, err := Parse([]byte("id: x\nversion: bad\nexecutable: ./missing\nsettings:\n  - key: a\n    type: colour\n"), "m.yaml", t.TempDir(), "0.1.0")
	e, ok := err.(*Error)
	if !ok || len(e.Problems) != 3 {
		t.Fatalf("want 3 problems (version, executable, type), got %v", err)
	}
}

func TestNormalize(t *testing.T) {
	b := Setting{Key: "b", Type: Bool}
	if v, err := b.Normalize("1"); err != nil || v != "true" {
		t.Fatalf("bool 1 → %q %v", v, err)
	}
	if _, err := b.Normalize("maybe"); err == nil {
		t.Fatal("bool maybe accepted")
	}
	n := Setting{Key: "n", Type: Number}
	if v, err := n.Normalize(" 2.50 "); err != nil || v != "2.5" {
		t.Fatalf("number → %q %v", v, err)
	}
	s := Setting{Key: "s", Type: String, Required: true}
	if _, err := s.Normalize(""); err == nil {
		t.Fatal("empty required string accepted")
	}
}
