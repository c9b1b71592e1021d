package host

import "time"

// SetHeadTimeout changes how long the proxy waits for a module's response head, for
// one test; it returns the function restoring the previous value.
func SetHeadTimeout(d time.Duration) (restore func()) {
	old := headTimeout.Swap(int64(d))
	return func() { headTimeout.Store(old) }
}
