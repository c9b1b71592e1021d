package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// fakeSender answers the join and then whatever its handler says; it never closes
// the connection on its own.
type fakeSender struct {
	srv    *httptest.Server
	mu     sync.Mutex
	events []string
	handle func(conn *websocket.Conn, f wire.Frame)
}

func newFakeSender(t *testing.T, handle func(conn *websocket.Conn, f wire.Frame)) *fakeSender {
	fs := &fakeSender{handle: handle}
	up := websocket.Upgrader{}
	fs.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				<-r.Context().Done() // hold the connection open
				return
			}
			f, err := wire.Decode(data)
			if err != nil {
				continue
			}
			fs.mu.Lock()
			fs.events = append(fs.events, f.Event+" "+string(f.Payload))
			fs.mu.Unlock()
			if f.Event == wire.EventJoin {
				_ = conn.WriteMessage(websocket.TextMessage, wire.New(f.JoinRef, f.Ref, f.Topic, wire.EventReply, wire.Reply{Status: "ok", Response: map[string]any{}}).Encode())
				continue
			}
			if fs.handle != nil {
				fs.handle(conn, f)
			}
		}
	}))
	t.Cleanup(fs.srv.Close)
	return fs
}

func (fs *fakeSender) saw(event string) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, e := range fs.events {
		if strings.HasPrefix(e, event) {
			return true
		}
	}
	return false
}

func batchFrame(sid uint32) []byte {
	b := make([]byte, 30)
	copy(b, "FKB1")
	b[8], b[9], b[10], b[11] = byte(sid>>24), byte(sid>>16), byte(sid>>8), byte(sid)
	return b
}

// A sender that ignores the credit cannot block the reader: the stream is ended
// with ErrProtocol, the sender is told to cancel it, and replies still arrive.
func TestSenderIgnoringCreditEndsTheStreamNotTheReader(t *testing.T) {
	fs := newFakeSender(t, func(conn *websocket.Conn, f wire.Frame) {
		if f.Event == wire.RequestCapabilities {
			for range 50 {
				_ = conn.WriteMessage(websocket.BinaryMessage, batchFrame(7))
			}
			_ = conn.WriteMessage(websocket.TextMessage, wire.New(f.JoinRef, f.Ref, f.Topic, wire.ResponseCapabilities, wire.Capabilities{Version: wire.Version}).Encode())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Connect(ctx, fs.srv.URL, "abcd2345", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msgs := make(chan streamMsg, 6) // as a transfer with credit 4 makes it
	c.mu.Lock()
	c.streams[7] = msgs
	c.mu.Unlock()
	caps, err := c.Capabilities(ctx)
	if err != nil || caps.Version != wire.Version {
		t.Fatalf("capabilities after the flood: %+v, %v", caps, err)
	}
	m := <-msgs
	if !errors.Is(m.err, ErrProtocol) {
		t.Fatalf("first message on the flooded stream: batch %d bytes, end %v, err %v", len(m.batch), m.end, m.err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !fs.saw(wire.StreamCancel) {
		if time.Now().After(deadline) {
			t.Fatal("the sender was not told to cancel the stream")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A request whose frame could not be written leaves nothing behind.
func TestFailedWriteLeavesNoPendingRequest(t *testing.T) {
	fs := newFakeSender(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Connect(ctx, fs.srv.URL, " abcd2345 ", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !fs.saw(wire.EventJoin) || c.topic != "transfer:ABCD2345" {
		t.Fatalf("topic %q", c.topic)
	}
	// Writes fail from now on; reads still work (the sender holds its side open).
	if err := c.conn.NetConn().(*idleConn).Conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.Capabilities(ctx); err == nil {
			t.Fatal("a request went out on a closed socket")
		}
	}
	c.mu.Lock()
	n := len(c.pending)
	c.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d requests left pending after failed writes", n)
	}
}

// Receiver info goes in a header as ASCII JSON, and not at all when too big.
func TestReceiverInfoHeader(t *testing.T) {
	if h := receiverInfoHeader(map[string]any{"site": "Zürich 🚀", "n": 1}); h != `{"n":1,"site":"Z\u00fcrich \ud83d\ude80"}` {
		t.Fatalf("header %s", h)
	}
	if h := receiverInfoHeader(map[string]any{"x": strings.Repeat("a", 3000)}); h != "" {
		t.Fatalf("oversized info sent: %d bytes", len(h))
	}
}
