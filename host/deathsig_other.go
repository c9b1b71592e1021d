//go:build !linux

package host

import "os/exec"

// dieWithHost does nothing where there is no parent-death signal: the plugin
// notices that its parent process changed and exits (sdk.Serve).
func dieWithHost(*exec.Cmd) {}
