// Package host is the FiberKit host kit: what a Fiber app imports to run modules as
// out-of-process plugins. It loads each module from its manifest, starts its plugin
// process with go-plugin, mounts its HTTP routes and WebSocket endpoints once, stores
// its settings in PostgreSQL (overlaid by a YAML config file) and draws the admin pages.
//
//	kit, err := host.New(ctx, host.Config{
//		DatabaseURL: os.Getenv("DATABASE_URL"),
//		ConfigFile:  "fiberkit.yaml",
//		ModuleDirs:  []string{"./modules"},
//		AdminAuth:   myAuthMiddleware,
//	})
//	...
//	app := fiber.New(host.FiberConfig())
//	kit.Mount(app)
//	defer kit.Close()
package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host/audit"
	"github.com/fiberkit/fiberkit/host/manifest"
	"github.com/fiberkit/fiberkit/host/settings"
	"github.com/fiberkit/fiberkit/sdk/transport"
)

// Version is the host kit's version, checked against each manifest's min_host_version.
const Version = "0.1.0"

// UserLocal is the fiber.Ctx Locals key under which the app's admin auth middleware
// puts the signed-in user's name (a string). The kit passes it to modules as the caller.
const UserLocal = "fiberkit.user"

// Config configures a Kit.
type Config struct {
	// DatabaseURL is the PostgreSQL database holding the kit's own tables; modules get
	// it too and open their own pools.
	DatabaseURL string
	// ConfigFile is an optional YAML file overlaying module settings; values set there
	// are locked in the admin pages. It is reloaded when it changes or on SIGHUP.
	ConfigFile string
	// ModuleDirs are searched for modules: each dir/*/module.yaml, and dir/module.yaml.
	ModuleDirs []string
	// Manifests are paths of module.yaml files to load in addition to ModuleDirs.
	Manifests []string
	// Prefix is where module routes are mounted: {Prefix}/{module id}/... Default "/fiberkit".
	Prefix string
	// AdminPrefix is where the admin pages are mounted. Default "/admin/fiberkit".
	AdminPrefix string
	// AdminAuth guards every admin page and admin route. It must reject
	// unauthenticated requests and may set Locals(UserLocal, name). New refuses a nil
	// AdminAuth unless InsecureDevAdmin is set.
	AdminAuth fiber.Handler
	// InsecureDevAdmin serves the admin pages to anyone. For local development only.
	InsecureDevAdmin bool
	// PublicURL is this site's base URL as others reach it (shown on Sync's Send page).
	PublicURL string
	// AllowedOrigins are extra origins allowed to open browser WebSockets; the
	// request's own origin is always allowed.
	AllowedOrigins []string
	// MaxFrameSize is the largest WebSocket message accepted from a client (bytes).
	// Larger ones close the connection with 1009. Default 16 MiB.
	MaxFrameSize int64
	// HealthInterval is how often plugin processes are checked. Default 2s. A plugin
	// that does not answer within 2 s is killed and restarted.
	HealthInterval time.Duration
	// PluginEnv adds to the environment of plugin processes, which do not inherit the
	// host's (it may hold secrets meant for the host, such as the ${VAR}s of the
	// config file). An entry "NAME=value" sets NAME; "NAME" passes the host's value
	// on. Plugins always get PATH, HOME, USER, TMPDIR, LANG, LC_*, TZ, the TLS
	// certificate and proxy variables, the Go runtime's (GODEBUG, GOMAXPROCS, …),
	// PostgreSQL's PG* (modules connect to the same database) and every FIBERKIT_*
	// variable (e.g. FIBERKIT_SECRET_KEY for Sync).
	PluginEnv []string
	// Logger receives the kit's logs and the plugins' logs under their module id.
	Logger *slog.Logger
}

// DefaultReadTimeout is FiberConfig's ReadTimeout: a client has that long to send a
// request's head (and a body the app itself reads), so connections that send a
// partial request, or nothing, are closed. A request body streamed to a module gets
// it afresh at every read: a slow upload lasts as long as its bytes keep coming, one
// that stalls that long is cut. It never limits a response (long-polls, server-sent
// events) nor a WebSocket, whose connection has no deadline after the upgrade.
const DefaultReadTimeout = 30 * time.Second

// DefaultIdleTimeout is FiberConfig's IdleTimeout: how long a keep-alive connection
// may wait for its next request.
const DefaultIdleTimeout = 120 * time.Second

// FiberConfig returns the fiber.Config settings the kit needs (request bodies are
// streamed to plugins rather than buffered whole) with DefaultReadTimeout and
// DefaultIdleTimeout; there is no WriteTimeout, which would cut streamed responses.
// Start from it when creating the app.
func FiberConfig() fiber.Config {
	return fiber.Config{StreamRequestBody: true, DisablePreParseMultipartForm: true, DisableStartupMessage: true,
		ReadTimeout: DefaultReadTimeout, IdleTimeout: DefaultIdleTimeout}
}

// Kit runs a set of modules for one Fiber app.
type Kit struct {
	cfg      Config
	log      *slog.Logger
	pool     *pgxpool.Pool
	settings *settings.Store
	audit    *audit.Log
	admin    *admin
	metrics  *kitMetrics

	modules map[string]*module // fixed after New: no lock needed for the map itself
	order   []string

	closeOnce sync.Once
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// New connects to the database, migrates the kit's tables, loads every module's
// manifest and starts the enabled modules' plugin processes.
func New(ctx context.Context, cfg Config) (*Kit, error) {
	if cfg.AdminAuth == nil && !cfg.InsecureDevAdmin {
		return nil, errors.New("host: Config.AdminAuth is nil: pass the app's admin auth middleware, or set InsecureDevAdmin for local development")
	}
	if cfg.DatabaseURL == "" {
		return nil, errors.New("host: Config.DatabaseURL is empty")
	}
	cfg.Prefix = cleanPrefix(cfg.Prefix, "/fiberkit")
	cfg.AdminPrefix = cleanPrefix(cfg.AdminPrefix, "/admin/fiberkit")
	if cfg.MaxFrameSize <= 0 {
		cfg.MaxFrameSize = 16 << 20
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	k := &Kit{cfg: cfg, log: cfg.Logger, modules: map[string]*module{}}
	k.metrics = newKitMetrics(k)
	var err error
	if k.pool, err = pgxpool.New(ctx, cfg.DatabaseURL); err != nil {
		return nil, fmt.Errorf("host: connect database: %w", err)
	}
	if k.settings, err = settings.Open(ctx, k.pool); err != nil {
		k.pool.Close()
		return nil, fmt.Errorf("host: open settings: %w", err)
	}
	k.audit = audit.New(k.pool)
	if err := k.loadManifests(); err != nil {
		k.settings.Close()
		k.pool.Close()
		return nil, err
	}
	if cfg.ConfigFile != "" {
		f, err := settings.LoadFile(cfg.ConfigFile)
		if err != nil {
			k.settings.Close()
			k.pool.Close()
			return nil, fmt.Errorf("host: %w", err)
		}
		if err := k.checkFile(f); err != nil {
			k.settings.Close()
			k.pool.Close()
			return nil, err
		}
		k.settings.ApplyFile(f)
	}
	if k.admin, err = newAdmin(k); err != nil {
		k.settings.Close()
		k.pool.Close()
		return nil, err
	}

	runCtx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
	for _, id := range k.order {
		m := k.modules[id]
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			m.run(runCtx)
		}()
	}
	unsubscribe := k.settings.Subscribe(func(id string) {
		if m, ok := k.modules[id]; ok {
			m.poke()
		}
	})
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		<-runCtx.Done()
		unsubscribe()
	}()
	if cfg.ConfigFile != "" {
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			settings.WatchFile(runCtx, cfg.ConfigFile, func(f *settings.File, err error) {
				if err == nil {
					err = k.checkFile(f)
				}
				if err != nil {
					k.log.Error("config file not reloaded", "file", cfg.ConfigFile, "err", err)
					return
				}
				for _, id := range k.settings.ApplyFile(f) {
					if m, ok := k.modules[id]; ok {
						m.poke()
					}
				}
				k.log.Info("config file reloaded", "file", cfg.ConfigFile)
			})
		}()
	}
	// Wait for the first start of every enabled module so a caller sees a ready kit.
	for _, id := range k.order {
		k.modules[id].waitSettled(ctx)
	}
	return k, nil
}

// checkFile refuses a config file naming modules, keys or values the kit does not know.
func (k *Kit) checkFile(f *settings.File) error {
	if err := k.settings.CheckFile(f); err != nil {
		return fmt.Errorf("host: %w", err)
	}
	return nil
}

func cleanPrefix(p, def string) string {
	if p == "" {
		p = def
	}
	p = "/" + strings.Trim(p, "/")
	if p == "/" {
		return ""
	}
	return p
}

func (k *Kit) loadManifests() error {
	paths := append([]string(nil), k.cfg.Manifests...)
	for _, dir := range k.cfg.ModuleDirs {
		if _, err := os.Stat(filepath.Join(dir, "module.yaml")); err == nil {
			paths = append(paths, filepath.Join(dir, "module.yaml"))
		}
		found, _ := filepath.Glob(filepath.Join(dir, "*", "module.yaml"))
		sort.Strings(found)
		paths = append(paths, found...)
	}
	var errs []error
	for _, p := range paths {
		m, err := manifest.Load(p, Version)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if m.ID == "modules" || m.ID == "assets" {
			errs = append(errs, fmt.Errorf("%s: id: %q is reserved by the host", p, m.ID))
			continue
		}
		if prev, dup := k.modules[m.ID]; dup {
			errs = append(errs, fmt.Errorf("%s: id: module %q is already loaded from %s", p, m.ID, prev.man.File))
			continue
		}
		k.settings.Register(m)
		k.modules[m.ID] = newModule(k, m)
		k.order = append(k.order, m.ID)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("host: load modules: %w", err)
	}
	return nil
}

// Close stops every plugin process and releases the database. A plugin that does
// not exit when asked is killed; Close does not wait on a hung one.
func (k *Kit) Close() error {
	k.closeOnce.Do(func() {
		k.cancel()
		done := make(chan struct{})
		go func() {
			k.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(closeWait):
			k.log.Error("module supervisors did not stop; killing their plugin processes")
			for _, id := range k.order {
				k.modules[id].killCurrent()
			}
			select {
			case <-done:
			case <-time.After(killGrace):
			}
		}
		k.settings.Close()
		k.pool.Close()
	})
	return nil
}

// maxMessage is the largest gRPC message exchanged with plugins, both ways: room for
// the largest WebSocket frame, and at least transport.DefaultMaxMessageSize.
func (k *Kit) maxMessage() int {
	return transport.MaxMessageSize(max(k.cfg.MaxFrameSize, 64<<20))
}

// pluginEnvNames are passed from the host's environment to plugin processes, with
// every variable starting with one of pluginEnvPrefixes.
var pluginEnvNames = []string{
	"PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "TEMP", "TMP", "LANG", "LANGUAGE", "TZ", "ZONEINFO",
	"SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
	"GODEBUG", "GOTRACEBACK", "GOMAXPROCS", "GOMEMLIMIT", "GOGC", "GORACE", "GOCOVERDIR",
	"SYSTEMROOT", "WINDIR", "USERPROFILE", "LOCALAPPDATA", "APPDATA",
}

var pluginEnvPrefixes = []string{"LC_", "FIBERKIT_", "PG"}

// pluginEnv is the environment plugin processes start with (go-plugin adds its own
// handshake variables).
func (k *Kit) pluginEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		pass := slices.Contains(pluginEnvNames, name)
		for _, p := range pluginEnvPrefixes {
			pass = pass || strings.HasPrefix(name, p)
		}
		if pass && name != transport.Handshake().MagicCookieKey && name != transport.MaxMessageEnv {
			env = append(env, kv)
		}
	}
	for _, e := range k.cfg.PluginEnv {
		if strings.Contains(e, "=") {
			env = append(env, e)
		} else if v, ok := os.LookupEnv(e); ok {
			env = append(env, e+"="+v)
		}
	}
	return append(env, fmt.Sprintf("%s=%d", transport.MaxMessageEnv, k.maxMessage()))
}

// Modules reports each module's state, in load order.
func (k *Kit) Modules() []ModuleStatus {
	out := make([]ModuleStatus, 0, len(k.order))
	for _, id := range k.order {
		out = append(out, k.modules[id].status())
	}
	return out
}

// Module reports one module's state.
func (k *Kit) Module(id string) (ModuleStatus, bool) {
	m, ok := k.modules[id]
	if !ok {
		return ModuleStatus{}, false
	}
	return m.status(), true
}

// Settings returns the kit's settings store, for apps that edit settings in code.
func (k *Kit) Settings() *settings.Store { return k.settings }

// SetEnabled turns a module on or off at once, as the admin toggle does.
func (k *Kit) SetEnabled(ctx context.Context, id string, on bool, actor string) error {
	if _, ok := k.modules[id]; !ok {
		return fmt.Errorf("host: %w", errUnknownModule(id))
	}
	if err := k.settings.Set(ctx, id, map[string]string{"enabled": fmt.Sprint(on)}, actor); err != nil {
		return err
	}
	// Routes follow the flag at once; the supervisor starts or stops the process.
	if err := k.modules[id].refreshEnabled(ctx); err != nil {
		k.log.Warn("re-read enabled flag", "module", id, "err", err)
	}
	return nil
}

// Mount registers the kit's routes on app: each module's prefix once (dispatched
// through the module registry, so a disabled module answers 404 without any route
// being removed) and the admin pages behind the admin auth middleware.
func (k *Kit) Mount(app *fiber.App) {
	// Module routes (public and admin) stream request bodies to the module: fasthttp
	// must not parse multipart uploads before the handler runs (it would spool them
	// and the proxy would then rebuild the body in memory). FiberConfig sets this too;
	// this covers apps made without it. The app's own form handlers still parse
	// multipart bodies on demand.
	app.Server().DisablePreParseMultipartForm = true
	adminChain := []fiber.Handler{k.adminGuard}
	k.admin.mount(app, adminChain)
	for _, id := range k.order {
		m := k.modules[id]
		app.All(k.cfg.Prefix+"/"+id, m.dispatchPublic)
		app.All(k.cfg.Prefix+"/"+id+"/*", m.dispatchPublic)
		app.All(k.cfg.AdminPrefix+"/"+id, k.adminGuard, k.admin.checkCSRF, m.dispatchAdmin)
		app.All(k.cfg.AdminPrefix+"/"+id+"/*", k.adminGuard, k.admin.checkCSRF, m.dispatchAdmin)
	}
}

// adminGuard runs the app's auth middleware, or lets everyone in dev mode.
func (k *Kit) adminGuard(c *fiber.Ctx) error {
	if k.cfg.AdminAuth == nil {
		c.Locals(UserLocal, "dev")
		return c.Next()
	}
	return k.cfg.AdminAuth(c)
}
