package transport

import (
	"crypto/rand"
	"encoding/hex"
	"net"
)

// listenPrivate listens on an abstract Unix socket: it has no file to leak when the
// process is killed; the token is what keeps others out.
func listenPrivate() (net.Listener, string, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return nil, "", err
	}
	addr := "@fiberkit-exchange-" + hex.EncodeToString(b)
	ln, err := net.Listen("unix", addr)
	if err != nil {
		return nil, "", err
	}
	return ln, addr, nil
}
