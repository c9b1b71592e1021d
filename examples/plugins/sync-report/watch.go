package main

import (
	"net/http"
	"sync"

	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// watchLog keeps the events of this module's record watches, by label.
type watchLog struct {
	mu     sync.Mutex
	events map[string][]syncapi.WatchEvent
}

func (l *watchLog) add(ev syncapi.WatchEvent) {
	l.mu.Lock()
	l.events[ev.Label] = append(l.events[ev.Label], ev)
	l.mu.Unlock()
}

func (l *watchLog) of(label string) []syncapi.WatchEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]syncapi.WatchEvent{}, l.events[label]...)
}

// watchRoutes serves the watch endpoints: POST /watch?label=&table=[&id=|&by=&value=]
// starts a watch (One, AllBy or All), GET /watch/events?label= lists what it got,
// POST /watch/cancel?label= and GET /watch/watching?label= are Cancel and Watching;
// GET /shape?table=[&where=&param=] reads a shape once (its rows, up to date).
func watchRoutes(mux *http.ServeMux, mod func() *syncapi.Module, watches func() *syncapi.Watches) {
	log := &watchLog{events: map[string][]syncapi.WatchEvent{}}
	mux.HandleFunc("POST /watch", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		label, table := q.Get("label"), q.Get("table")
		var err error
		switch {
		case q.Has("id"):
			err = watches().One(r.Context(), label, table, q.Get("id"), log.add)
		case q.Has("by"):
			err = watches().AllBy(r.Context(), label, table, q.Get("by"), q.Get("value"), log.add)
		default:
			err = watches().All(r.Context(), label, table, log.add)
		}
		if err != nil {
			fail(w, err)
			return
		}
		writeJSON(w, log.of(label))
	})
	mux.HandleFunc("GET /watch/events", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, log.of(r.URL.Query().Get("label")))
	})
	mux.HandleFunc("POST /watch/cancel", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]bool{"cancelled": watches().Cancel(r.URL.Query().Get("label"))})
	})
	mux.HandleFunc("GET /watch/watching", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]bool{"watching": watches().Watching(r.URL.Query().Get("label"))})
	})
	mux.HandleFunc("GET /shape", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		spec := syncapi.ShapeSpec{Table: q.Get("table"), Where: q.Get("where"), Params: q["param"]}
		st, err := mod().Stream(r.Context(), syncapi.StreamRequest{Shape: spec, Once: true})
		if err != nil {
			fail(w, err)
			return
		}
		defer st.Close()
		var out []syncapi.StreamMessage
		for {
			m, err := st.Next()
			if err != nil {
				break
			}
			out = append(out, m)
		}
		writeJSON(w, out)
	})
}
