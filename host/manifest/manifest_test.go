package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
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
		{"unknown field", "name: Sync", "line 3: field colour not found"},
		{"wrong field type", "  - key: limit\n", "line 14: cannot unmarshal !!str `maybe` into bool"},
		{"duplicate websocket", "operations:", `websockets[1].path: duplicate websocket /websocket`},
		{"unknown method", "    methods: [POST]", `routes[1].methods[0]: unknown HTTP method "FETCH"`},
		{"bad path", "  - path: /records/:table\n    methods: [POST]", `routes[1].path: "records" must start with /`},
		{"bad param", "  - path: /records/:table\n    methods: [POST]", `routes[1].path: "/records/:" has a bad parameter ":"`},
		{"enabled not bool", "  - key: limit", `settings[2].type: the enabled setting must be bool`},
		{"secret with default", "    type: secret", `settings[1].default: a secret cannot have a default`},
		{"NaN default", `default: "10"`, `settings[2].default: invalid value: "NaN" is not a number`},
		{"options on a string", "    type: secret", `settings[1].options: only enum settings have options`},
		{"bad caller", "  - name: list_tables", `operations[0].callers[1]: "Not An Id" is not a module id`},
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
		"wrong field type":     "  - key: limit\n    required: maybe\n",
		"duplicate websocket":  "  - path: /websocket\n    browser: true\noperations:",
		"unknown method":       "    methods: [FETCH]",
		"bad path":             "  - path: records\n    methods: [POST]",
		"bad param":            "  - path: \"/records/:\"\n    methods: [POST]",
		"enabled not bool":     "  - key: enabled\n    type: string\n  - key: limit2",
		"secret with default":  "    type: secret\n    default: hunter2",
		"NaN default":          `default: "NaN"`,
		"options on a string":  "    type: secret\n    options: [a]",
		"bad caller":           "  - name: list_tables\n    callers: [report, Not An Id]",
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

func TestMayCall(t *testing.T) {
	dir := t.TempDir()
	writeExe(t, dir)
	m, err := Parse([]byte(good+"    callers: [report]\n  - name: pull\n    callers: []\n"), "module.yaml", dir, "0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		op, caller string
		want       bool
	}{{"list_tables", "report", true}, {"list_tables", "other", false}, {"pull", "report", false}, {"unlisted_op", "other", true}} {
		if got := m.MayCall(c.op, c.caller); got != c.want {
			t.Errorf("MayCall(%s, %s) = %v, want %v", c.op, c.caller, got, c.want)
		}
	}
}

func TestValidManifestRoundTrips(t *testing.T) {
	dir := t.TempDir()
	writeExe(t, dir)
	m, err := Parse([]byte(good), "module.yaml", dir, "0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(out, "module.yaml", dir, "0.1.0")
	if err != nil {
		t.Fatalf("re-parsing the marshalled manifest: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(m, again) {
		t.Fatalf("round trip changed the manifest:\n%+v\n%+v", m, again)
	}
	if m.Settings[1].Name != "incoming_mode" || m.Routes[0].Methods[0] != "GET" {
		t.Fatalf("defaults not filled in: %+v", m)
	}
}

func TestLoadResolvesTheExecutableAndNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	exe := writeExe(t, dir)
	path := filepath.Join(dir, "module.yaml")
	if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(path, "0.2.0")
	if err != nil {
		t.Fatal(err)
	}
	if m.Executable != exe || m.File != path || m.Dir != dir {
		t.Fatalf("executable %q file %q dir %q", m.Executable, m.File, m.Dir)
	}
	// Present but not executable: the error names the path.
	if err := os.Chmod(exe, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path, "0.2.0")
	if want := path + ": executable: " + exe + ": not an executable file"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want %q", err, want)
	}
	if _, err := Load(filepath.Join(dir, "none.yaml"), "0.2.0"); err == nil || !strings.Contains(err.Error(), "none.yaml") {
		t.Fatalf("missing manifest: %v", err)
	}
	if _, err := Parse(nil, "empty.yaml", dir, "0.1.0"); err == nil || err.Error() != "empty.yaml: empty manifest" {
		t.Fatalf("empty manifest: %v", err)
	}
	if _, err := Parse([]byte(good), "module.yaml", dir, "dev"); err == nil || !strings.Contains(err.Error(), `host's own version "dev"`) {
		t.Fatalf("non-semver host version: %v", err)
	}
}

func TestAllProblemsAreReported(t *testing.T) {
	_, err := Parse([]byte("id: x\nversion: bad\nexecutable: ./missing\nsettings:\n  - key: a\n    type: colour\n"), "m.yaml", t.TempDir(), "0.1.0")
	var e *Error
	if !errors.As(err, &e) || len(e.Problems) != 3 {
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
	for _, v := range []string{"NaN", "Inf", "-inf", "1e400", "1,5"} {
		if _, err := n.Normalize(v); !errors.Is(err, ErrInvalidValue) {
			t.Fatalf("number %q: %v", v, err)
		}
	}
	e := Setting{Key: "e", Type: Enum, Options: []string{"a", "b"}}
	if v, err := e.Normalize("b"); err != nil || v != "b" {
		t.Fatalf("enum b → %q %v", v, err)
	}
	if _, err := e.Normalize("B"); err == nil {
		t.Fatal("enum B accepted")
	}
}

// Optional parameters ("/:id?") are not implemented by the host's route matcher, so
// the manifest refuses them with a message saying what to do instead.
func TestOptionalRouteParametersAreRefused(t *testing.T) {
	dir := t.TempDir()
	writeExe(t, dir)
	for _, c := range []struct{ from, to, field string }{
		{"  - path: /records/:table\n    methods: [GET]", "  - path: /records/:table?\n    methods: [GET]", "routes[0].path"},
		{"  - path: /websocket", "  - path: /live/:room?", "websockets[0].path"},
	} {
		src := strings.Replace(good, c.from, c.to, 1)
		_, err := Parse([]byte(src), "module.yaml", dir, "0.1.0")
		if err == nil {
			t.Fatalf("%s: an optional parameter was accepted", c.field)
		}
		if !strings.Contains(err.Error(), c.field+": ") || !strings.Contains(err.Error(), "optional parameter") || !strings.Contains(err.Error(), "not supported") {
			t.Fatalf("%s: error %q does not name the problem", c.field, err)
		}
	}
}
