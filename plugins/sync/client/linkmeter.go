package client

import (
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// Compressing pays only where the link holds a transfer back: on a fast link zstd
// costs the sender and the receiver more CPU than the bytes it saves take to send,
// and both ends usually have better uses for it (reading and writing the rows). A
// stream started with wire.CompressionAuto is sent uncompressed, and the receiver —
// the one end that sees both how long it waits for batches and how fast it writes
// them — switches zstd on when, over a window of batches, it spent a good part of
// the time waiting for the next batch while the link delivered less than
// slowLinkBytes a second. Once on it stays on, unless the batches turn out not to
// compress (then it is switched off for good).
const (
	// slowLinkBytes is the delivery rate below which a waiting receiver asks for
	// zstd: 40 MB/s (320 Mbit/s) is well under what the fastest zstd level
	// compresses on one core (≥ 200 MB/s), so compressing never becomes the new
	// bottleneck, and well over a WAN link's.
	slowLinkBytes = 40 << 20
	// waitingShare is the share of a window spent waiting for batches from which
	// the link, not the local database, is taken as what holds the transfer back.
	waitingShare = 0.3
	// meterWindow is how many batches a decision looks at; the first window starts
	// after the first batch (which carries the stream's start-up).
	meterWindow = 4
	// poorRatio: compressed batches at least this share of their raw size are not
	// worth compressing.
	poorRatio = 0.9
)

// linkMeter decides, batch by batch, whether an auto stream should compress.
type linkMeter struct {
	auto bool

	on, off bool // compression switched on; switched off for good
	asked   string

	windowStart time.Time
	waited      time.Duration
	waitFrom    time.Time
	wire, raw   int64
	batches     int
	seen        int
}

func newLinkMeter(auto bool) *linkMeter { return &linkMeter{auto: auto} }

// waitStart and waitEnd bracket a wait for the next batch.
func (m *linkMeter) waitStart() {
	if m.auto {
		m.waitFrom = time.Now()
	}
}

func (m *linkMeter) waitEnd() {
	if m.auto && !m.waitFrom.IsZero() {
		m.waited += time.Since(m.waitFrom)
		m.waitFrom = time.Time{}
	}
}

// batch records a batch of wireLen bytes as received, rawLen decoded.
func (m *linkMeter) batch(wireLen, rawLen int) {
	if !m.auto {
		return
	}
	m.seen++
	if m.seen == 1 {
		m.reset()
		return
	}
	m.wire += int64(wireLen)
	m.raw += int64(rawLen)
	m.batches++
}

func (m *linkMeter) reset() {
	m.windowStart, m.waited, m.wire, m.raw, m.batches = time.Now(), 0, 0, 0, 0
}

// decide returns the compression switch for the next ack ("" for none): zstd when
// the window shows a slow link, none when compressed batches do not shrink.
func (m *linkMeter) decide() string {
	if !m.auto || m.off || m.batches < meterWindow {
		return ""
	}
	elapsed := time.Since(m.windowStart)
	wireBytes, raw, waited := m.wire, m.raw, m.waited
	m.reset()
	switch {
	case m.on && float64(wireBytes) >= poorRatio*float64(raw):
		// Some of the window may predate the switch; judge again on a full one.
		if m.asked == wire.CompressionZstd {
			m.asked = ""
			return ""
		}
		m.on, m.off = false, true
		return wire.CompressionNone
	case m.on:
		m.asked = ""
		return ""
	}
	if elapsed <= 0 || waited.Seconds() < waitingShare*elapsed.Seconds() {
		return ""
	}
	if float64(wireBytes)/elapsed.Seconds() >= slowLinkBytes {
		return ""
	}
	m.on, m.asked = true, wire.CompressionZstd
	return wire.CompressionZstd
}
