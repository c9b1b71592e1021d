//go:build !linux

package transport

import (
	"net"
	"os"
	"path/filepath"
)

// listenPrivate listens on a Unix socket in a directory only this user can enter.
// The directory is left behind when the process exits; it holds only the socket.
func listenPrivate() (net.Listener, string, error) {
	dir, err := os.MkdirTemp("", "fiberkit-exchange-")
	if err != nil {
		return nil, "", err
	}
	addr := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", addr)
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	return ln, addr, nil
}
