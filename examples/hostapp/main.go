// Command hostapp is a Fiber app that embeds the FiberKit host kit: its own home
// page, the kit's admin pages behind HTTP basic auth, and the modules found in
// ../plugins and the repository's top-level module.yaml (Sync), and the kit's
// Prometheus metrics at /metrics behind the same auth (or, with -metrics-addr, on a
// separate listener meant for the scraper only).
//
//	make plugins && go run ./examples/hostapp
//	curl -u admin:$ADMIN_PASSWORD http://127.0.0.1:8080/metrics
//
// Without DATABASE_URL it starts a throwaway PostgreSQL cluster from the installed
// server binaries.
package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/basicauth"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/host/devpg"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	config := flag.String("config", "examples/hostapp/fiberkit.yaml", "FiberKit config file (module settings)")
	metricsAddr := flag.String("metrics-addr", "", "serve /metrics on this separate address (no auth: keep it private) instead of behind the admin auth")
	flag.Parse()
	if err := run(*addr, *config, *metricsAddr); err != nil {
		fmt.Fprintln(os.Stderr, "hostapp:", err)
		os.Exit(1)
	}
}

func run(addr, config, metricsAddr string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	dbURL := os.Getenv("DATABASE_URL")
	if dbURL == "" {
		pg, err := devpg.Start(ctx, devpg.Options{})
		if err != nil {
			return err
		}
		defer pg.Stop()
		if dbURL, err = pg.CreateDatabase(ctx, "hostapp"); err != nil {
			return err
		}
		log.Info("started a throwaway PostgreSQL", "url", dbURL)
	}

	password := os.Getenv("ADMIN_PASSWORD")
	if password == "" {
		b := make([]byte, 9)
		_, _ = rand.Read(b)
		password = hex.EncodeToString(b)
		log.Info("admin password generated (set ADMIN_PASSWORD to choose one)", "user", "admin", "password", password)
	}

	adminAuth := basicauth.New(basicauth.Config{
		Authorizer: func(user, pass string) bool {
			return subtle.ConstantTimeCompare([]byte(user), []byte("admin"))&
				subtle.ConstantTimeCompare([]byte(pass), []byte(password)) == 1
		},
		ContextUsername: host.UserLocal,
	})
	kit, err := host.New(ctx, host.Config{
		DatabaseURL: dbURL,
		ConfigFile:  config,
		ModuleDirs:  []string{"examples/plugins", "."},
		PublicURL:   "http://" + addr,
		AdminAuth:   adminAuth,
		Logger:      log,
	})
	if err != nil {
		return err
	}
	defer kit.Close()

	app := fiber.New(host.FiberConfig())
	app.Get("/", func(c *fiber.Ctx) error {
		c.Type("html")
		return c.SendString(`<!doctype html><title>Host app</title><h1>My app</h1>
<p>This is the app's own page. The modules live under <a href="/fiberkit/hello/hello?name=you">/fiberkit/…</a>;
their admin is at <a href="/admin/fiberkit/">/admin/fiberkit/</a> (user admin).</p>` + liveLink(c.Context(), kit))
	})
	kit.Mount(app)
	if metricsAddr == "" {
		// Metrics say which modules run and what they do: the app's own auth guards them.
		app.Get("/metrics", adminAuth, kit.MetricsHandler())
	} else {
		// A listener of its own, reachable by the scraper only (bind it to a private
		// address or firewall it): no credentials to hand to Prometheus.
		srv := &http.Server{Addr: metricsAddr, Handler: kit.MetricsHTTPHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics listener", "addr", metricsAddr, "err", err)
			}
		}()
		defer srv.Close()
		log.Info("metrics", "url", "http://"+metricsAddr+"/metrics")
	}
	go func() {
		<-ctx.Done()
		_ = app.Shutdown()
	}()
	log.Info("listening", "url", "http://"+addr, "admin", "http://"+addr+"/admin/fiberkit/")
	return app.Listen(addr)
}

// liveLink is the home page's link to the sync-report example's live table of
// notices while Sync's live setting is on, or how to turn it on.
func liveLink(ctx context.Context, kit *host.Kit) string {
	snap, err := kit.Settings().Snapshot(ctx, "sync")
	if err != nil {
		return ""
	}
	if v, ok := snap.Get("live"); !ok || v.Value != "true" {
		return `<p>Turn on Sync's <em>Live sync</em> setting in the <a href="/admin/fiberkit/">admin</a> to follow a table live in a page.</p>`
	}
	return `<p>Live sync is on: <a href="/fiberkit/sync-report/notices">table notices, live</a> (the sync-report example; insert, update or delete rows of notices and watch).</p>`
}
