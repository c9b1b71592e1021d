// Command todo is an example module: each signed-in user's todo list, synced live to
// the browser by the real @electric-sql/client and written through Sync's write
// path. GET / is the page; GET /shape serves the user's shape (todos whose owner is
// the caller, as the host app's auth middleware established it) over Electric's HTTP
// API through the Sync module; POST /write applies a batch of TanStack DB / Electric
// mutations in one transaction, allowed only on the caller's own rows, and answers
// {"txid": n}, which the page then sees in the stream.
//
// Try it: build the plugins (make plugins), run the example host app with Sync's
// live setting on and a PostgreSQL with wal_level=logical, then open /fiberkit/todo/
// signed in.
package main

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/plugins/sync/writer"
	"github.com/fiberkit/fiberkit/sdk"
)

// ui holds the page's script and the browser build of @electric-sql/client.
//
//go:embed ui
var ui embed.FS

//go:embed page.html
var pageHTML string

// page is the todo page, given the user's name (escaped by html/template).
var page = template.Must(template.New("page").Parse(pageHTML))

// schema is the module's table.
const schema = `CREATE TABLE IF NOT EXISTS todos (
	id         uuid PRIMARY KEY,
	owner      text NOT NULL,
	title      text NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
	done       boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS todos_owner ON todos (owner)`

// app is the module's state once configured.
type app struct {
	sync   *syncapi.Module
	writer *writer.Writer
	pool   *pgxpool.Pool
}

func main() {
	var cur atomic.Pointer[app]
	sdk.Serve(sdk.Module{
		ID:   "todo",
		HTTP: routes(cur.Load),
		Configure: func(ctx context.Context, env *sdk.Env) error {
			if old := cur.Load(); old != nil {
				cur.Store(&app{sync: syncapi.Via(env.Host), writer: old.writer, pool: old.pool})
				return nil
			}
			pool, err := pgxpool.New(ctx, env.DatabaseURL)
			if err != nil {
				return fmt.Errorf("todo: database: %w", err)
			}
			if _, err := pool.Exec(ctx, schema); err != nil {
				pool.Close()
				return fmt.Errorf("todo: create table: %w", err)
			}
			cur.Store(&app{sync: syncapi.Via(env.Host), writer: newWriter(pool), pool: pool})
			return nil
		},
	})
}

// user is the caller's user name, as the host established it.
func user(ctx context.Context) string { return sdk.CallerFrom(ctx).User }

// newWriter allows writes to todos on the caller's own rows only: a new row must be
// theirs, an existing one must be theirs before, and stays theirs.
func newWriter(pool *pgxpool.Pool) *writer.Writer {
	mine := func(ctx context.Context, owner any) error {
		if u := user(ctx); u == "" || !writer.Equal(owner, u) {
			return fmt.Errorf("%w: not your todo", writer.ErrForbidden)
		}
		return nil
	}
	return writer.New(pool).Allow("todos", writer.Rules{
		Check: func(ctx context.Context, m *writer.Mutation) error {
			if m.Type == writer.Insert {
				return mine(ctx, m.Modified["owner"])
			}
			if o, ok := m.Modified["owner"]; ok && m.Type == writer.Update {
				return mine(ctx, o)
			}
			return nil
		},
		Validate: func(ctx context.Context, m *writer.Mutation, current writer.Row) error {
			if m.Type == writer.Insert {
				return nil
			}
			return mine(ctx, current["owner"])
		},
	})
}

func routes(cur func() *app) http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(ui, "ui")
	mux.Handle("GET /ui/", http.StripPrefix("/ui/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		if user(r.Context()) == "" {
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = page.Execute(w, user(r.Context()))
	})
	mux.HandleFunc("GET /shape", func(w http.ResponseWriter, r *http.Request) {
		a, u := cur(), user(r.Context())
		if a == nil || u == "" {
			http.Error(w, `{"message":"sign in first"}`, http.StatusUnauthorized)
			return
		}
		// The user's own rows, whatever the client asks for.
		a.sync.ServeShape(w, r, syncapi.ShapeSpec{Table: "todos", Where: "owner = $1", Params: []string{u}})
	})
	return withWriter(mux, cur)
}

// withWriter serves /write with the current writer (which refuses all but POST),
// the caller's context carrying its user (a request without one is 401); the rest
// goes to next.
func withWriter(next *http.ServeMux, cur func() *app) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/write" {
			next.ServeHTTP(w, r)
			return
		}
		a := cur()
		if a == nil {
			http.Error(w, "not configured", http.StatusServiceUnavailable)
			return
		}
		writer.Handler(a.writer, func(r *http.Request) (context.Context, error) {
			if user(r.Context()) == "" {
				return nil, errors.New("sign in first")
			}
			return r.Context(), nil
		}).ServeHTTP(w, r)
	})
}
