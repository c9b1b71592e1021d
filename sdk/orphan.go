package sdk

import (
	"context"
	"time"
)

// hostCheckInterval is how often a plugin process checks that its host is alive.
const hostCheckInterval = 250 * time.Millisecond

// watchHost calls gone once the process's parent, as parent reports it, differs from
// what it was when watchHost started: the host that started the plugin has died and
// the process was handed to init (or a subreaper). A parent that was 1 from the start
// (a host running as a container's init) is still a parent. watchHost returns when
// ctx ends or after calling gone.
func watchHost(ctx context.Context, interval time.Duration, parent func() int, gone func(was, now int)) {
	was := parent()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if now := parent(); now != was {
				gone(was, now)
				return
			}
		}
	}
}
