// Command fiberkit-sync is the Sync module's plugin binary: peer-to-peer PostgreSQL
// data sync between two instances of an app. The host starts it (see module.yaml).
package main

import (
	"github.com/fiberkit/fiberkit/plugins/sync/internal/server"
	"github.com/fiberkit/fiberkit/sdk"
)

func main() {
	sdk.Serve(server.New(sdk.Logger()).Module())
}
