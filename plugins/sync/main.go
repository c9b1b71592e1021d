// Command fiberkit-sync is the Sync module's plugin binary: peer-to-peer PostgreSQL
// data sync between two instances of an app. The host starts it (see module.yaml).
package main

import (
	"os"
	"runtime/debug"

	"github.com/fiberkit/fiberkit/plugins/sync/internal/server"
	"github.com/fiberkit/fiberkit/sdk"
)

// memoryLimit is the plugin's soft memory limit unless GOMEMLIMIT sets one: a
// transfer makes megabytes of garbage per batch (each batch is copied on its way to
// the host), which the garbage collector would otherwise let double the heap.
const memoryLimit = 64 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	sdk.Serve(server.New(sdk.Logger()).Module())
}
