package host

import (
	"os/exec"
	"syscall"
)

// dieWithHost makes the kernel SIGKILL the plugin process when the thread that
// started it exits, which for a Go program means when the host process dies,
// however it dies (kill -9, os.Exit, a signal without a handler). Go's runtime
// ends an OS thread only when a goroutine locked to it returns without unlocking
// it; startLocked keeps the starting thread locked for as long as the process
// lives, so no other goroutine can do that to it.
func dieWithHost(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
