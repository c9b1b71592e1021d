// Command fiberkit-sync is the Sync module's plugin binary: peer-to-peer PostgreSQL
// data sync between two instances of an app. The host starts it (see module.yaml).
package main

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"

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
		go followLiveSet(memoryLimit, 2*time.Second)
	}
	sdk.Serve(server.New(sdk.Logger()).Module())
}

// followLiveSet raises the soft memory limit above what the process really holds
// (live heap and goroutine stacks) and lowers it back to floor when that shrinks.
// A fixed limit below the live set — thousands of waiting live-sync readers hold
// more than 64 MiB of stacks and heap — would make the collector run without end
// (it took most of the plugin's CPU in bench/shapebench); a transfer's live set is
// small, so it keeps the floor.
func followLiveSet(floor int64, every time.Duration) {
	samples := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	for range time.Tick(every) {
		metrics.Read(samples)
		var held int64
		for _, s := range samples {
			if s.Value.Kind() == metrics.KindUint64 {
				held += int64(s.Value.Uint64())
			}
		}
		debug.SetMemoryLimit(max(floor, held+held/2))
	}
}
