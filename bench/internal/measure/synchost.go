package measure

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/host/devpg"
)

// SyncHost starts a host kit on dbURL with the repository's Sync manifest (root is
// the repository) running pluginBin, its settings from config (the YAML body under
// modules.sync.settings, indented as such, e.g. "      live: true\n"), the module
// enabled. Stop closes the kit and removes its files.
func SyncHost(ctx context.Context, root, pluginBin, dbURL, settings string, pluginEnv []string, log *slog.Logger) (kit *host.Kit, stop func(), err error) {
	dir, err := os.MkdirTemp("", "bench-host-")
	if err != nil {
		return nil, nil, err
	}
	manifest, err := os.ReadFile(filepath.Join(root, "module.yaml"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	m := strings.Replace(string(manifest), "executable: bin/fiberkit-sync", "executable: "+pluginBin, 1)
	if m == string(manifest) {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("module.yaml names no executable bin/fiberkit-sync")
	}
	mpath, cfg := filepath.Join(dir, "module.yaml"), filepath.Join(dir, "fiberkit.yaml")
	if err := os.WriteFile(mpath, []byte(m), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	if err := os.WriteFile(cfg, []byte("modules:\n  sync:\n    enabled: true\n    settings:\n"+settings), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	kit, err = host.New(ctx, host.Config{DatabaseURL: dbURL, ConfigFile: cfg, Manifests: []string{mpath}, InsecureDevAdmin: true,
		PluginEnv: pluginEnv, Logger: log})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return kit, func() { _ = kit.Close(); os.RemoveAll(dir) }, nil
}

// ServerWith is Server with PostgreSQL settings over devpg's (a server in
// DATABASE_URL is used as it is).
func ServerWith(ctx context.Context, settings map[string]string) (adminURL string, stop func(), err error) {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u, func() {}, nil
	}
	srv, err := devpg.Start(ctx, devpg.Options{Settings: settings})
	if err != nil {
		return "", nil, err
	}
	return srv.URL("postgres"), func() { _ = srv.Stop() }, nil
}
