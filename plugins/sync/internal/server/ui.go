package server

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/session"
	"github.com/fiberkit/fiberkit/sdk"
	"github.com/fiberkit/fiberkit/sdk/syncclient"
)

//go:embed ui/*.html
var pagesFS embed.FS

//go:embed ui/static
var staticFS embed.FS

// pageData is what every Sync admin page renders from.
type pageData struct {
	Title       string
	Page        string
	Base        string // the module's admin prefix, e.g. /admin/fiberkit/sync
	KitBase     string // the host's admin prefix, e.g. /admin/fiberkit
	CSRF        string
	User        string
	Enabled     bool
	Mode        string
	PasswordSet bool
	Sessions    []session.Session
	Attempts    []session.AttemptRecord
	Transfers   []history.Transfer
	Code        string
	Owner       string
	SiteURL     string
	Error       string
}

// handler serves the Sync admin pages (admin routes in module.yaml, so the host has
// already checked the admin's credentials).
func (s *Server) handler() http.Handler {
	tmpl := template.Must(template.New("").Funcs(template.FuncMap{"joinList": joinList, "joinHours": joinHours}).ParseFS(pagesFS, "ui/*.html"))
	static, _ := fs.Sub(staticFS, "ui/static")
	mux := http.NewServeMux()
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(static)))
	render := func(w http.ResponseWriter, r *http.Request, name string, d any) {
		pageHeaders(w)
		if err := tmpl.ExecuteTemplate(w, name, d); err != nil {
			s.log.Error("render", "page", name, "err", err)
		}
	}
	base := func(r *http.Request, st *state, title, page string) pageData {
		return pageData{Title: title, Page: page, Base: st.adminPrefix, KitBase: strings.TrimSuffix(st.adminPrefix, "/sync"),
			CSRF: r.Header.Get("X-Csrf-Token"), User: sdk.CallerFrom(r.Context()).User, Enabled: st.settings.Enabled(),
			Mode: st.settings.String("incoming_mode"), PasswordSet: st.settings.SecretSet("incoming_password"), SiteURL: st.public}
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.state()
		if err != nil {
			http.Error(w, "Sync is starting", http.StatusServiceUnavailable)
			return
		}
		d := base(r, st, "Sync", "overview")
		d.Sessions, _ = st.sessions.List(r.Context())
		d.Attempts, _ = st.sessions.Attempts(r.Context(), 10)
		d.Transfers, _ = st.history.Recent(r.Context(), 10)
		render(w, r, "overview.html", d)
	})
	mux.HandleFunc("GET /send", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.state()
		if err != nil {
			http.Error(w, "Sync is starting", http.StatusServiceUnavailable)
			return
		}
		d := base(r, st, "Send data", "send")
		// A fresh session per page view; the page's live socket keeps it alive and
		// its closing ends it.
		d.Owner = "page:" + randomID()
		_, code, err := st.sessions.Create(r.Context(), "send", d.Owner)
		if err != nil {
			s.log.Error("create session", "err", err)
			d.Error = "Could not create a connection code."
		}
		d.Code = code
		s.pages.expect(d.Owner)
		render(w, r, "send.html", d)
	})
	mux.HandleFunc("GET /receive", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.state()
		if err != nil {
			http.Error(w, "Sync is starting", http.StatusServiceUnavailable)
			return
		}
		render(w, r, "receive.html", base(r, st, "Receive data", "receive"))
	})
	s.connectionRoutes(mux, tmpl, render, base)
	// Public: a sending site tells this one that it regenerated a token.
	mux.HandleFunc("POST /api/remote-token", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.state()
		if err != nil {
			http.Error(w, "sync is starting", http.StatusServiceUnavailable)
			return
		}
		var ch syncclient.TokenChange
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&ch); err != nil {
			http.Error(w, "malformed request", http.StatusBadRequest)
			return
		}
		ok, err := st.remotes.ReplaceToken(r.Context(), ch.OldHash, ch.NewToken)
		switch {
		case err != nil:
			http.Error(w, "malformed request", http.StatusBadRequest)
		case !ok:
			http.Error(w, "unknown token", http.StatusNotFound)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	return mux
}

// pageHeaders sets the headers of every page; call it before WriteHeader.
func pageHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'")
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// pageOwners tracks Send pages: a page's session lives while its socket is open, and
// for a short grace after it drops, so a page that reconnects keeps its code.
type pageOwners struct {
	srv   *Server
	grace time.Duration
	mu    sync.Mutex
	open  map[string]int
	timer map[string]*time.Timer
}

func newPageOwners(s *Server) *pageOwners {
	return &pageOwners{srv: s, grace: 5 * time.Second, open: map[string]int{}, timer: map[string]*time.Timer{}}
}

// expect starts the grace period for a page that has not connected yet.
func (p *pageOwners) expect(owner string) { p.disconnected(owner, 30*time.Second) }

func (p *pageOwners) connected(owner string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.open[owner]++
	if t := p.timer[owner]; t != nil {
		t.Stop()
		delete(p.timer, owner)
	}
}

// disconnected releases owner's sessions unless a socket for it comes back within grace.
func (p *pageOwners) disconnected(owner string, grace time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open[owner] > 0 {
		p.open[owner]--
	}
	if p.open[owner] > 0 {
		return
	}
	if t := p.timer[owner]; t != nil {
		t.Stop()
	}
	p.timer[owner] = time.AfterFunc(grace, func() {
		p.mu.Lock()
		still := p.open[owner] == 0
		delete(p.timer, owner)
		delete(p.open, owner)
		p.mu.Unlock()
		if !still {
			return
		}
		if st, err := p.srv.state(); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = st.sessions.ReleaseOwner(ctx, owner)
		}
	})
}
