package host_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/jackc/pgx/v5"
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

// A plugin does not inherit the host's environment: secrets the host was given
// (e.g. for ${VAR} in the config file) stay in the host.
func TestPluginDoesNotSeeHostEnvironment(t *testing.T) {
	t.Setenv("FOO_SECRET", "do-not-leak-7f3a")
	t.Setenv("SYNC_PASSWORD", "do-not-leak-either")
	t.Setenv("FIBERKIT_SECRET_KEY", "meant-for-plugins")
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	out, err := s.kit.Call(context.Background(), "u", "tm", "env", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	if err := json.Unmarshal(out, &env); err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(env, "\n")
	if strings.Contains(joined, "do-not-leak") {
		t.Fatalf("plugin sees the host's secrets:\n%s", joined)
	}
	for _, want := range []string{"FIBERKIT_SECRET_KEY=meant-for-plugins", "PATH="} {
		found := false
		for _, kv := range env {
			if strings.HasPrefix(kv, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("plugin environment lacks %s:\n%s", want, joined)
		}
	}
}

// The audit log records the plugin that wrote an entry, whatever actor it claims.
func TestPluginAuditActorIsThePlugin(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	ctx := context.Background()
	for _, actor := range []string{"admin:alice", ""} {
		in, _ := json.Marshal(map[string]string{"Action": "probe", "Actor": actor})
		if _, err := s.kit.Call(ctx, "u", "tm", "audit", in); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pgx.Connect(ctx, s.db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT actor FROM fiberkit_audit WHERE action = 'probe' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	actors, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"plugin:tm for admin:alice", "plugin:tm"}
	if strings.Join(actors, "|") != strings.Join(want, "|") {
		t.Fatalf("audit actors %q, want %q", actors, want)
	}
}
