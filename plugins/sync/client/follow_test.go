package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// A sender that ends the follow and closes at once: the receiver gets the
// follow:end's refusal, not the close, even when both are waiting by the time it
// looks (a slow keepalive handler holds it while they arrive).
func TestFollowEndBeforeCloseIsTheAnswer(t *testing.T) {
	fs := newFakeSender(t, func(conn *websocket.Conn, f wire.Frame) {
		if f.Event != wire.FollowStart {
			return
		}
		send := func(event string, payload any) {
			_ = conn.WriteMessage(websocket.TextMessage, wire.New(nil, nil, f.Topic, event, payload).Encode())
		}
		_ = conn.WriteMessage(websocket.TextMessage, wire.New(f.JoinRef, f.Ref, f.Topic, wire.EventReply, wire.Reply{Status: "ok", Response: map[string]any{}}).Encode())
		send(wire.FollowKeepalive, wire.Keepalive{SenderPosition: "0/10", At: time.Now().UTC().Format(time.RFC3339)})
		send(wire.FollowEnd, wire.FollowEndPayload{Error: "record_limit", Message: "the connection's records are used up"})
		_ = conn.Close()
	})
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := Connect(ctx, fs.srv.URL, "abcd2345", Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = c.Follow(ctx, "0/1", FollowOptions{
			Apply:     func(context.Context, wire.Txn) (bool, error) { return true, nil },
			Keepalive: func(context.Context, wire.Keepalive) { time.Sleep(50 * time.Millisecond) },
		})
		c.Close()
		cancel()
		var re *RemoteError
		if !errors.As(err, &re) || re.Code != "record_limit" {
			t.Fatalf("run %d: follow returned %v, want the sender's record_limit", i, err)
		}
	}
}
