package server

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/session"
	"github.com/fiberkit/fiberkit/sdk"
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
	tmpl := template.Must(template.New("").Funcs(template.FuncMap{"joinList": joinList, "joinHours": joinHours, "connStatus": connStatus,
		"strategies": func() []string { return []string{"skip", "overwrite", "merge", "append"} }}).ParseFS(pagesFS, "ui/*.html"))
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
		sess, code, err := st.sessions.Create(r.Context(), "send", d.Owner)
		if err != nil {
			s.log.Error("create session", "err", err)
			d.Error = "Could not create a connection code."
		} else {
			s.pages.expect(d.Owner, sess.LeaseUntil)
		}
		d.Code = code
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
	// Public: a sending site tells this one that it regenerated a token. Unauthenticated,
	// so limited per client address; the remote is found by its token's stored hash.
	mux.HandleFunc("POST /api/remote-token", func(w http.ResponseWriter, r *http.Request) {
		if !s.limiter.allow(r.RemoteAddr, time.Now()) {
			w.Header().Set("Retry-After", "60")
			http.Error(w, "too many requests", http.StatusTooManyRequests)
			return
		}
		st, err := s.state()
		if err != nil {
			http.Error(w, "sync is starting", http.StatusServiceUnavailable)
			return
		}
		var ch client.TokenChange
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

// pageOwners looks after Send pages' sessions. A page's session lives while the
// page's live socket renews its lease in the database (Store.Touch) — from whichever
// replica the socket reached — and is released once the lease went unrenewed: for
// grace after a socket closed (a reconnecting page renews it at once), or for window
// after the page was served (its first socket never came). What this process
// remembers (one pending check per owner) only avoids duplicate checks; whether a
// page is gone is decided from the database alone.
type pageOwners struct {
	srv *Server
	// grace is how long a closed socket's page has to reconnect (on any replica).
	grace time.Duration
	// window is how long a served page has to open its socket.
	window time.Duration
	// touchEvery is how often a page's socket renews the lease; well under grace.
	touchEvery time.Duration

	mu     sync.Mutex
	checks map[string]*time.Timer // owner → its pending check
}

func newPageOwners(s *Server) *pageOwners {
	return &pageOwners{srv: s, grace: 5 * time.Second, window: 30 * time.Second, touchEvery: 2 * time.Second,
		checks: map[string]*time.Timer{}}
}

// expect watches a page just served whose session's lease runs to lease.
func (p *pageOwners) expect(owner string, lease time.Time) { p.checkAfter(owner, lease, p.window) }

// disconnected is called when a page's socket closes: unless the lease is renewed
// within grace (the page reconnected, here or on another replica), the page's
// sessions are released.
func (p *pageOwners) disconnected(owner string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lease, _, err := p.lease(ctx, owner)
	if err != nil {
		lease = time.Time{} // unknown: the check after grace decides on the lease alone
	}
	p.checkAfter(owner, lease, p.grace)
}

// checkAfter schedules owner's check in d, replacing a pending one: if the lease has
// not moved past mark by then (nobody touched it), owner's sessions are released.
func (p *pageOwners) checkAfter(owner string, mark time.Time, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.checks[owner]; t != nil {
		t.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		p.mu.Lock()
		if p.checks[owner] != t {
			p.mu.Unlock()
			return // replaced by a later check
		}
		delete(p.checks, owner)
		p.mu.Unlock()
		p.check(owner, mark)
	})
	p.checks[owner] = t
}

// check releases owner's sessions unless their lease moved past mark; when it did
// (a socket somewhere renews it), it checks again once that lease would have run out.
func (p *pageOwners) check(owner string, mark time.Time) {
	st, err := p.srv.state()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lease, live, err := p.lease(ctx, owner)
	switch {
	case err != nil:
		p.checkAfter(owner, mark, p.grace) // the database did not answer: ask again later
	case live && lease.After(mark):
		p.checkAfter(owner, lease, time.Until(lease)+p.grace)
	default:
		if err := st.sessions.ReleaseOwner(ctx, owner); err != nil {
			p.srv.log.Warn("release page sessions", "owner", owner, "err", err)
		}
	}
}

// lease returns the latest lease of owner's live sessions; live is false when it has
// none (released, or every lease ran out).
func (p *pageOwners) lease(ctx context.Context, owner string) (time.Time, bool, error) {
	st, err := p.srv.state()
	if err != nil {
		return time.Time{}, false, err
	}
	all, err := st.sessions.List(ctx)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("page sessions: %w", err)
	}
	var until time.Time
	live := false
	for _, se := range all {
		if se.Owner == owner {
			live = true
			if se.LeaseUntil.After(until) {
				until = se.LeaseUntil
			}
		}
	}
	return until, live, nil
}

// limiter is a token bucket per client address, for the public endpoints: each
// address may make burst requests at once, and gets them back over refill.
type limiter struct {
	burst  float64
	refill time.Duration

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxBuckets bounds the addresses remembered; beyond it, full buckets are dropped.
const maxBuckets = 10000

func newLimiter(burst int, refill time.Duration) *limiter {
	return &limiter{burst: float64(burst), refill: refill, buckets: map[string]*bucket{}}
}

// allow takes a token from addr's bucket; false when it is empty. IPv6 clients are
// counted per /64, which one client usually holds whole.
func (l *limiter) allow(addr string, now time.Time) bool {
	key := clientKey(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	rate := l.burst / l.refill.Seconds()
	fill := func(b *bucket) {
		b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*rate)
		b.at = now
	}
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			for k, o := range l.buckets {
				if fill(o); o.tokens >= l.burst {
					delete(l.buckets, k)
				}
			}
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	fill(b)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// clientKey is the address a request is counted under.
func clientKey(addr string) string {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		addr = ap.Addr().String()
	}
	return session.RateKey(addr)
}
