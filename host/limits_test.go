package host_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// Messages above gRPC's default 4 MiB, but under the WebSocket frame limit (16 MiB by
// default), pass through the host in both directions.
func TestLargeWebSocketFrameEchoes(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	c := dialWS(t, wsURL(s, "/fiberkit/tm/ws"), nil)
	msg := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8}, (6<<20)/8)
	if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	typ, data, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("6 MiB frame: %v", err)
	}
	if typ != websocket.BinaryMessage || !bytes.Equal(data, msg) {
		t.Fatalf("6 MiB frame: got type %d, %d bytes", typ, len(data))
	}
}

func TestLargeCallPayloads(t *testing.T) {
	s := startSite(t, kitOptions{ids: []string{"tm", "tm2"}, enabled: []string{"tm", "tm2"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Host → plugin and back.
	big := strings.Repeat("y", 6<<20)
	in, _ := json.Marshal(big)
	out, err := s.kit.Call(ctx, "u", "tm", "echo", in)
	if err != nil {
		t.Fatalf("6 MiB call: %v", err)
	}
	var got string
	if err := json.Unmarshal(out, &got); err != nil || got != big {
		t.Fatalf("6 MiB call: got %d bytes, %v", len(got), err)
	}

	// Plugin → host service → another plugin and back.
	out, err = s.kit.Call(ctx, "u", "tm", "bigcall", []byte(`{"Target":"tm2","Size":6291456}`))
	if err != nil {
		t.Fatalf("6 MiB call between plugins: %v", err)
	}
	if string(out) != "6291456" {
		t.Fatalf("6 MiB call between plugins: got %s", out)
	}
}
