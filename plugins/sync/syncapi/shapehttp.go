package syncapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/fiberkit/fiberkit/sdk"
)

// OpShapeHTTP is the streaming operation that answers one request of Electric's
// HTTP shape API (https://electric-sql.com/docs/api/http): ShapeHTTPRequest →
// ShapeHTTPPart… (the head, then body chunks).
const OpShapeHTTP = "shape_http"

// ShapeHTTPRequest is one request of Electric's HTTP API for a shape the endpoint
// chose.
type ShapeHTTPRequest struct {
	// Shape is the endpoint's shape. Its table always wins over the request's
	// table parameter (which, when sent, must name it).
	Shape ShapeSpec `json:"shape"`
	// Query is the request's query: offset, handle, live, cursor, live_sse, and
	// where, params[n], columns, replica.
	Query map[string][]string `json:"query,omitempty"`
	// IfNoneMatch is the request's If-None-Match header: a response with that ETag
	// is answered 304.
	IfNoneMatch string `json:"if_none_match,omitempty"`
	// ClientShape lets the request's where, params[n] and columns fill in those
	// Shape leaves empty (a shape the client defines, as with Electric itself).
	// Whatever Shape sets, the request may repeat but not change: a where, params
	// or columns that differ are refused with 400, so a client never widens a
	// shape it was given. Without ClientShape the request may not set them at all
	// unless identical. replica may be chosen when Shape sets none.
	ClientShape bool `json:"client_shape,omitempty"`
	// Private marks a shape made for one user (its rows depend on who asks, while
	// the URL does not): its responses say Cache-Control: private, so no shared
	// cache (a CDN, a caching proxy) hands one user's rows to another. A shape that
	// is the same for every caller leaves it false and is cached publicly.
	Private bool `json:"private,omitempty"`
}

// ShapeHTTPPart is one value of a shape_http stream: the first carries Status and
// Header, the others Body chunks (one for a long-poll, one per event batch with
// SSE), each to be flushed to the client as it comes.
type ShapeHTTPPart struct {
	Status int                 `json:"status,omitempty"`
	Header map[string][]string `json:"header,omitempty"`
	Body   []byte              `json:"body,omitempty"`
}

// ServeShape answers r, a request of Electric's HTTP API (from @electric-sql/client's
// ShapeStream, say), with the shape spec — usually one made for the request's
// authenticated user — through the shape_http operation. It copies the status,
// headers and body, flushing each chunk (server-sent events stay open until the
// client goes). Query parameters where, params[n] and columns are refused unless
// identical to spec's; use ServeClientShape to let them fill in what spec leaves
// open.
//
// The shape is taken to be the caller's own: responses are Cache-Control:
// private (see ShapeHTTPRequest.Private). ServePublicShape serves one that is the
// same for everyone, cacheable by shared caches.
func (m *Module) ServeShape(w http.ResponseWriter, r *http.Request, spec ShapeSpec) {
	m.serveShape(w, r, ShapeHTTPRequest{Shape: spec, Private: true})
}

// ServePublicShape is ServeShape for a shape that is the same whoever asks:
// shared caches may keep its responses and answer other users with them.
func (m *Module) ServePublicShape(w http.ResponseWriter, r *http.Request, spec ShapeSpec) {
	m.serveShape(w, r, ShapeHTTPRequest{Shape: spec})
}

// ServeClientShape is ServeShape with ShapeHTTPRequest.ClientShape: the request's
// where, params[n] and columns fill in those spec leaves empty.
func (m *Module) ServeClientShape(w http.ResponseWriter, r *http.Request, spec ShapeSpec) {
	m.serveShape(w, r, ShapeHTTPRequest{Shape: spec, ClientShape: true, Private: true})
}

func (m *Module) serveShape(w http.ResponseWriter, r *http.Request, req ShapeHTTPRequest) {
	req.Query, req.IfNoneMatch = r.URL.Query(), r.Header.Get("If-None-Match")
	st, ok := m.host.(Streamer)
	if !ok {
		http.Error(w, ErrNoStreams.Error(), http.StatusInternalServerError)
		return
	}
	s, err := st.CallStream(r.Context(), ModuleID, OpShapeHTTP, req)
	if err != nil {
		ShapeError(w, err)
		return
	}
	defer s.Close()
	var head ShapeHTTPPart
	if err := s.Recv(&head); err != nil {
		ShapeError(w, err)
		return
	}
	for k, v := range head.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(head.Status)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	for {
		var p ShapeHTTPPart
		if err := s.Recv(&p); err != nil {
			return // io.EOF, the client gone, or the operation failed after the head
		}
		if _, err := w.Write(p.Body); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
}

// ShapeError answers a shape_http call that failed before its head: the status
// its error code means (400 invalid_input, 403 forbidden, 503 live_disabled or an
// unavailable module, 502 otherwise) and {"message": …}.
func ShapeError(w http.ResponseWriter, err error) {
	status, body := ShapeErrorResponse(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// ShapeErrorResponse is the status and JSON body ShapeError answers err with.
func ShapeErrorResponse(err error) (int, []byte) {
	status := http.StatusBadGateway
	switch {
	case errors.Is(err, sdk.ErrInvalidInput):
		status = http.StatusBadRequest
	case errors.Is(err, sdk.ErrForbidden):
		status = http.StatusForbidden
	case errors.Is(err, &sdk.Error{Code: CodeLiveDisabled}), errors.Is(err, sdk.ErrModuleDisabled), errors.Is(err, sdk.ErrModuleDown):
		status = http.StatusServiceUnavailable
	case errors.Is(err, io.EOF):
		err = errors.New("shape_http ended without a response")
	case errors.Is(err, context.Canceled):
		status = 499 // the client went away: nobody reads this
	}
	b, _ := json.Marshal(map[string]string{"message": err.Error()})
	return status, b
}
