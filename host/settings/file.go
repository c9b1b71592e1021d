package settings

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.yaml.in/yaml/v3"
)

// File is a parsed config file:
//
//	modules:
//	  sync:
//	    enabled: true
//	    settings:
//	      incoming_mode: require_password
//	      incoming_password: ${SYNC_PASSWORD}
type File struct {
	Path    string
	Modules map[string]FileModule
}

// FileModule is one module's entry in the config file.
type FileModule struct {
	// Enabled is the enabled flag as written, nil when absent.
	Enabled  *string           `yaml:"enabled"`
	Settings map[string]string `yaml:"settings"`
}

// ModuleIDs returns the modules the file names, sorted.
func (f *File) ModuleIDs() []string {
	ids := make([]string, 0, len(f.Modules))
	for id := range f.Modules {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// LoadFile reads and parses a config file. In values, $VAR, ${VAR} and
// ${VAR:-default} are replaced from the environment (os.Expand syntax; $$ is a
// literal $). Expansion happens after parsing, so a variable's value can never inject
// YAML. ${VAR:-default} takes the default when VAR is unset or empty; a plain $VAR
// that is unset is an error naming it and its line. Errors name the file.
func LoadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config file: %w", err)
	}
	return parseFile(path, data)
}

func parseFile(path string, data []byte) (*File, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("config file %s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var missing []string
	expandNode(&root, false, &missing)
	if len(missing) > 0 {
		return nil, fmt.Errorf("config file %s: environment variables not set: %s", path, strings.Join(missing, ", "))
	}
	var doc struct {
		Modules map[string]FileModule `yaml:"modules"`
	}
	if err := root.Decode(&doc); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("config file %s: %s", path, strings.Join(te.Errors, "; "))
		}
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if doc.Modules == nil {
		doc.Modules = map[string]FileModule{}
	}
	return &File{Path: path, Modules: doc.Modules}, nil
}

// expandNode expands environment variables in the scalar values under n (not in
// mapping keys).
func expandNode(n *yaml.Node, isKey bool, missing *[]string) {
	if n.Kind == yaml.ScalarNode && !isKey {
		n.Value = os.Expand(n.Value, func(name string) string {
			if name == "$" {
				return "$"
			}
			key, def, hasDef := strings.Cut(name, ":-")
			v, ok := os.LookupEnv(key)
			switch {
			case hasDef && v == "":
				return def
			case !ok:
				*missing = append(*missing, fmt.Sprintf("%s (line %d)", key, n.Line))
			}
			return v
		})
	}
	for i, c := range n.Content {
		expandNode(c, n.Kind == yaml.MappingNode && i%2 == 0, missing)
	}
}

// debounce is how long WatchFile waits after the last change in the file's directory
// before reloading: an editor's save is several events.
const debounce = 100 * time.Millisecond

// WatchFile calls fn with the reloaded file whenever its content changes on disk, and
// with the file as it is whenever the process receives SIGHUP; fn gets the error
// instead when the file cannot be read or parsed. It watches the file's directory, so
// an editor's write-to-temp-and-rename and a Kubernetes ConfigMap's symlink swap are
// seen; events are debounced, and a reload whose bytes equal the last ones is not
// reported (except on SIGHUP). A file that is missing for a moment is waited for. It
// does not call fn at start (load the file with LoadFile first) and returns when ctx
// ends, or at once, after reporting the error, when the watch cannot be set up.
func WatchFile(ctx context.Context, path string, fn func(*File, error)) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		fn(nil, fmt.Errorf("watch config file %s: %w", path, err))
		return
	}
	defer w.Close()
	abs, err := filepath.Abs(path)
	if err == nil {
		err = w.Add(filepath.Dir(abs))
	}
	if err != nil {
		fn(nil, fmt.Errorf("watch config file %s: %w", path, err))
		return
	}
	last := func() [32]byte {
		data, _ := os.ReadFile(path)
		return sha256.Sum256(data)
	}()
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			fn(LoadFile(path))
		case _, ok := <-w.Events:
			if !ok {
				return
			}
			fire = time.After(debounce)
		case <-fire:
			fire = nil
			data, err := os.ReadFile(path)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				// Between an editor's remove and create: its create will fire again.
			case err != nil:
				fn(nil, fmt.Errorf("read config file: %w", err))
			case sha256.Sum256(data) != last:
				last = sha256.Sum256(data)
				fn(parseFile(path, data))
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			fn(nil, fmt.Errorf("watch config file %s: %w", path, err))
		}
	}
}
