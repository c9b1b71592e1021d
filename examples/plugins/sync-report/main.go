// Command sync-report is an example module that uses the Sync module through the
// SDK: GET /tables lists this site's tables and row counts as Sync sees them,
// GET /code makes a one-time code another site can pull with, the /watch and
// /shape endpoints (watch.go) follow records live, and GET /notices (live.go) shows
// table notices live in a browser page.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"

	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/sdk"
)

func main() {
	var mod atomic.Pointer[syncapi.Module]
	var watches atomic.Pointer[syncapi.Watches]
	mux := http.NewServeMux()
	watchRoutes(mux, mod.Load, watches.Load)
	mux.HandleFunc("GET /tables", func(w http.ResponseWriter, r *http.Request) {
		tables, err := mod.Load().ListTables(r.Context(), syncapi.ListTablesRequest{})
		if err != nil {
			fail(w, err)
			return
		}
		writeJSON(w, tables)
	})
	mux.HandleFunc("GET /code", func(w http.ResponseWriter, r *http.Request) {
		s, err := mod.Load().CreateSession(r.Context(), "report")
		if err != nil {
			fail(w, err)
			return
		}
		writeJSON(w, map[string]string{"code": s.Code, "owner": s.Owner})
	})
	sdk.Serve(sdk.Module{
		ID:         "sync-report",
		HTTP:       mux,
		WebSockets: map[string]sdk.WebSocketHandler{"/notices-live": liveRoutes(mux, mod.Load)}, // GET /notices too (live.go)
		Configure: func(ctx context.Context, env *sdk.Env) error {
			m := syncapi.Via(env.Host)
			mod.Store(m)
			// One set of watches for the process: a settings change keeps them.
			watches.CompareAndSwap(nil, m.Watches())
			return nil
		},
	})
}

func fail(w http.ResponseWriter, err error) {
	status := http.StatusBadGateway
	if errors.Is(err, sdk.ErrModuleDisabled) || errors.Is(err, sdk.ErrUnknownModule) {
		status = http.StatusServiceUnavailable
	}
	http.Error(w, err.Error(), status)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
