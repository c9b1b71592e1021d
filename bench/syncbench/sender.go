package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/fiberkit/fiberkit/bench/internal/measure"
	"github.com/fiberkit/fiberkit/host"
)

// sender is the sender host child process (this program re-executed with -sender).
// It reads commands on stdin and answers one line each on stdout.
type sender struct {
	*measure.Child
	url string
}

func startSender(dbURL, pluginBin, root, profiles string) (*sender, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c, err := measure.StartChild(exec.Command(self, "-sender", dbURL, "-plugin", pluginBin, "-root", root, "-cpuprofile", profiles))
	if err != nil {
		return nil, err
	}
	return &sender{Child: c, url: c.Ready}, nil
}

func (s *sender) ask(cmd string) (string, error) { return s.Ask(cmd) }

// code returns a fresh one-time connection code, as the sender's admin page shows one.
func (s *sender) code() (string, error) {
	c, err := s.ask("code")
	if err == nil && (c == "" || c == "error") {
		err = fmt.Errorf("sender host gave no code")
	}
	return c, err
}

// pids returns the sender host's and its Sync plugin's process ids.
func (s *sender) pids() (hostPID, pluginPID int, err error) {
	line, err := s.ask("pids")
	if err != nil {
		return 0, 0, err
	}
	_, err = fmt.Sscanf(line, "%d %d", &hostPID, &pluginPID)
	if err == nil && pluginPID <= 0 {
		err = fmt.Errorf("the Sync plugin is not running")
	}
	return hostPID, pluginPID, err
}

func (s *sender) stop() { s.Stop() }

// runSender is the child: a host app with the Sync module enabled on the sender
// site's database, as an app developer embeds it, serving HTTP on a free port.
func runSender(dbURL, pluginBin, root, profiles string) error {
	ctx := context.Background()
	pluginEnv, stopProfile, err := measure.ProfileHost(profiles)
	if err != nil {
		return err
	}
	defer stopProfile()
	kit, stopKit, err := measure.SyncHost(ctx, root, pluginBin, dbURL, "      incoming_mode: auto_accept\n", pluginEnv,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer stopKit()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	app := fiber.New(host.FiberConfig())
	kit.Mount(app)
	go func() { _ = app.Listener(ln) }()
	defer func() { _ = app.Shutdown() }()
	// A sending session lives as long as its owner renews it (the admin page polls
	// while it shows the code): renew ours well within the lease.
	go func() {
		for range time.Tick(5 * time.Second) {
			if _, err := kit.Call(ctx, "bench", "sync", "touch_sessions", []byte(`{}`)); err != nil {
				fmt.Fprintln(os.Stderr, "syncbench sender: touch_sessions:", err)
			}
		}
	}()
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
				fmt.Fprintln(os.Stderr, "syncbench sender: create_session:", err)
				fmt.Println("error")
				continue
			}
			fmt.Println(s.Code)
		case "pids":
			st, _ := kit.Module("sync")
			fmt.Printf("%d %d\n", os.Getpid(), st.PID)
		default:
			fmt.Println("error")
		}
	}
	return nil
}
