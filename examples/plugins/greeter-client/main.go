// Command greeter-client is an example module that calls another module's operation
// through the host: GET /greet?name=Ada asks the "hello" module to greet Ada.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/fiberkit/fiberkit/sdk"
)

type greetIn struct {
	Name string `json:"name"`
}

type greetOut struct {
	Message string `json:"message"`
	Caller  string `json:"caller"`
}

func main() {
	var host atomic.Pointer[sdk.Host]
	mux := http.NewServeMux()
	mux.HandleFunc("GET /greet", func(w http.ResponseWriter, r *http.Request) {
		h := host.Load()
		if h == nil {
			http.Error(w, "not configured yet", http.StatusServiceUnavailable)
			return
		}
		var out greetOut
		err := h.Call(r.Context(), "hello", "greet", greetIn{Name: r.URL.Query().Get("name")}, &out)
		switch {
		case errors.Is(err, sdk.ErrModuleDisabled), errors.Is(err, sdk.ErrUnknownModule):
			http.Error(w, "hello module unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprintf(w, "%s (seen by hello as %s)\n", out.Message, out.Caller)
	})
	sdk.Serve(sdk.Module{
		ID:   "greeter-client",
		HTTP: mux,
		Configure: func(ctx context.Context, env *sdk.Env) error {
			host.Store(env.Host)
			return nil
		},
	})
}
