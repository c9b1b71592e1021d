// Command hello is a small FiberKit module: one route, one setting, one WebSocket
// endpoint and one operation. It is the example to copy when writing a module.
package main

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/fiberkit/fiberkit/sdk"
)

// GreetIn is the input of the "greet" operation.
type GreetIn struct {
	Name string `json:"name"`
}

// GreetOut is its output.
type GreetOut struct {
	Message string `json:"message"`
	// Caller is who the host says called, e.g. "plugin:greeter-client".
	Caller string `json:"caller"`
}

func main() {
	var greeting atomic.Value
	greeting.Store("Hello")

	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		if name == "" {
			name = "world"
		}
		fmt.Fprintf(w, "%s, %s!\n", greeting.Load(), name)
	})

	sdk.Serve(sdk.Module{
		ID:   "hello",
		HTTP: mux,
		WebSockets: map[string]sdk.WebSocketHandler{
			// Echo every message back, prefixed with the greeting.
			"/echo": func(ctx context.Context, c *sdk.Conn) error {
				for {
					t, data, err := c.ReadMessage()
					if err != nil {
						return nil // closed by the client
					}
					if t == sdk.TextMessage {
						data = []byte(fmt.Sprintf("%s: %s", greeting.Load(), data))
					}
					if err := c.WriteMessage(t, data); err != nil {
						return err
					}
				}
			},
		},
		Operations: sdk.Operations{
			"greet": sdk.Op(func(ctx context.Context, in GreetIn) (GreetOut, error) {
				if in.Name == "" {
					return GreetOut{}, sdk.Errorf(sdk.CodeInvalidInput, "name is required")
				}
				c := sdk.CallerFrom(ctx)
				who := "user:" + c.User
				if c.Plugin != "" {
					who = "plugin:" + c.Plugin
				}
				return GreetOut{Message: fmt.Sprintf("%s, %s!", greeting.Load(), in.Name), Caller: who}, nil
			}),
		},
		Configure: func(ctx context.Context, env *sdk.Env) error {
			if g := env.Settings.String("greeting"); g != "" {
				greeting.Store(g)
			}
			return nil
		},
	})
}
