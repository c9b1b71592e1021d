// Command twosite is the Sync demo: two sites of one app, each a Fiber host app with
// its own PostgreSQL database and the Sync module. Site A is seeded with a sample
// shop; A creates a one-time code; B pulls every table from A with it; the result of
// each table is printed and both databases are compared. The admin UIs stay up
// until Ctrl-C (or -exit leaves at once, for scripts).
//
// The demo exits 1 when the pull failed (in part or in whole) or the two databases
// differ afterwards: every table's result that came back is printed, then why.
//
//	go run ./examples/twosite
//
// Without DATABASE_URL it starts a throwaway PostgreSQL from the installed server
// binaries.
package main

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/basicauth"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/host/devpg"
	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/sample"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

func main() {
	exit := flag.Bool("exit", false, "exit after the transfer instead of keeping the UIs up")
	addrA := flag.String("a", "127.0.0.1:4001", "site A's listen address")
	addrB := flag.String("b", "127.0.0.1:4002", "site B's listen address")
	strategy := flag.String("strategy", "skip", "conflict strategy: skip, overwrite, merge or append")
	flag.Parse()
	if err := run(*addrA, *addrB, *strategy, *exit); err != nil {
		fmt.Fprintln(os.Stderr, "twosite:", err)
		os.Exit(1)
	}
}

// site is one running host app.
type site struct {
	name string
	kit  *host.Kit
	app  *fiber.App
	url  string
	db   string
}

func run(addrA, addrB, strategy string, exitAfter bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	root, err := repoRoot()
	if err != nil {
		return err
	}
	fmt.Println("• building the Sync plugin…")
	build := exec.Command("go", "build", "-o", filepath.Join(root, "bin", "fiberkit-sync"), "./plugins/sync")
	build.Dir, build.Stdout, build.Stderr = root, os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build the Sync plugin: %w", err)
	}

	admin := os.Getenv("DATABASE_URL")
	if admin == "" {
		fmt.Println("• starting a throwaway PostgreSQL…")
		pg, err := devpg.Start(ctx, devpg.Options{})
		if err != nil {
			return err
		}
		defer pg.Stop()
		admin = pg.URL("postgres")
	}
	suffix := randomHex(3)
	dbA, err := createDB(ctx, admin, "site_a_"+suffix)
	if err != nil {
		return err
	}
	dbB, err := createDB(ctx, admin, "site_b_"+suffix)
	if err != nil {
		return err
	}
	fmt.Println("• seeding site A with a sample shop…")
	if err := sample.Seed(ctx, dbA); err != nil {
		return err
	}

	password := os.Getenv("ADMIN_PASSWORD")
	if password == "" {
		password = randomHex(6)
	}
	cfgDir, err := os.MkdirTemp("", "fiberkit-twosite-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(cfgDir)
	a, err := startSite(ctx, "A", addrA, dbA, root, cfgDir, password, log)
	if err != nil {
		return err
	}
	defer a.close()
	b, err := startSite(ctx, "B", addrB, dbB, root, cfgDir, password, log)
	if err != nil {
		return err
	}
	defer b.close()

	// A (the sender) makes a code, as its Send page would.
	var sess struct {
		Code string `json:"code"`
	}
	if err := call(ctx, a, "create_session", map[string]any{"handle": "demo"}, &sess); err != nil {
		return fmt.Errorf("create a code on A: %w", err)
	}
	go keepAlive(ctx, a)
	fmt.Printf("• site A's code: %s\n", sess.Code)

	// B (the receiver) pulls every table with it.
	fmt.Printf("• site B pulls every table from %s (strategy %s)…\n", a.url, strategy)
	start := time.Now()
	var results map[string]client.Result
	pullErr := call(ctx, b, "pull", map[string]any{"url": a.url, "code": sess.Code, "strategy": strategy, "create_missing": true}, &results)
	printResults(results, time.Since(start))
	if pullErr != nil {
		fmt.Printf("✗ pull: %v\n", pullErr)
	}
	fmt.Println()
	same, err := compare(ctx, dbA, dbB)
	if err != nil {
		return err
	}
	failure := verdict(pullErr, results, same)
	if failure != nil {
		fmt.Printf("\n✗ %v\n", failure)
	}

	fmt.Printf("\nSite A: %s/admin/fiberkit/   Site B: %s/admin/fiberkit/   (user admin, password %s)\n", a.url, b.url, password)
	if !exitAfter {
		fmt.Println("Both sites stay up until Ctrl-C.")
		<-ctx.Done()
	}
	return failure
}

// verdict is the demo's outcome: nil only when the pull worked for every table and
// both databases hold the same rows.
func verdict(pullErr error, results map[string]client.Result, same bool) error {
	var problems []string
	if pullErr != nil {
		problems = append(problems, fmt.Sprintf("the pull failed: %v", pullErr))
	}
	if failed := syncapi.FailedTables(results); len(failed) > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d tables failed (%s)", len(failed), len(results), strings.Join(failed, ", ")))
	}
	if !same {
		problems = append(problems, "the two databases differ after the transfer")
	}
	if len(problems) == 0 {
		return nil
	}
	return errors.New(strings.Join(problems, "; "))
}

func startSite(ctx context.Context, name, addr, db, root, cfgDir, password string, log *slog.Logger) (*site, error) {
	cfg := filepath.Join(cfgDir, "site-"+strings.ToLower(name)+".yaml")
	if err := os.WriteFile(cfg, []byte("modules:\n  sync:\n    enabled: true\n    settings:\n      incoming_mode: auto_accept\n      allow_internal_urls: true\n"), 0o644); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("site %s: %w", name, err)
	}
	u := "http://" + ln.Addr().String()
	kit, err := host.New(ctx, host.Config{
		DatabaseURL: db, ConfigFile: cfg, Manifests: []string{filepath.Join(root, "module.yaml")}, PublicURL: u,
		AdminAuth: basicauth.New(basicauth.Config{
			Authorizer: func(user, pass string) bool {
				return subtle.ConstantTimeCompare([]byte(user), []byte("admin"))&subtle.ConstantTimeCompare([]byte(pass), []byte(password)) == 1
			},
			ContextUsername: host.UserLocal,
		}),
		Logger: log.With("site", name),
	})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("site %s: %w", name, err)
	}
	app := fiber.New(host.FiberConfig())
	app.Get("/", func(c *fiber.Ctx) error {
		return c.Type("html").SendString("<!doctype html><title>Site " + name + "</title><h1>Site " + name + "</h1><p><a href=\"/admin/fiberkit/\">Admin</a></p>")
	})
	kit.Mount(app)
	go func() { _ = app.Listener(ln) }()
	st, _ := kit.Module("sync")
	if st.State != host.StateRunning {
		kit.Close()
		return nil, fmt.Errorf("site %s: the Sync module is %s: %s", name, st.State, st.LastError)
	}
	return &site{name: name, kit: kit, app: app, url: u, db: db}, nil
}

func (s *site) close() {
	_ = s.app.ShutdownWithTimeout(3 * time.Second)
	_ = s.kit.Close()
}

func call(ctx context.Context, s *site, op string, in, out any) error {
	payload, err := json.Marshal(in)
	if err != nil {
		return err
	}
	res, err := s.kit.Call(ctx, "demo", "sync", op, payload)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(res, out); err != nil {
		return fmt.Errorf("%s: decode the answer: %w", op, err)
	}
	return nil
}

// keepAlive renews the code's session, as an open Send page does.
func keepAlive(ctx context.Context, s *site) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			var ok bool
			_ = call(ctx, s, "touch_sessions", map[string]any{"handle": "demo"}, &ok)
		}
	}
}

func printResults(results map[string]client.Result, took time.Duration) {
	if len(results) == 0 {
		fmt.Printf("\nno table results came back (%.2fs)\n", took.Seconds())
		return
	}
	names := make([]string, 0, len(results))
	for n := range results {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Printf("\n%-14s %8s %8s %8s %8s %7s %9s\n", "table", "rows", "created", "updated", "skipped", "failed", "time")
	for _, n := range names {
		r := results[n]
		fmt.Printf("%-14s %8d %8d %8d %8d %7d %8.2fs\n", n, r.Rows, r.Created, r.Updated, r.Skipped, r.Failed, r.Duration.Seconds())
		if r.Error != "" {
			fmt.Printf("  ! %s\n", r.Error)
		}
	}
	fmt.Printf("transfer took %.2fs\n", took.Seconds())
}

// compare checks each sample table holds the same bytes on both sites, and reports
// whether they all do. A table missing on B counts as different.
func compare(ctx context.Context, dbA, dbB string) (bool, error) {
	same := true
	for _, t := range sample.Tables() {
		a, err := checksum(ctx, dbA, t[0], t[1])
		if err != nil {
			return false, fmt.Errorf("site A, %s: %w", t[0], err)
		}
		b, err := checksum(ctx, dbB, t[0], t[1])
		if err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "42P01" { // undefined_table
				fmt.Printf("%-14s ✗ MISSING on site B\n", t[0])
				same = false
				continue
			}
			return false, fmt.Errorf("site B, %s: %w", t[0], err)
		}
		mark := "✓ identical"
		if a != b {
			mark = "✗ DIFFERENT"
			same = false
		}
		fmt.Printf("%-14s %s (md5 %s)\n", t[0], mark, b[:12])
	}
	return same, nil
}

func checksum(ctx context.Context, db, table, order string) (string, error) {
	pool, err := pgxpool.New(ctx, db)
	if err != nil {
		return "", err
	}
	defer pool.Close()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Release()
	h := md5.New()
	_, err = conn.Conn().PgConn().CopyTo(ctx, h, "COPY (SELECT * FROM "+table+" ORDER BY "+order+") TO STDOUT")
	return hex.EncodeToString(h.Sum(nil)), err
}

func createDB(ctx context.Context, admin, name string) (string, error) {
	if err := devpg.CreateDatabase(ctx, admin, name); err != nil {
		return "", err
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		return "", fmt.Errorf("run the demo from the FiberKit repository (go env GOMOD: %v)", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
