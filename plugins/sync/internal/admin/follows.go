package admin

import (
	"fmt"
	"time"
)

// lagText words a follow's lag: how long ago the oldest change not yet applied (or
// acknowledged) was committed, and how much of the sender's WAL lies beyond it.
func lagText(seconds float64, bytes int64) string {
	if seconds <= 0 && bytes <= 0 {
		return "caught up"
	}
	return fmt.Sprintf("%s, %s", time.Duration(seconds*float64(time.Second)).Round(time.Millisecond), humanBytes(bytes))
}
