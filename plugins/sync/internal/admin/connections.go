package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/pull"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/tokenchange"
	"github.com/fiberkit/fiberkit/plugins/sync/mask"
	"github.com/fiberkit/fiberkit/plugins/sync/remote"
	"github.com/fiberkit/fiberkit/sdk"
)

// connectionsData is what the connection pages render from.
type connectionsData struct {
	pageData
	Connections []connection.Connection
	Remotes     []remote.Remote
	Conn        connection.Connection
	Token       string
	Transfers   []history.Transfer
	Filter      history.Filter
	Form        url.Values
	Told        string
	// Follower is the connection's follow of this site, when it follows.
	Follower *connection.Follower
	// Typed are the limits a refused form held (TypedMasks its rules as typed),
	// shown back in it.
	Typed      *connection.Limits
	TypedMasks string
	// RemoteForm opens the remote form, filled from Form (a refused one).
	RemoteForm bool
}

// splitList reads a comma- or newline-separated form field.
func splitList(v string) []string {
	var out []string
	for _, p := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// limitsFromForm reads the connection form's limits: every field it can, with
// every problem found (so a refused form can be shown back as typed).
func limitsFromForm(r *http.Request) (connection.Limits, error) {
	l := connection.Limits{
		AllowedTables: splitList(r.FormValue("allowed_tables")), ExcludedTables: splitList(r.FormValue("excluded_tables")),
		IPAllowlist: splitList(r.FormValue("ip_allowlist")), Follow: r.FormValue("follow") != "",
		FollowTables: splitList(r.FormValue("follow_tables")),
	}
	var errs []error
	num := func(name string) int {
		v := strings.TrimSpace(r.FormValue(name))
		if v == "" {
			return 0
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s: %q is not a whole number ≥ 0", strings.ReplaceAll(name, "_", " "), v))
			return 0
		}
		return n
	}
	l.MaxDownloads = num("max_downloads")
	l.MaxRecords = int64(num("max_records"))
	l.MaxRecordsRequest = num("max_records_per_request")
	l.RequestsPerMinute = num("requests_per_minute")
	l.FollowChangesPerSecond = num("follow_changes_per_second")
	for _, h := range splitList(r.FormValue("allowed_hours")) {
		v, err := strconv.Atoi(h)
		if err != nil {
			errs = append(errs, fmt.Errorf("allowed hours: %q is not an hour", h))
			continue
		}
		l.AllowedHours = append(l.AllowedHours, v)
	}
	if v := strings.TrimSpace(r.FormValue("expires_at")); v != "" {
		if t, err := time.Parse("2006-01-02T15:04", v); err != nil {
			errs = append(errs, fmt.Errorf("expiry: %q is not a date and time", v))
		} else {
			l.ExpiresAt = &t
		}
	}
	if masks, err := mask.Parse(r.FormValue("masks")); err != nil {
		errs = append(errs, err)
	} else {
		l.Masks = masks // checked against the columns' types when saved (connection.Store)
	}
	if len(errs) == 0 {
		return l, l.Validate()
	}
	return l, errors.Join(errs...)
}

// scheduleFromForm reads a remote's schedule form.
func scheduleFromForm(r *http.Request) (remote.Schedule, error) {
	sc := remote.Schedule{Tables: splitList(r.FormValue("tables")), Strategy: r.FormValue("strategy")}
	if v := strings.TrimSpace(r.FormValue("interval_seconds")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return sc, fmt.Errorf("interval: %q is not a whole number of seconds ≥ 0", v)
		}
		sc.Interval = n
	}
	sc.Follow = r.FormValue("follow") != ""
	if _, err := importer.ParseStrategy(sc.Strategy); err != nil {
		return sc, err
	}
	return sc, nil
}

// connStatus is a connection's status as the pages show it: "expired" once its
// expiry has passed, even before a request found out.
func connStatus(c connection.Connection) string {
	if c.Status != "revoked" && c.Limits.ExpiresAt != nil && !c.Limits.ExpiresAt.After(time.Now()) {
		return "expired"
	}
	return c.Status
}

func joinList(v []string) string { return strings.Join(v, ", ") }

func joinHours(v []int) string {
	s := make([]string, len(v))
	for i, h := range v {
		s[i] = strconv.Itoa(h)
	}
	return strings.Join(s, ", ")
}

// actor names the admin making a change, for the stores' audit fields.
func actor(r *http.Request) string { return "admin:" + sdk.CallerFrom(r.Context()).User }

// connectionsPage renders the connections and remotes list with d's form and
// error, answering status.
func (a *Admin) connectionsPage(w http.ResponseWriter, r *http.Request, st *site.Site, d connectionsData, status int) {
	msg := d.Error
	d.pageData = base(r, st, "Connections", "connections")
	d.Error = msg
	var err error
	if d.Connections, err = st.Conns.List(r.Context()); err != nil {
		a.log.Warn("connections page: list connections", "err", err)
	}
	if d.Remotes, err = st.Remotes.List(r.Context()); err != nil {
		a.log.Warn("connections page: list remotes", "err", err)
	}
	pageHeaders(w)
	w.WriteHeader(status)
	a.render(w, "connections.html", d)
}

// connectionPage renders connection id's page (with d's token, flash or error) and
// its transfers, answering status.
func (a *Admin) connectionPage(w http.ResponseWriter, r *http.Request, st *site.Site, id string, d connectionsData, status int) {
	c, err := st.Conns.Get(r.Context(), id)
	if err != nil {
		d.pageData = base(r, st, "Connection not found", "connections")
		d.Error = "There is no such connection."
		pageHeaders(w)
		w.WriteHeader(http.StatusNotFound)
		a.render(w, "connections.html", d)
		return
	}
	if d.Conn.ID == "" {
		d.Conn = c
	}
	if d.Typed != nil {
		d.Conn.Limits = *d.Typed
	}
	title, flash := d.Title, d.Error
	d.pageData = base(r, st, "Connection "+c.Name, "connections")
	if title != "" {
		d.Title = title
	}
	d.Error = flash
	if d.Transfers, err = st.History.Find(r.Context(), history.Filter{StartedBy: "connection:" + c.ID}, 200); err != nil {
		a.log.Warn("connection page: transfers", "connection", c.ID, "err", err)
	}
	if fs, err := st.Conns.Followers(r.Context()); err != nil {
		a.log.Warn("connection page: followers", "connection", c.ID, "err", err)
	} else {
		for i := range fs {
			if fs[i].ConnectionID == c.ID {
				d.Follower = &fs[i]
			}
		}
	}
	pageHeaders(w)
	w.WriteHeader(status)
	a.render(w, "connection.html", d)
}

// connectionRoutes adds the connection, remote and history pages to mux.
func (a *Admin) connectionRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /connections", a.withSite(func(w http.ResponseWriter, r *http.Request, st *site.Site) {
		a.connectionsPage(w, r, st, connectionsData{}, http.StatusOK)
	}))
	mux.HandleFunc("POST /connections", a.withSite(func(w http.ResponseWriter, r *http.Request, st *site.Site) {
		d := connectionsData{Form: r.Form}
		l, err := limitsFromForm(r)
		if err == nil {
			var c connection.Connection
			c, d.Token, err = st.Conns.Create(r.Context(), r.FormValue("name"), r.FormValue("site_url"), l, actor(r))
			d.Conn = c
		}
		if err != nil {
			d.Error = err.Error()
			a.connectionsPage(w, r, st, d, http.StatusUnprocessableEntity)
			return
		}
		// The token is shown on this response only.
		d.pageData = base(r, st, "Connection created", "connections")
		a.render(w, "connection.html", d)
	}))
	mux.HandleFunc("GET /connections/{id}", a.withSite(func(w http.ResponseWriter, r *http.Request, st *site.Site) {
		a.connectionPage(w, r, st, r.PathValue("id"), connectionsData{}, http.StatusOK)
	}))
	mux.HandleFunc("POST /connections/{id}/status", a.withSite(func(w http.ResponseWriter, r *http.Request, st *site.Site) {
		id := r.PathValue("id")
		if err := st.Conns.SetStatus(r.Context(), id, r.FormValue("status"), actor(r)); err != nil {
			d := connectionsData{}
			d.Error = "Could not change the status: " + err.Error()
			a.connectionPage(w, r, st, id, d, http.StatusUnprocessableEntity)
			return
		}
		if r.FormValue("status") == connection.Revoked {
			st.Metrics.ForgetConnection(id) // a revoked connection asks for nothing more
		}
		http.Redirect(w, r, st.AdminPrefix+"/connections/"+id, http.StatusSeeOther)
	}))
	mux.HandleFunc("POST /connections/{id}/token", a.withSite(func(w http.ResponseWriter, r *http.Request, st *site.Site) {
		out, err := tokenchange.Regenerate(r.Context(), st, r.PathValue("id"))
		if err != nil {
			d := connectionsData{}
			d.Error = "Could not regenerate the token: " + err.Error()
			a.connectionPage(w, r, st, r.PathValue("id"), d, http.StatusUnprocessableEntity)
			return
		}
		d := connectionsData{Conn: out.Connection, Token: out.Token}
		if out.Told {
			d.Told = "The other site was told the new token."
		} else {
			d.Error = "The other site could not be told (" + out.TellError + "): give it the new token yourself."
		}
		a.connectionPage(w, r, st, out.ID, d, http.StatusOK)
	}))
	mux.HandleFunc("POST /connections/{id}/limits", a.withSite(func(w http.ResponseWriter, r *http.Request, st *site.Site) {
		id := r.PathValue("id")
		l, err := limitsFromForm(r)
		if err == nil {
			err = st.Conns.SetLimits(r.Context(), id, l)
		}
		if err != nil {
			// Shown back as typed, masking rules included, so nothing is typed twice.
			d := connectionsData{Form: r.Form, Typed: &l, TypedMasks: r.FormValue("masks")}
			d.Error = "The limits were not saved: " + err.Error()
			a.connectionPage(w, r, st, id, d, http.StatusUnprocessableEntity)
			return
		}
		http.Redirect(w, r, st.AdminPrefix+"/connections/"+id, http.StatusSeeOther)
	}))
	mux.HandleFunc("POST /remotes", a.withSite(func(w http.ResponseWriter, r *http.Request, st *site.Site) {
		interval, _ := strconv.Atoi(strings.TrimSpace(r.FormValue("interval_seconds"))) // blank or not a number: on demand only
		_, err := importer.ParseStrategy(r.FormValue("strategy"))
		if err == nil {
			_, err = st.Outgoing(r.Context(), r.FormValue("url"), client.Options{})
		}
		if err == nil {
			_, err = st.Remotes.Add(r.Context(), remote.Remote{Name: r.FormValue("name"), URL: r.FormValue("url"), Tables: splitList(r.FormValue("tables")),
				Strategy: r.FormValue("strategy"), Interval: interval, Follow: r.FormValue("follow") != ""}, strings.TrimSpace(r.FormValue("token")), actor(r))
		}
		if err != nil {
			a.connectionsPage(w, r, st, connectionsData{pageData: pageData{Error: err.Error()}, Form: r.Form, RemoteForm: true}, http.StatusUnprocessableEntity)
			return
		}
		http.Redirect(w, r, st.AdminPrefix+"/connections", http.StatusSeeOther)
	}))
	mux.HandleFunc("POST /remotes/{id}/run", a.withSite(func(w http.ResponseWriter, r *http.Request, st *site.Site) {
		// Run in the background: the history page shows the outcome.
		id := r.PathValue("id")
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), runTimeout)
		go func() {
			defer cancel()
			err := st.Remotes.RunNow(ctx, id, func(ctx context.Context, rm remote.Remote, token string) error {
				_, err := pull.Remote(ctx, a.log, st, rm, token)
				return err
			})
			if err != nil {
				a.log.Warn("run remote", "remote", id, "err", err)
			}
		}()
		http.Redirect(w, r, st.AdminPrefix+"/history", http.StatusSeeOther)
	}))
	mux.HandleFunc("POST /remotes/{id}/schedule", a.withSite(func(w http.ResponseWriter, r *http.Request, st *site.Site) {
		sc, err := scheduleFromForm(r)
		if err == nil {
			_, err = st.Remotes.Update(r.Context(), r.PathValue("id"), sc)
		}
		if err != nil {
			a.connectionsPage(w, r, st, connectionsData{pageData: pageData{Error: "The schedule was not saved: " + err.Error()}}, http.StatusUnprocessableEntity)
			return
		}
		http.Redirect(w, r, st.AdminPrefix+"/connections", http.StatusSeeOther)
	}))
	mux.HandleFunc("POST /remotes/{id}/delete", a.withSite(func(w http.ResponseWriter, r *http.Request, st *site.Site) {
		if err := st.Remotes.Delete(r.Context(), r.PathValue("id")); err != nil {
			a.log.Warn("delete remote", "remote", r.PathValue("id"), "err", err)
		}
		http.Redirect(w, r, st.AdminPrefix+"/connections", http.StatusSeeOther)
	}))
	mux.HandleFunc("GET /history", a.withSite(func(w http.ResponseWriter, r *http.Request, st *site.Site) {
		d := connectionsData{Filter: history.Filter{Direction: r.FormValue("direction"), Table: r.FormValue("table"), Status: r.FormValue("status")}}
		d.pageData = base(r, st, "Transfer history", "history")
		var err error
		if d.Transfers, err = st.History.Find(r.Context(), d.Filter, 500); err != nil {
			a.log.Warn("history page", "err", err)
		}
		a.render(w, "history.html", d)
	}))
}

// runTimeout bounds a remote's run started from its page.
const runTimeout = time.Hour
