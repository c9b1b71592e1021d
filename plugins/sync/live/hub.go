package live

import (
	"strings"
	"sync"
)

// hub wakes the readers of shapes whose logs grew or that went away. A reader takes
// the wait channel before it reads the log, so a wake-up between its read and its
// wait is not lost.
type hub struct {
	mu    sync.Mutex
	waits map[string]chan struct{}
	subs  map[string]int
}

func newHub() *hub { return &hub{waits: map[string]chan struct{}{}, subs: map[string]int{}} }

// wait returns a channel closed at the next wake of handle.
func (h *hub) wait(handle string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.waits[handle]
	if c == nil {
		c = make(chan struct{})
		h.waits[handle] = c
	}
	return c
}

// wake wakes the readers of handles.
func (h *hub) wake(handles ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, handle := range handles {
		if c := h.waits[handle]; c != nil {
			close(c)
			delete(h.waits, handle)
		}
	}
}

// wakeAll wakes every reader.
func (h *hub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for handle, c := range h.waits {
		close(c)
		delete(h.waits, handle)
	}
}

// notified handles a NOTIFY payload: handles separated by commas, "*" for all; a
// leading "+" or "-" (a shape created or gone) counts as its handle.
func (h *hub) notified(payload string) {
	if payload == "*" {
		h.wakeAll()
		return
	}
	for _, p := range strings.Split(payload, ",") {
		h.wake(strings.TrimLeft(p, "+-"))
	}
}

// subscribe counts a reader of handle until the returned func is called.
func (h *hub) subscribe(handle string) func() {
	h.mu.Lock()
	h.subs[handle]++
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		if h.subs[handle]--; h.subs[handle] <= 0 {
			delete(h.subs, handle)
		}
		h.mu.Unlock()
	}
}

func (h *hub) subscribers(handle string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.subs[handle]
}
