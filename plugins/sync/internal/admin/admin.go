// Package admin is the Sync module's admin UI: the pages (overview, Send,
// Receive, connections and remotes, history, live shapes) with their templates
// and static assets, and the pages' live socket — the Send page's receivers and
// approvals, and the Receive page's jobs, which connect to a sender and pull
// through package pull. The routes are admin routes (module.yaml): the host has
// already checked the admin's credentials.
package admin

import (
	"crypto/rand"
	"embed"
	"encoding/hex"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"

	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/pull"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/plugins/sync/session"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/sdk"
)

//go:embed ui/*.html
var pagesFS embed.FS

//go:embed ui/static
var staticFS embed.FS

// Admin serves the admin pages and their live socket. Build one with New.
type Admin struct {
	log     *slog.Logger
	current site.Current
	pages   *pageOwners
	jobs    *jobs
	tmpl    *template.Template
}

// New returns the admin UI of the site current returns.
func New(log *slog.Logger, current site.Current) *Admin {
	a := &Admin{log: log, current: current, jobs: newJobs()}
	a.pages = newPageOwners(log, current)
	a.tmpl = template.Must(template.New("").Funcs(template.FuncMap{"joinList": joinList, "joinHours": joinHours, "connStatus": connStatus, "maskRules": maskRules,
		"strategies": func() []string { return []string{"skip", "overwrite", "merge", "append"} },
		"humanBytes": humanBytes, "plural": plural, "quoteList": quoteList, "shapeTable": shapeTable, "replicaMode": replicaMode,
		"createdAt": createdAt, "lagText": lagText}).ParseFS(pagesFS, "ui/*.html"))
	return a
}

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
	// Interrupted are the pulls this site's plugin stopped in the middle of (Receive).
	Interrupted []pull.Interrupted
}

// render writes page name from d; call pageHeaders first when setting a status.
func (a *Admin) render(w http.ResponseWriter, name string, d any) {
	pageHeaders(w)
	if err := a.tmpl.ExecuteTemplate(w, name, d); err != nil {
		a.log.Error("render", "page", name, "err", err)
	}
}

// base is what every page shows.
func base(r *http.Request, st *site.Site, title, page string) pageData {
	return pageData{Title: title, Page: page, Base: st.AdminPrefix, KitBase: strings.TrimSuffix(st.AdminPrefix, "/sync"),
		CSRF: r.Header.Get("X-Csrf-Token"), User: sdk.CallerFrom(r.Context()).User, Enabled: st.Settings.Enabled(),
		Mode: st.IncomingMode(), PasswordSet: st.Settings.SecretSet("incoming_password"), SiteURL: st.Public}
}

// withSite passes the current site to h, or answers that Sync is starting.
func (a *Admin) withSite(h func(http.ResponseWriter, *http.Request, *site.Site)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		st, err := a.current()
		if err != nil {
			http.Error(w, "Sync is starting", http.StatusServiceUnavailable)
			return
		}
		h(w, r, st)
	}
}

// Routes adds the admin pages and their assets to mux.
func (a *Admin) Routes(mux *http.ServeMux) {
	static, err := fs.Sub(staticFS, "ui/static")
	if err != nil {
		panic(err) // the path is embedded above
	}
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", a.withSite(a.overview))
	mux.HandleFunc("GET /send", a.withSite(a.sendPage))
	mux.HandleFunc("GET /receive", a.withSite(func(w http.ResponseWriter, r *http.Request, st *site.Site) {
		d := base(r, st, "Receive data", "receive")
		var err error
		if d.Interrupted, err = pull.Interrupts(r.Context(), a.log, st); err != nil {
			a.log.Warn("receive page: interrupted pulls", "err", err)
		}
		a.render(w, "receive.html", d)
	}))
	a.connectionRoutes(mux)
	a.liveRoutes(mux)
}

// overviewData is what the overview renders from.
type overviewData struct {
	pageData
	Live liveView
	// Follows are this site's follows of others; Followers the connections
	// following it.
	Follows   []syncapi.FollowStatus
	Followers []connection.Follower
}

// overview is the module's front page: live sync, sessions, recent attempts and
// transfers.
func (a *Admin) overview(w http.ResponseWriter, r *http.Request, st *site.Site) {
	d := overviewData{pageData: base(r, st, "Sync", "overview"), Live: a.liveOf(r.Context(), st)}
	var err error
	if d.Sessions, err = st.Sessions.List(r.Context()); err != nil {
		a.log.Warn("overview: list sessions", "err", err)
	}
	if d.Attempts, err = st.Sessions.Attempts(r.Context(), 10); err != nil {
		a.log.Warn("overview: list attempts", "err", err)
	}
	if d.Transfers, err = st.History.Recent(r.Context(), 10); err != nil {
		a.log.Warn("overview: recent transfers", "err", err)
	}
	if d.Follows, err = st.Follows.List(r.Context()); err != nil {
		a.log.Warn("overview: follows", "err", err)
	}
	if d.Followers, err = st.Conns.Followers(r.Context()); err != nil {
		a.log.Warn("overview: followers", "err", err)
	}
	a.render(w, "overview.html", d)
}

// sendPage shows a fresh code per page view; the page's live socket keeps its
// session alive and its closing ends it.
func (a *Admin) sendPage(w http.ResponseWriter, r *http.Request, st *site.Site) {
	d := base(r, st, "Send data", "send")
	d.Owner = "page:" + randomID()
	sess, code, err := st.Sessions.Create(r.Context(), "send", d.Owner)
	if err != nil {
		a.log.Error("create session", "err", err)
		d.Error = "Could not create a connection code."
	} else {
		a.pages.expect(r.Context(), d.Owner, sess.LeaseUntil)
	}
	d.Code = code
	a.render(w, "send.html", d)
}

// pageHeaders sets the headers of every page; call it before WriteHeader.
func pageHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'")
}

// randomID is a fresh id for a page or a job.
func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
