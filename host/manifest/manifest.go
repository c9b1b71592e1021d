// Package manifest reads and validates a module's manifest, module.yaml: what the
// module is, which binary runs it, its settings schema (which drives the admin form),
// its routes, WebSocket endpoints and operations. See docs/manifest.md.
package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Type is a setting's type.
type Type string

// The setting types.
const (
	Bool   Type = "bool"
	Enum   Type = "enum"
	String Type = "string"
	Secret Type = "secret"
	Number Type = "number"
)

// Manifest is a validated module.yaml.
type Manifest struct {
	ID             string      `yaml:"id"`
	Name           string      `yaml:"name,omitempty"`
	Version        string      `yaml:"version"`
	MinHostVersion string      `yaml:"min_host_version,omitempty"`
	Description    string      `yaml:"description,omitempty"`
	Executable     string      `yaml:"executable"`
	Settings       []Setting   `yaml:"settings,omitempty"`
	Routes         []Route     `yaml:"routes,omitempty"`
	WebSockets     []WebSocket `yaml:"websockets,omitempty"`
	Operations     []Operation `yaml:"operations,omitempty"`
	File           string      `yaml:"-"` // the manifest's path
	Dir            string      `yaml:"-"` // its directory; Executable is made absolute against it
}

// Setting is one entry of the settings schema.
type Setting struct {
	Key      string   `yaml:"key"`
	Name     string   `yaml:"name,omitempty"`
	Type     Type     `yaml:"type"`
	Default  string   `yaml:"default,omitempty"`
	Options  []string `yaml:"options,omitempty"`
	Help     string   `yaml:"help,omitempty"`
	Required bool     `yaml:"required,omitempty"`
}

// Route is an HTTP route, relative to the module's mount prefix.
type Route struct {
	Path    string   `yaml:"path"`
	Methods []string `yaml:"methods,omitempty"` // empty = any method
	Admin   bool     `yaml:"admin,omitempty"`   // behind the host's admin auth, under the admin prefix
}

// WebSocket is a WebSocket endpoint, relative to the module's mount prefix.
type WebSocket struct {
	Path    string `yaml:"path"`
	Browser bool   `yaml:"browser,omitempty"` // opened by browsers: an allowed Origin is required
	// Admin endpoints sit behind the admin auth; a foreign Origin is refused on them
	// whether or not Browser is set.
	Admin bool `yaml:"admin,omitempty"`
}

// Operation is a named operation the module answers.
type Operation struct {
	Name string `yaml:"name,omitempty"`
	Help string `yaml:"help,omitempty"`
	// Callers, when given, lists the modules that may call the operation through
	// the SDK; an empty list means none (only the host app's own code and admin).
	// Absent, any enabled module may call it.
	Callers *[]string `yaml:"callers,omitempty"`
}

// Declares reports whether m lists operation op.
func (m *Manifest) Declares(op string) bool {
	for _, o := range m.Operations {
		if o.Name == op {
			return true
		}
	}
	return false
}

// MayCall reports whether module caller may call operation op of m through the
// SDK: an operation whose Callers list leaves caller out may not be; any other may.
func (m *Manifest) MayCall(op, caller string) bool {
	for _, o := range m.Operations {
		if o.Name == op && o.Callers != nil {
			for _, c := range *o.Callers {
				if c == caller {
					return true
				}
			}
			return false
		}
	}
	return true
}

// Error lists every problem found in one manifest.
type Error struct {
	File     string
	Problems []string // "field: problem"
}

// Error implements error.
func (e *Error) Error() string {
	return e.File + ": " + strings.Join(e.Problems, "; "+e.File+": ")
}

// Load reads and validates the manifest at path for a host of version hostVersion.
func Load(path, hostVersion string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("manifest path %s: %w", path, err)
	}
	return Parse(data, path, filepath.Dir(abs), hostVersion)
}

var (
	idPattern     = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	keyPattern    = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
	semverPattern = regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.-]+)?$`)
	opPattern     = regexp.MustCompile(`^[a-z][a-z0-9_.:-]{0,62}$`)
)

// Parse validates manifest data read from file; dir resolves a relative executable.
func Parse(data []byte, file, dir, hostVersion string) (*Manifest, error) {
	var m Manifest
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		var te *yaml.TypeError
		switch {
		case errors.Is(err, io.EOF):
			return nil, &Error{File: file, Problems: []string{"empty manifest"}}
		case errors.As(err, &te):
			// Every field of the wrong type or unknown, one problem each ("line 4: ...").
			return nil, &Error{File: file, Problems: te.Errors}
		default:
			return nil, &Error{File: file, Problems: []string{strings.TrimPrefix(err.Error(), "yaml: ")}}
		}
	}
	m.File, m.Dir = file, dir
	var p []string
	bad := func(field, format string, args ...any) { p = append(p, field+": "+fmt.Sprintf(format, args...)) }

	if hostVersion != "" && !semverPattern.MatchString(hostVersion) {
		bad("min_host_version", "cannot check: the host's own version %q is not a semantic version", hostVersion)
		hostVersion = ""
	}

	if !idPattern.MatchString(m.ID) {
		bad("id", "%q is not a valid id (lower-case letters, digits, '-' and '_', starting with a letter)", m.ID)
	}
	if m.Name == "" {
		m.Name = m.ID
	}
	if !semverPattern.MatchString(m.Version) {
		bad("version", "%q is not a semantic version (like 1.2.3)", m.Version)
	}
	if m.MinHostVersion != "" {
		if !semverPattern.MatchString(m.MinHostVersion) {
			bad("min_host_version", "%q is not a semantic version", m.MinHostVersion)
		} else if hostVersion != "" && compareSemver(m.MinHostVersion, hostVersion) > 0 {
			bad("min_host_version", "module needs host %s or newer, this host is %s", m.MinHostVersion, hostVersion)
		}
	}
	switch {
	case m.Executable == "":
		bad("executable", "missing")
	default:
		if !filepath.IsAbs(m.Executable) {
			m.Executable = filepath.Join(dir, m.Executable)
		}
		st, err := os.Stat(m.Executable)
		switch {
		case err != nil:
			bad("executable", "%s: not found", m.Executable)
		case !st.Mode().IsRegular() || st.Mode()&0o111 == 0:
			bad("executable", "%s: not an executable file", m.Executable)
		}
	}

	keys := map[string]bool{}
	hasEnabled := false
	for i := range m.Settings {
		s := &m.Settings[i]
		f := fmt.Sprintf("settings[%d]", i)
		if s.Name == "" {
			s.Name = s.Key
		}
		if !keyPattern.MatchString(s.Key) {
			bad(f+".key", "%q is not a valid key", s.Key)
		}
		if keys[s.Key] {
			bad(f+".key", "duplicate key %q", s.Key)
		}
		keys[s.Key] = true
		switch s.Type {
		case Bool, String, Secret, Number:
			if len(s.Options) > 0 {
				bad(f+".options", "only enum settings have options")
			}
		case Enum:
			if len(s.Options) == 0 {
				bad(f+".options", "an enum needs options")
			}
		default:
			bad(f+".type", "unknown type %q (want bool|enum|string|secret|number)", s.Type)
			continue
		}
		if s.Type == Secret && s.Default != "" {
			bad(f+".default", "a secret cannot have a default")
		}
		if s.Default != "" {
			norm, err := s.Normalize(s.Default)
			if err != nil {
				bad(f+".default", "%v", err)
			} else {
				s.Default = norm
			}
		}
		if s.Type == Bool && s.Default == "" {
			s.Default = "false"
		}
		if s.Key == "enabled" {
			hasEnabled = true
			if s.Type != Bool {
				bad(f+".type", "the enabled setting must be bool")
			}
		}
	}
	if !hasEnabled {
		m.Settings = append([]Setting{{Key: "enabled", Name: "Enabled", Type: Bool, Default: "false", Help: "Turns the module on or off."}}, m.Settings...)
	}

	routes := map[string]bool{}
	for i, r := range m.Routes {
		f := fmt.Sprintf("routes[%d]", i)
		if problem := checkPath(r.Path); problem != "" {
			bad(f+".path", "%q %s", r.Path, problem)
		}
		methods := r.Methods
		if len(methods) == 0 {
			methods = []string{"*"}
		}
		for j, meth := range methods {
			meth = strings.ToUpper(meth)
			if !knownMethod(meth) {
				bad(fmt.Sprintf("%s.methods[%d]", f, j), "unknown HTTP method %q", methods[j])
				continue
			}
			if len(r.Methods) > 0 {
				m.Routes[i].Methods[j] = meth
			}
			k := fmt.Sprintf("%t %s %s", r.Admin, meth, r.Path)
			if routes[k] || (meth != "*" && routes[fmt.Sprintf("%t * %s", r.Admin, r.Path)]) {
				bad(f, "duplicate route %s %s", meth, r.Path)
			}
			routes[k] = true
		}
	}
	ws := map[string]bool{}
	for i, w := range m.WebSockets {
		f := fmt.Sprintf("websockets[%d]", i)
		if problem := checkPath(w.Path); problem != "" {
			bad(f+".path", "%q %s", w.Path, problem)
		}
		k := fmt.Sprintf("%t %s", w.Admin, w.Path)
		if ws[k] {
			bad(f+".path", "duplicate websocket %s", w.Path)
		}
		ws[k] = true
	}
	ops := map[string]bool{}
	for i, o := range m.Operations {
		f := fmt.Sprintf("operations[%d]", i)
		if !opPattern.MatchString(o.Name) {
			bad(f+".name", "%q is not a valid operation name", o.Name)
		}
		if ops[o.Name] {
			bad(f+".name", "duplicate operation %q", o.Name)
		}
		ops[o.Name] = true
		if o.Callers != nil {
			for j, c := range *o.Callers {
				if !idPattern.MatchString(c) {
					bad(fmt.Sprintf("%s.callers[%d]", f, j), "%q is not a module id", c)
				}
			}
		}
	}
	if len(p) > 0 {
		return nil, &Error{File: file, Problems: p}
	}
	return &m, nil
}

// Setting returns the schema entry for key.
func (m *Manifest) Setting(key string) (Setting, bool) {
	for _, s := range m.Settings {
		if s.Key == key {
			return s, true
		}
	}
	return Setting{}, false
}

// ErrInvalidValue is wrapped by Normalize's errors.
var ErrInvalidValue = errors.New("invalid value")

// Normalize checks v against the setting's type and returns its canonical form:
// bools as "true"/"false", numbers as parsed, enums as one of the options.
func (s Setting) Normalize(v string) (string, error) {
	switch s.Type {
	case Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return "", fmt.Errorf("%w: %q is not true or false", ErrInvalidValue, v)
		}
		return strconv.FormatBool(b), nil
	case Number:
		v = strings.TrimSpace(v)
		if v == "" && !s.Required {
			return "", nil
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return "", fmt.Errorf("%w: %q is not a number", ErrInvalidValue, v)
		}
		return strconv.FormatFloat(f, 'f', -1, 64), nil
	case Enum:
		for _, o := range s.Options {
			if o == v {
				return v, nil
			}
		}
		return "", fmt.Errorf("%w: %q is not one of %s", ErrInvalidValue, v, strings.Join(s.Options, ", "))
	case String, Secret:
		if s.Required && v == "" {
			return "", fmt.Errorf("%w: required", ErrInvalidValue)
		}
		return v, nil
	}
	return "", fmt.Errorf("%w: unknown type %q", ErrInvalidValue, s.Type)
}

// knownMethod reports whether a route may list method (upper-case; "*" = any).
func knownMethod(method string) bool {
	switch method {
	case "*", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
		return true
	}
	return false
}

// checkPath returns what is wrong with a route or WebSocket path, or "". Paths are
// fiber-style: "/records/:table", "/files/*". Optional parameters ("/:id?") are not
// supported: declare the path with and without the parameter.
func checkPath(p string) string {
	switch {
	case !strings.HasPrefix(p, "/"):
		return "must start with /"
	case strings.Contains(p, "//"):
		return "has an empty segment"
	case strings.ContainsAny(p, " \t\r\n#"):
		return "contains white space or '#'"
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if paramPattern.MatchString(seg) && strings.HasSuffix(seg, "?") {
			return fmt.Sprintf("has an optional parameter %q, which is not supported: declare the path both with %s and without it", seg, strings.TrimSuffix(seg, "?"))
		}
		if (strings.HasPrefix(seg, ":") || strings.Contains(seg, "?")) && !paramPattern.MatchString(seg) {
			return fmt.Sprintf("has a bad parameter %q (want :name)", seg)
		}
	}
	return ""
}

var paramPattern = regexp.MustCompile(`^:[A-Za-z_][A-Za-z0-9_]*\??$`)

// compareSemver compares the major, minor and patch numbers of two valid versions;
// pre-release and build suffixes are ignored.
func compareSemver(a, b string) int {
	pa, pb := semverPattern.FindStringSubmatch(a), semverPattern.FindStringSubmatch(b)
	for i := 1; i <= 3; i++ {
		x, _ := strconv.Atoi(pa[i])
		y, _ := strconv.Atoi(pb[i])
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}
