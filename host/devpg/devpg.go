// Package devpg starts a throwaway PostgreSQL cluster from the server binaries
// installed on the machine (initdb, pg_ctl). The demo and the tests use it when no
// DATABASE_URL is given, so a fresh machine with the PostgreSQL server package needs
// nothing else running.
//
// initdb refuses to run as root; when the process is root, the cluster is created and
// run as the "postgres" system user (or "nobody" when there is none).
//
// A cluster does not outlive the process that started it: a watchdog process stops it
// (immediate mode) and removes the directory Start made as soon as that process is
// gone, however it ended — Stop, a panic, a test binary killed by -timeout, kill -9.
package devpg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoServerBinaries is returned by Start when initdb/pg_ctl cannot be found.
var ErrNoServerBinaries = errors.New("devpg: PostgreSQL server binaries (initdb, pg_ctl) not found: " +
	"install them (Debian: apt-get install postgresql) or set DATABASE_URL")

// Options configure Start.
type Options struct {
	// Dir holds the cluster's data and socket directories. Empty means a new
	// temporary directory, removed by Stop.
	Dir string
	// Port to listen on at 127.0.0.1; 0 picks a free one.
	Port int
	// Settings are extra postgresql.conf parameters (name → value). They override
	// the defaults, which include wal_level=logical, max_wal_senders=10 and
	// max_replication_slots=10 so logical replication works out of the box; e.g.
	// {"wal_level": "replica"} gives a cluster without it.
	Settings map[string]string
}

// Server is a running throwaway cluster. Connect as user "postgres" without a password.
type Server struct {
	dir      string
	ownDir   bool
	port     int
	bin      string
	cred     *syscall.Credential
	stopped  bool
	watchdog *exec.Cmd
	lifeline *os.File // the watchdog's stdin; it acts when this end closes
}

// FindBinaries returns the directory holding initdb and pg_ctl: $PG_BIN, the PATH, or
// the newest /usr/lib/postgresql/*/bin.
func FindBinaries() (string, error) {
	if d := os.Getenv("PG_BIN"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", ErrNoServerBinaries
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// Start initialises and starts a cluster. Stop it with Stop.
func Start(ctx context.Context, opts Options) (*Server, error) {
	bin, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	s := &Server{dir: opts.Dir, bin: bin, port: opts.Port}
	if s.dir == "" {
		d, err := os.MkdirTemp("", "fiberkit-pg-")
		if err != nil {
			return nil, fmt.Errorf("devpg: temp dir: %w", err)
		}
		s.dir, s.ownDir = d, true
	}
	if s.port == 0 {
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
	}
	if os.Geteuid() == 0 {
		if s.cred, err = unprivileged(); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(s.dir, "data")
	sock := filepath.Join(s.dir, "sock")
	for _, d := range []string{s.dir, sock} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("devpg: %w", err)
		}
		if s.cred != nil {
			if err := os.Chown(d, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				return nil, fmt.Errorf("devpg: chown %s: %w", d, err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		if out, err := s.run(ctx, "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"); err != nil {
			return nil, fmt.Errorf("devpg: initdb: %w: %s", err, out)
		}
	}
	conf := []string{
		"listen_addresses='127.0.0.1'",
		fmt.Sprintf("port=%d", s.port),
		fmt.Sprintf("unix_socket_directories='%s'", sock),
		"fsync=off", "synchronous_commit=off", "full_page_writes=off",
		"max_connections=300", "wal_level=logical", "max_wal_senders=10", "max_replication_slots=10",
	}
	keys := make([]string, 0, len(opts.Settings))
	for k := range opts.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		conf = append(conf, fmt.Sprintf("%s='%s'", k, opts.Settings[k]))
	}
	if err := os.WriteFile(filepath.Join(data, "postgresql.auto.conf"), []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("devpg: write config: %w", err)
	}
	if s.cred != nil {
		_ = os.Chown(filepath.Join(data, "postgresql.auto.conf"), int(s.cred.Uid), int(s.cred.Gid))
	}
	// The watchdog starts first, so a process killed during pg_ctl start leaves
	// nothing behind either.
	if err := s.startWatchdog(); err != nil {
		return nil, err
	}
	if out, err := s.run(ctx, "pg_ctl", "-D", data, "-l", filepath.Join(s.dir, "server.log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
		_ = s.Stop()
		return nil, fmt.Errorf("devpg: pg_ctl start: %w: %s\n%s", err, out, log)
	}
	if err := s.waitReady(ctx); err != nil {
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

// watchdogScript waits for its stdin to end, then stops the cluster in data ($1) with
// pg_ctl ($0) and removes dir ($2) if set. It ignores the signals a terminal or a
// killed process group would send it (cat inherits that), so only the pipe ends it.
const watchdogScript = `trap '' HUP INT TERM QUIT
cat >/dev/null
"$0" -D "$1" -m immediate -w -t 30 stop >/dev/null 2>&1
if [ -n "$2" ]; then rm -rf "$2"; fi`

// startWatchdog starts the process that stops the cluster once this one is gone. Its
// stdin is a pipe whose write end only this process holds (close-on-exec, so no
// child inherits it): the kernel closes it when this process exits, however it exits.
func (s *Server) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("devpg: watchdog pipe: %w", err)
	}
	defer r.Close()
	remove := ""
	if s.ownDir {
		remove = s.dir
	}
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, filepath.Join(s.bin, "pg_ctl"), filepath.Join(s.dir, "data"), remove)
	cmd.Dir = "/"
	cmd.Stdin = r
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	// Its own process group: Ctrl-C in a terminal, or a group kill, is not for it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: s.cred}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("devpg: start watchdog: %w", err)
	}
	s.watchdog, s.lifeline = cmd, w
	return nil
}

func (s *Server) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, s.URL("postgres"))
		if err == nil {
			return conn.Close(ctx)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("devpg: server did not accept connections: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *Server) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd.CombinedOutput()
}

// URL returns a connection URL for database db on this server.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// Port is the TCP port the server listens on.
func (s *Server) Port() int { return s.port }

// CreateDatabase creates database name (an identifier: letters, digits, underscore) and
// returns its URL.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	if err := CreateDatabase(ctx, s.URL("postgres"), name); err != nil {
		return "", err
	}
	return s.URL(name), nil
}

// CreateDatabase creates database name on the server that adminURL points at.
func CreateDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("devpg: connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("devpg: create database %s: %w", name, err)
	}
	return nil
}

// Stop shuts the server down (fast mode) and removes its directory if Start made it.
func (s *Server) Stop() error {
	if s.stopped {
		return nil
	}
	s.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := s.run(ctx, "pg_ctl", "-D", filepath.Join(s.dir, "data"), "-m", "fast", "-w", "stop")
	if s.ownDir {
		_ = os.RemoveAll(s.dir)
	}
	if s.watchdog != nil {
		// Its turn now: it finds nothing left to stop or remove.
		_ = s.lifeline.Close()
		_ = s.watchdog.Wait()
	}
	if err != nil {
		return fmt.Errorf("devpg: pg_ctl stop: %w: %s", err, out)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("devpg: pick port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func unprivileged() (*syscall.Credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("devpg: running as root and no unprivileged user (postgres, nobody) to run initdb as")
}
