package measure

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"

	"github.com/fiberkit/fiberkit/sdk"
)

// Child is a helper process a benchmark drives by lines (a host app re-executed
// from the benchmark's own binary): its first line on stdout says it is ready
// (Ready holds it), then each command written to its stdin gets one line back.
type Child struct {
	Cmd   *exec.Cmd
	Ready string
	in    io.WriteCloser
	out   *bufio.Reader
}

// StartChild starts cmd (its stderr to ours) and waits for its first line.
func StartChild(cmd *exec.Cmd) (*Child, error) {
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
	c := &Child{Cmd: cmd, in: in, out: bufio.NewReader(out)}
	line, err := c.out.ReadString('\n')
	if err != nil {
		_ = cmd.Wait()
		return nil, fmt.Errorf("%s did not start: %w", cmd.Path, err)
	}
	c.Ready = strings.TrimSpace(line)
	return c, nil
}

// Ask writes a command line and returns the answer line, trimmed.
func (c *Child) Ask(cmd string) (string, error) {
	if _, err := fmt.Fprintln(c.in, cmd); err != nil {
		return "", err
	}
	line, err := c.out.ReadString('\n')
	return strings.TrimSpace(line), err
}

// Stop closes the child's stdin, which tells it to end, and waits for it.
func (c *Child) Stop() {
	_ = c.in.Close()
	_ = c.Cmd.Wait()
}

// ProfileHost, with a dir, writes a CPU profile of this process (a benchmark's
// host child) to dir/host.pprof until stop, and returns the environment entry
// that makes its Sync plugin profile itself to dir/plugin.pprof. Without a dir it
// does nothing.
func ProfileHost(dir string) (pluginEnv []string, stop func(), err error) {
	if dir == "" {
		return nil, func() {}, nil
	}
	f, err := os.Create(filepath.Join(dir, "host.pprof"))
	if err != nil {
		return nil, nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, nil, err
	}
	stop = func() {
		pprof.StopCPUProfile()
		f.Close()
	}
	return []string{sdk.CPUProfileEnv + "=" + filepath.Join(dir, "plugin.pprof")}, stop, nil
}
