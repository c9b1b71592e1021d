package settings

import (
	"context"
	"fmt"
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

// LoadFile reads and parses a config file. ${VAR} and ${VAR:-default} in values are
// replaced from the environment after parsing, so a value can never inject YAML.
func LoadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config file: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	var missing []string
	expandNode(&root, &missing)
	if len(missing) > 0 {
		return nil, fmt.Errorf("config file %s: environment variables not set: %s", path, strings.Join(missing, ", "))
	}
	var doc struct {
		Modules map[string]FileModule `yaml:"modules"`
	}
	if err := root.Decode(&doc); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if doc.Modules == nil {
		doc.Modules = map[string]FileModule{}
	}
	return &File{Path: path, Modules: doc.Modules}, nil
}

func expandNode(n *yaml.Node, missing *[]string) {
	if n.Kind == yaml.ScalarNode {
		n.Value = os.Expand(n.Value, func(name string) string {
			key, def, hasDef := strings.Cut(name, ":-")
			if v, ok := os.LookupEnv(key); ok && v != "" {
				return v
			}
			if hasDef {
				return def
			}
			*missing = append(*missing, fmt.Sprintf("%s (line %d)", key, n.Line))
			return ""
		})
	}
	for _, c := range n.Content {
		expandNode(c, missing)
	}
}

// WatchFile calls fn with the reloaded file whenever it changes on disk (including
// editors' write-to-temp-and-rename) or the process receives SIGHUP. It returns when
// ctx ends.
func WatchFile(ctx context.Context, path string, fn func(*File, error)) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		fn(nil, fmt.Errorf("watch config file: %w", err))
		return
	}
	defer w.Close()
	abs, _ := filepath.Abs(path)
	// Watch the directory: a rename-save replaces the file's inode.
	if err := w.Add(filepath.Dir(abs)); err != nil {
		fn(nil, fmt.Errorf("watch config file: %w", err))
		return
	}
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			fn(LoadFile(path))
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if filepath.Clean(ev.Name) == abs && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				debounce = time.After(100 * time.Millisecond)
			}
		case <-debounce:
			debounce = nil
			if _, err := os.Stat(path); err == nil {
				fn(LoadFile(path))
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			fn(nil, fmt.Errorf("watch config file: %w", err))
		}
	}
}
