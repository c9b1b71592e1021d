package host

import (
	"context"
	"errors"
	"testing"
	"time"
)

// M3: a module that sends a second head, or body before its head, gets an error at
// once instead of blocking the exchange forever; and a head written after the
// exchange ended returns.
func TestPipeWriterRefusesWhatWouldBlock(t *testing.T) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		pw := &pipeWriter{ctx: ctx, head: make(chan respHead, 1), body: make(chan chunk, 4)}
		for i := 0; i < 10; i++ {
			if _, err := pw.Write([]byte("early")); !errors.Is(err, errBodyBeforeHead) {
				t.Errorf("body before head: %v", err)
				return
			}
		}
		if err := pw.Flush(); !errors.Is(err, errBodyBeforeHead) {
			t.Errorf("flush before head: %v", err)
		}
		if err := pw.WriteHead(200, nil); err != nil {
			t.Errorf("first head: %v", err)
		}
		if err := pw.WriteHead(200, nil); !errors.Is(err, errSecondHead) {
			t.Errorf("second head: %v", err)
		}
		cancel()
		if _, err := pw.Write([]byte("late")); err == nil {
			// The channel has room: a write may still land; the next ones must not block.
			for i := 0; i < 10; i++ {
				if _, err := pw.Write([]byte("late")); err != nil {
					break
				}
			}
		}
		pw2 := &pipeWriter{ctx: ctx, head: make(chan respHead)} // nobody reads the head
		if err := pw2.WriteHead(200, nil); !errors.Is(err, context.Canceled) {
			t.Errorf("head after the end: %v", err)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("pipeWriter blocked")
	}
}
