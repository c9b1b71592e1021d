// Command rawmodule is a second module for the host kit's tests. It implements
// transport.Module directly rather than through package sdk, so it can do what the
// SDK never does — send pings, pongs and a stray accept, see the client's pings, never
// answer a request — and, run from a directory holding a file named "nohttp", it
// serves no HTTP at all.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/hashicorp/go-plugin"

	"github.com/fiberkit/fiberkit/sdk/transport"
)

type module struct {
	noHTTP bool

	mu   sync.Mutex
	host *transport.HostClient
}

func main() {
	_, err := os.Stat("nohttp")
	m := &module{noHTTP: err == nil}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  transport.Handshake(),
		VersionedPlugins: transport.ServerPlugins(m),
		GRPCServer:       transport.NewServer,
	})
}

func (m *module) Describe(context.Context) (transport.Description, error) {
	return transport.Description{HTTP: !m.noHTTP, WebSocket: true, Operations: []string{"publish"}}, nil
}

func (m *module) Configure(_ context.Context, c transport.Configuration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.host = c.Host
	return nil
}

func (m *module) ServeHTTP(ctx context.Context, head transport.RequestHead, body io.Reader, w transport.ResponseWriter) error {
	if m.noHTTP {
		return transport.ErrUnimplemented
	}
	switch head.Path {
	case "/hang":
		// Never answer: the host must give up on its own.
		<-ctx.Done()
		return ctx.Err()
	case "/echo":
		// Answer at once, then stream the request body back as it arrives.
		if err := w.WriteHead(200, http.Header{"Content-Type": {"application/octet-stream"}}); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
		buf := make([]byte, 32<<10)
		for {
			n, err := body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return werr
				}
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
		}
	case "/sink", "/upload":
		// Read the whole body, then say how much arrived.
		n, err := io.Copy(io.Discard, body)
		if err != nil {
			return err
		}
		return writeJSON(w, map[string]any{"bytes": n, "csrf": head.Header.Get("X-Csrf-Token") != ""})
	case "/headers":
		return writeJSON(w, map[string]any{"header": head.Header})
	}
	if err := w.WriteHead(404, nil); err != nil {
		return err
	}
	_, err := w.Write([]byte("no such path\n"))
	return err
}

func writeJSON(w transport.ResponseWriter, v any) error {
	b, _ := json.Marshal(v)
	if err := w.WriteHead(200, http.Header{"Content-Type": {"application/json"}}); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

func (m *module) ServeWebSocket(ctx context.Context, open transport.WebSocketOpen, s transport.Socket) error {
	if err := s.Send(transport.Message{Kind: transport.Accept}); err != nil {
		return err
	}
	for {
		msg, err := s.Recv()
		if err != nil {
			return nil
		}
		var out []transport.Message
		switch msg.Kind {
		case transport.Close:
			return s.Send(transport.Message{Kind: transport.Close, Code: msg.Code, Reason: msg.Reason})
		case transport.Ping:
			out = append(out, text("got ping "+string(msg.Data)))
		case transport.Pong:
			out = append(out, text("got pong "+string(msg.Data)))
		case transport.Text:
			cmd := string(msg.Data)
			switch {
			case strings.HasPrefix(cmd, "ping:"):
				out = append(out, transport.Message{Kind: transport.Ping, Data: []byte(cmd[5:])}, text("sent ping"))
			case strings.HasPrefix(cmd, "pong:"):
				out = append(out, transport.Message{Kind: transport.Pong, Data: []byte(cmd[5:])}, text("sent pong"))
			case cmd == "accept":
				// A second accept after the upgrade is no frame at all.
				out = append(out, transport.Message{Kind: transport.Accept}, text("after accept"))
			default:
				out = append(out, msg)
			}
		default:
			out = append(out, msg)
		}
		for _, o := range out {
			if err := s.Send(o); err != nil {
				return nil
			}
		}
	}
}

func text(s string) transport.Message {
	return transport.Message{Kind: transport.Text, Data: []byte(s)}
}

func (m *module) Call(ctx context.Context, c transport.Call) ([]byte, error) {
	if c.Operation != "publish" {
		return nil, transport.Errorf(transport.CodeUnknownOperation, "no operation %q", c.Operation)
	}
	var in struct {
		Route string `json:"route"`
		Size  int    `json:"size"`
		Seq   int    `json:"seq"`
	}
	if err := json.Unmarshal(c.Payload, &in); err != nil {
		return nil, transport.Errorf(transport.CodeInvalidInput, "%v", err)
	}
	m.mu.Lock()
	host := m.host
	m.mu.Unlock()
	data := []byte(fmt.Sprintf("%08d", in.Seq))
	if in.Size > len(data) {
		data = append(data, make([]byte, in.Size-len(data))...)
	}
	n, err := host.Publish(ctx, in.Route, transport.Message{Kind: transport.Binary, Data: data})
	if err != nil {
		return nil, err
	}
	return json.Marshal(n)
}
