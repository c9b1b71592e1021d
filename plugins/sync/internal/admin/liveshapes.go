package admin

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// liveView is live sync on this replica as the overview and the Live page show it.
type liveView struct {
	// Setting is the live setting; On says an engine runs on this replica.
	Setting, On bool
	// NotReady is why live sync cannot run (site.LiveNotReady), verbatim.
	NotReady string
	Status   syncapi.LiveStatus
	// StatusError says the status could not be read.
	StatusError string
}

// liveOf reads live sync's state on st.
func (a *Admin) liveOf(ctx context.Context, st *site.Site) liveView {
	v := liveView{Setting: st.Settings.Bool("live"), On: st.Live != nil, NotReady: st.LiveNotReady}
	if st.Live == nil {
		return v
	}
	var err error
	if v.Status, err = st.Live.Status(ctx); err != nil {
		a.log.Warn("live sync status", "err", err)
		v.StatusError = "Could not read the status: " + err.Error()
	}
	return v
}

// liveData is what the Live page renders from.
type liveData struct {
	pageData
	Live   liveView
	Shapes []syncapi.ShapeInfo
	Flash  string
}

// livePath is the Live page's path under the module's admin prefix (/live is the
// pages' socket).
const livePath = "/live-shapes"

// livePage renders the Live page with d's flash or error, answering status.
func (a *Admin) livePage(w http.ResponseWriter, r *http.Request, st *site.Site, d liveData, status int) {
	msg := d.Error
	d.pageData = base(r, st, "Live shapes", "live")
	d.Error = msg
	d.Live = a.liveOf(r.Context(), st)
	if st.Live != nil {
		var err error
		if d.Shapes, err = st.Live.Shapes(r.Context()); err != nil {
			a.log.Warn("live page: list shapes", "err", err)
			if d.Error == "" {
				d.Error = "Could not list the shapes: " + err.Error()
			}
		}
	}
	pageHeaders(w)
	w.WriteHeader(status)
	a.render(w, "live.html", d)
}

// liveRoutes adds the Live page, its Drop form and the shape page to mux.
func (a *Admin) liveRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+livePath+"/{handle}", a.withSite(a.shapePage))
	mux.HandleFunc("GET "+livePath, a.withSite(func(w http.ResponseWriter, r *http.Request, st *site.Site) {
		var d liveData
		// The flash names the shape the Drop form redirected about; the page says
		// the rest (the query carries no text of its own).
		switch q := r.URL.Query(); {
		case q.Get("dropped") != "":
			d.Flash = "Shape " + q.Get("dropped") + " dropped: its readers refetch."
		case q.Get("gone") != "":
			d.Flash = "Shape " + q.Get("gone") + " was no longer live."
		}
		a.livePage(w, r, st, d, http.StatusOK)
	}))
	mux.HandleFunc("POST "+livePath+"/{handle}/drop", a.withSite(func(w http.ResponseWriter, r *http.Request, st *site.Site) {
		handle := r.PathValue("handle")
		if st.Live == nil {
			a.livePage(w, r, st, liveData{pageData: pageData{Error: "Live sync is not running on this site: nothing to drop."}}, http.StatusConflict)
			return
		}
		was, err := st.Live.Drop(r.Context(), handle)
		if err != nil {
			a.log.Warn("drop shape", "handle", handle, "err", err)
			a.livePage(w, r, st, liveData{pageData: pageData{Error: "Could not drop shape " + handle + ": " + err.Error()}}, http.StatusInternalServerError)
			return
		}
		a.log.Info("shape dropped", "handle", handle, "by", actor(r), "was_live", was)
		key := "gone"
		if was {
			key = "dropped"
		}
		http.Redirect(w, r, st.AdminPrefix+livePath+"?"+url.Values{key: {handle}}.Encode(), http.StatusSeeOther)
	}))
}

// shapeTable is a shape's table as namespace.table.
func shapeTable(s syncapi.ShapeSpec) string {
	if s.Namespace == "" {
		return s.Table
	}
	return s.Namespace + "." + s.Table
}

// replicaMode is a shape's replica mode, "default" when unset.
func replicaMode(s syncapi.ShapeSpec) string {
	if s.Replica == "" {
		return syncapi.ReplicaDefault
	}
	return s.Replica
}

// createdAt shows a ShapeInfo's RFC 3339 creation time as the other pages show
// times, or as given if it is not one.
func createdAt(v string) string {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return v
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

// humanBytes is n bytes in binary units: "512 B", "1.5 KiB", "3.0 GiB".
func humanBytes(n int64) string {
	if n < 1024 && n > -1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= 1024
		if v < 1024 && v > -1024 || unit == "TiB" {
			return fmt.Sprintf("%.1f %s", v, unit)
		}
	}
	return "" // not reached: the loop returns at TiB
}

// plural is n (an integer) followed by one or many, as n says.
func plural(n any, one, many string) string {
	s := fmt.Sprint(n)
	if s == "1" {
		return s + " " + one
	}
	return s + " " + many
}

// quoteList shows a shape's params or columns: each quoted (a param may be empty or
// hold commas).
func quoteList(v []string) string {
	q := make([]string, len(v))
	for i, s := range v {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}
