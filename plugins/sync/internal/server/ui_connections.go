package server

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
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

// limitsFromForm reads the connection form's limits.
func limitsFromForm(r *http.Request) (connection.Limits, error) {
	l := connection.Limits{
		AllowedTables: splitList(r.FormValue("allowed_tables")), ExcludedTables: splitList(r.FormValue("excluded_tables")),
		IPAllowlist: splitList(r.FormValue("ip_allowlist")),
	}
	num := func(name string) (int64, error) {
		v := strings.TrimSpace(r.FormValue(name))
		if v == "" {
			return 0, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s: %q is not a whole number ≥ 0", strings.ReplaceAll(name, "_", " "), v)
		}
		return n, nil
	}
	var err error
	var n int64
	if n, err = num("max_downloads"); err != nil {
		return l, err
	}
	l.MaxDownloads = int(n)
	if l.MaxRecords, err = num("max_records"); err != nil {
		return l, err
	}
	if n, err = num("max_records_per_request"); err != nil {
		return l, err
	}
	l.MaxRecordsRequest = int(n)
	if n, err = num("requests_per_minute"); err != nil {
		return l, err
	}
	l.RequestsPerMinute = int(n)
	for _, h := range splitList(r.FormValue("allowed_hours")) {
		v, err := strconv.Atoi(h)
		if err != nil {
			return l, fmt.Errorf("allowed hours: %q is not an hour", h)
		}
		l.AllowedHours = append(l.AllowedHours, v)
	}
	if v := strings.TrimSpace(r.FormValue("expires_at")); v != "" {
		t, err := time.Parse("2006-01-02T15:04", v)
		if err != nil {
			return l, fmt.Errorf("expiry: %q is not a date and time", v)
		}
		l.ExpiresAt = &t
	}
	return l, l.Validate()
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

// connectionRoutes adds the connection and history pages to mux.
func (s *Server) connectionRoutes(mux *http.ServeMux, tmpl *template.Template, render func(http.ResponseWriter, *http.Request, string, any), base func(*http.Request, *state, string, string) pageData) {
	actor := func(r *http.Request) string { return "admin:" + sdk.CallerFrom(r.Context()).User }
	withState := func(h func(http.ResponseWriter, *http.Request, *state)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			st, err := s.state()
			if err != nil {
				http.Error(w, "Sync is starting", http.StatusServiceUnavailable)
				return
			}
			h(w, r, st)
		}
	}
	list := func(w http.ResponseWriter, r *http.Request, st *state, d connectionsData, status int) {
		msg := d.Error
		d.pageData = base(r, st, "Connections", "connections")
		d.Error = msg
		d.Connections, _ = st.conns.List(r.Context())
		d.Remotes, _ = st.remotes.List(r.Context())
		pageHeaders(w)
		w.WriteHeader(status)
		render(w, r, "connections.html", d)
	}
	mux.HandleFunc("GET /connections", withState(func(w http.ResponseWriter, r *http.Request, st *state) {
		list(w, r, st, connectionsData{}, http.StatusOK)
	}))
	mux.HandleFunc("POST /connections", withState(func(w http.ResponseWriter, r *http.Request, st *state) {
		d := connectionsData{Form: r.Form}
		l, err := limitsFromForm(r)
		if err == nil {
			var c connection.Connection
			c, d.Token, err = st.conns.Create(r.Context(), r.FormValue("name"), r.FormValue("site_url"), l, actor(r))
			d.Conn = c
		}
		if err != nil {
			d.Error = err.Error()
			list(w, r, st, d, http.StatusUnprocessableEntity)
			return
		}
		// The token is shown on this response only.
		d.pageData = base(r, st, "Connection created", "connections")
		render(w, r, "connection.html", d)
	}))
	// page renders a connection's page (with d's token, flash or error) and its
	// transfers, answering status.
	page := func(w http.ResponseWriter, r *http.Request, st *state, id string, d connectionsData, status int) {
		c, err := st.conns.Get(r.Context(), id)
		if err != nil {
			d.pageData = base(r, st, "Connection not found", "connections")
			d.Error = "There is no such connection."
			pageHeaders(w)
			w.WriteHeader(http.StatusNotFound)
			render(w, r, "connections.html", d)
			return
		}
		if d.Conn.ID == "" {
			d.Conn = c
		}
		title, flash := d.Title, d.Error
		d.pageData = base(r, st, "Connection "+c.Name, "connections")
		if title != "" {
			d.Title = title
		}
		d.Error = flash
		d.Transfers, _ = st.history.Find(r.Context(), history.Filter{StartedBy: "connection:" + c.ID}, 200)
		pageHeaders(w)
		w.WriteHeader(status)
		render(w, r, "connection.html", d)
	}
	mux.HandleFunc("GET /connections/{id}", withState(func(w http.ResponseWriter, r *http.Request, st *state) {
		page(w, r, st, r.PathValue("id"), connectionsData{}, http.StatusOK)
	}))
	mux.HandleFunc("POST /connections/{id}/status", withState(func(w http.ResponseWriter, r *http.Request, st *state) {
		id := r.PathValue("id")
		if err := st.conns.SetStatus(r.Context(), id, r.FormValue("status"), actor(r)); err != nil {
			d := connectionsData{}
			d.Error = "Could not change the status: " + err.Error()
			page(w, r, st, id, d, http.StatusUnprocessableEntity)
			return
		}
		http.Redirect(w, r, st.adminPrefix+"/connections/"+id, http.StatusSeeOther)
	}))
	mux.HandleFunc("POST /connections/{id}/token", withState(func(w http.ResponseWriter, r *http.Request, st *state) {
		out, err := s.regenerate(r.Context(), st, r.PathValue("id"))
		if err != nil {
			d := connectionsData{}
			d.Error = "Could not regenerate the token: " + err.Error()
			page(w, r, st, r.PathValue("id"), d, http.StatusUnprocessableEntity)
			return
		}
		d := connectionsData{Conn: out.Connection, Token: out.Token}
		if out.Told {
			d.Told = "The other site was told the new token."
		} else {
			d.Error = "The other site could not be told (" + out.TellError + "): give it the new token yourself."
		}
		page(w, r, st, out.ID, d, http.StatusOK)
	}))
	mux.HandleFunc("POST /connections/{id}/limits", withState(func(w http.ResponseWriter, r *http.Request, st *state) {
		id := r.PathValue("id")
		l, err := limitsFromForm(r)
		if err == nil {
			err = st.conns.SetLimits(r.Context(), id, l)
		}
		if err != nil {
			d := connectionsData{Form: r.Form}
			d.Error = "The limits were not saved: " + err.Error()
			page(w, r, st, id, d, http.StatusUnprocessableEntity)
			return
		}
		http.Redirect(w, r, st.adminPrefix+"/connections/"+id, http.StatusSeeOther)
	}))
	mux.HandleFunc("POST /remotes", withState(func(w http.ResponseWriter, r *http.Request, st *state) {
		interval, _ := strconv.Atoi(strings.TrimSpace(r.FormValue("interval_seconds")))
		_, err := importer.ParseStrategy(r.FormValue("strategy"))
		if err == nil {
			_, err = st.outgoing(r.FormValue("url"), client.Options{})
		}
		if err == nil {
			_, err = st.remotes.Add(r.Context(), remote.Remote{Name: r.FormValue("name"), URL: r.FormValue("url"), Tables: splitList(r.FormValue("tables")),
				Strategy: r.FormValue("strategy"), Interval: interval}, strings.TrimSpace(r.FormValue("token")), actor(r))
		}
		if err != nil {
			list(w, r, st, connectionsData{pageData: pageData{Error: err.Error()}, Form: r.Form}, http.StatusUnprocessableEntity)
			return
		}
		http.Redirect(w, r, st.adminPrefix+"/connections", http.StatusSeeOther)
	}))
	mux.HandleFunc("POST /remotes/{id}/run", withState(func(w http.ResponseWriter, r *http.Request, st *state) {
		// Run in the background: the history page shows the outcome.
		id := r.PathValue("id")
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			_ = st.remotes.RunNow(ctx, id, func(ctx context.Context, rm remote.Remote, token string) error {
				_, err := s.pullRemote(ctx, rm, token)
				return err
			})
		}()
		http.Redirect(w, r, st.adminPrefix+"/history", http.StatusSeeOther)
	}))
	mux.HandleFunc("POST /remotes/{id}/schedule", withState(func(w http.ResponseWriter, r *http.Request, st *state) {
		sc, err := scheduleFromForm(r)
		if err == nil {
			_, err = st.remotes.Update(r.Context(), r.PathValue("id"), sc)
		}
		if err != nil {
			list(w, r, st, connectionsData{pageData: pageData{Error: "The schedule was not saved: " + err.Error()}}, http.StatusUnprocessableEntity)
			return
		}
		http.Redirect(w, r, st.adminPrefix+"/connections", http.StatusSeeOther)
	}))
	mux.HandleFunc("POST /remotes/{id}/delete", withState(func(w http.ResponseWriter, r *http.Request, st *state) {
		_ = st.remotes.Delete(r.Context(), r.PathValue("id"))
		http.Redirect(w, r, st.adminPrefix+"/connections", http.StatusSeeOther)
	}))
	mux.HandleFunc("GET /history", withState(func(w http.ResponseWriter, r *http.Request, st *state) {
		d := connectionsData{Filter: history.Filter{Direction: r.FormValue("direction"), Table: r.FormValue("table"), Status: r.FormValue("status")}}
		d.pageData = base(r, st, "Transfer history", "history")
		d.Transfers, _ = st.history.Find(r.Context(), d.Filter, 500)
		render(w, r, "history.html", d)
	}))
}
