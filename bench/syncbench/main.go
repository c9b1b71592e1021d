// Command syncbench measures a Sync transfer through the whole stack — receiver
// client → sender host → sender plugin → sender database, back over the WebSocket,
// into the receiver database — side by side in one run with the plain
// `COPY … TO STDOUT | COPY … FROM STDIN` pipe between the same two databases, and
// with a PhoenixKit-style path (OFFSET pages of 500 records as JSON, one INSERT per
// row). It prints a table and, last, one JSON line.
//
//	go run ./bench/syncbench               # 1,000,000 rows
//	go run ./bench/syncbench -rows 100000  # quicker
//
// Three processes take part: this one (the receiving client), a sender host it
// starts (itself, re-executed with -sender) and the sender's Sync plugin. Each one's
// peak RSS is reported. The PhoenixKit-style path is timed on the first -pk-rows rows
// (it is quadratic in OFFSET and makes one round trip per row) and compared by
// throughput.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/bench/internal/measure"
	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/ddl"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/sample"
)

func main() {
	rows := flag.Int("rows", 1_000_000, "rows in the table")
	pkRows := flag.Int("pk-rows", 20_000, "rows moved by the PhoenixKit-style path")
	batch := flag.Int("batch", 20000, "rows per batch on the fast path")
	sender := flag.String("sender", "", "internal: run as the sender host for this database URL")
	flag.Parse()
	var err error
	if *sender != "" {
		err = runSender(*sender)
	} else {
		err = run(*rows, *pkRows, *batch)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "syncbench:", err)
		os.Exit(1)
	}
}

type phase struct {
	Name       string  `json:"name"`
	Rows       int     `json:"rows"`
	Seconds    float64 `json:"seconds"`
	RowsPerSec float64 `json:"rows_per_sec"`
	ClientMB   float64 `json:"client_peak_rss_mb"`
}

func run(rows, pkRows, batch int) error {
	ctx := context.Background()
	admin, stop, err := measure.Server(ctx)
	if err != nil {
		return err
	}
	defer stop()
	srcURL, err := measure.CreateDB(ctx, admin, measure.NewName("sb_src"))
	if err != nil {
		return err
	}
	dstURL, err := measure.CreateDB(ctx, admin, measure.NewName("sb_dst"))
	if err != nil {
		return err
	}
	fmt.Printf("filling %d rows…\n", rows)
	if err := sample.Events(ctx, srcURL, rows); err != nil {
		return err
	}
	dst, err := pgxpool.New(ctx, dstURL)
	if err != nil {
		return err
	}
	defer dst.Close()
	src, err := pgxpool.New(ctx, srcURL)
	if err != nil {
		return err
	}
	defer src.Close()
	sch, err := catalog.GetSchema(ctx, src, "events")
	if err != nil {
		return err
	}
	if err := ddl.CreateTable(ctx, dst, sch); err != nil {
		return err
	}

	snd, err := startSender(srcURL)
	if err != nil {
		return err
	}
	defer snd.stop()

	var phases []phase
	timed := func(name string, n int, fn func() error) error {
		measure.ResetPeak()
		start := time.Now()
		if err := fn(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		s := time.Since(start).Seconds()
		phases = append(phases, phase{Name: name, Rows: n, Seconds: s, RowsPerSec: float64(n) / s, ClientMB: measure.PeakMB("self")})
		return nil
	}
	truncate := func() error { _, err := dst.Exec(ctx, "TRUNCATE events"); return err }

	if err := timed("copy pipe", rows, func() error { return measure.Pipe(ctx, src, dst, "events") }); err != nil {
		return err
	}
	if err := truncate(); err != nil {
		return err
	}
	if err := timed("sync fast path", rows, func() error {
		code, err := snd.code()
		if err != nil {
			return err
		}
		c, err := client.Connect(ctx, snd.url, code, client.Options{})
		if err != nil {
			return err
		}
		defer c.Close()
		res, err := c.Transfer(ctx, dst, "events", client.TransferOptions{Strategy: importer.Skip, BatchSize: batch})
		if err == nil && res.Created != rows {
			err = fmt.Errorf("created %d of %d rows", res.Created, rows)
		}
		return err
	}); err != nil {
		return err
	}
	if err := measure.Same(ctx, src, dst, "events"); err != nil {
		return err
	}
	if err := truncate(); err != nil {
		return err
	}
	n := min(pkRows, rows)
	if err := timed("phoenixkit-style", n, func() error { return phoenixKitStyle(ctx, snd, dst, n) }); err != nil {
		return err
	}
	senderMB, pluginMB, err := snd.peaks()
	if err != nil {
		return err
	}

	pipeT := phases[0].Seconds
	fmt.Printf("\n%-18s %9s %10s %12s %8s %10s\n", "path", "rows", "seconds", "rows/s", "× pipe", "client MB")
	for _, p := range phases {
		fmt.Printf("%-18s %9d %10.2f %12.0f %8.2f %10.1f\n", p.Name, p.Rows, p.Seconds, p.RowsPerSec, p.Seconds/pipeT*float64(rows)/float64(p.Rows), p.ClientMB)
	}
	fmt.Printf("peak RSS: receiver client %.1f MB, sender host %.1f MB, sender plugin %.1f MB\n", maxClient(phases), senderMB, pluginMB)
	out := map[string]any{
		"rows": rows, "batch": batch, "phases": phases,
		"fast_vs_pipe":          measure.Round(phases[1].Seconds / pipeT),
		"fast_vs_phoenixkit":    measure.Round(phases[1].RowsPerSec / phases[2].RowsPerSec),
		"peak_rss_mb":           map[string]float64{"receiver_client": maxClient(phases), "sender_host": senderMB, "sender_plugin": pluginMB},
		"phoenixkit_rows_timed": n,
	}
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
	return nil
}

func maxClient(ps []phase) float64 {
	m := 0.0
	for _, p := range ps {
		m = max(m, p.ClientMB)
	}
	return m
}

// phoenixKitStyle moves n rows the way PhoenixKit's client does: request:records
// pages of 500 by OFFSET, decoded from JSON, written one INSERT per row.
func phoenixKitStyle(ctx context.Context, snd *sender, dst *pgxpool.Pool, n int) error {
	code, err := snd.code()
	if err != nil {
		return err
	}
	c, err := client.Connect(ctx, snd.url, code, client.Options{})
	if err != nil {
		return err
	}
	defer c.Close()
	cols := []string{"id", "uid", "title", "qty", "amount", "active", "tags", "payload", "created_at", "blob", "notes"}
	placeholders := make([]string, len(cols))
	for i := range cols {
		placeholders[i] = fmt.Sprintf("$%d", i+1)
	}
	insert := "INSERT INTO events (" + strings.Join(cols, ", ") + ") VALUES (" + strings.Join(placeholders, ", ") + ")"
	done := 0
	for done < n {
		page, err := c.FetchRecords(ctx, "events", done, min(500, n-done))
		if err != nil {
			return err
		}
		for _, rec := range page.Records {
			args := make([]any, len(cols))
			for i, col := range cols {
				if v := rec[col]; v != nil {
					args[i] = *v
				}
			}
			if _, err := dst.Exec(ctx, insert, args...); err != nil {
				return err
			}
		}
		done += len(page.Records)
		if !page.HasMore || len(page.Records) == 0 {
			break
		}
	}
	return nil
}

// sender is the sender host child process. It reads commands on stdin and answers
// one line each on stdout.
type sender struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
	url string
}

func startSender(dbURL string) (*sender, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-sender", dbURL)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &sender{cmd: cmd, in: in, out: bufio.NewReader(out)}
	line, err := s.out.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("sender host did not start: %w", err)
	}
	s.url = strings.TrimSpace(line)
	return s, nil
}

func (s *sender) ask(cmd string) (string, error) {
	if _, err := fmt.Fprintln(s.in, cmd); err != nil {
		return "", err
	}
	line, err := s.out.ReadString('\n')
	return strings.TrimSpace(line), err
}

func (s *sender) code() (string, error) { return s.ask("code") }

func (s *sender) peaks() (float64, float64, error) {
	line, err := s.ask("peaks")
	if err != nil {
		return 0, 0, err
	}
	var host, plugin float64
	_, err = fmt.Sscanf(line, "%f %f", &host, &plugin)
	return host, plugin, err
}

func (s *sender) stop() {
	_ = s.in.Close()
	_ = s.cmd.Wait()
}

// runSender is the child: a host app with the Sync module on the source database.
func runSender(dbURL string) error {
	ctx := context.Background()
	root, err := repoRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "syncbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "fiberkit-sync")
	build := exec.Command("go", "build", "-o", bin, "./plugins/sync")
	build.Dir, build.Stderr = root, os.Stderr
	if err := build.Run(); err != nil {
		return err
	}
	manifest, err := os.ReadFile(filepath.Join(root, "module.yaml"))
	if err != nil {
		return err
	}
	m := strings.Replace(string(manifest), "executable: bin/fiberkit-sync", "executable: "+bin, 1)
	mpath := filepath.Join(dir, "module.yaml")
	cfg := filepath.Join(dir, "fiberkit.yaml")
	if err := os.WriteFile(mpath, []byte(m), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(cfg, []byte("modules:\n  sync:\n    enabled: true\n    settings:\n      incoming_mode: auto_accept\n"), 0o644); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	kit, err := host.New(ctx, host.Config{DatabaseURL: dbURL, ConfigFile: cfg, Manifests: []string{mpath}, InsecureDevAdmin: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	defer kit.Close()
	app := fiber.New(host.FiberConfig())
	kit.Mount(app)
	go func() { _ = app.Listener(ln) }()
	defer app.Shutdown()
	fmt.Println("http://" + ln.Addr().String())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "code":
			out, err := kit.Call(ctx, "bench", "sync", "create_session", []byte(`{}`))
			var s struct {
				Code string `json:"code"`
			}
			if err == nil {
				err = json.Unmarshal(out, &s)
			}
			if err != nil {
				fmt.Println("error")
				continue
			}
			fmt.Println(s.Code)
		case "peaks":
			st, _ := kit.Module("sync")
			fmt.Printf("%.1f %.1f\n", measure.PeakMB("self"), measure.PeakMB(strconv.Itoa(st.PID)))
		}
	}
	return nil
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		return "", fmt.Errorf("run from the FiberKit repository")
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}
