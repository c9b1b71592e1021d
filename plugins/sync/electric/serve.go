package electric

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/live"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// Heartbeat is how often a server-sent event stream with nothing to say sends a
// keep-alive comment (Electric's 21 s: under common proxies' 30 s idle timeouts).
const Heartbeat = 21 * time.Second

// Poller answers polls of live shapes; *live.Engine is one.
type Poller interface {
	Poll(ctx context.Context, req live.PollRequest) (live.PollResult, error)
}

// Serve answers one request of Electric's HTTP API with p, sending the head
// (status and headers) and then the body chunks to send: one for a long-poll, one
// per batch of events with server-sent events, whose stream stays open until ctx
// ends (the client went) or the shape must be refetched. q reads the catalog for
// the electric-schema header. A request that cannot be served is answered (400 for
// a bad shape, offset or parameter; 503 when live sync stopped), not returned as
// an error; the error is send's, or the engine's after the head went.
func Serve(ctx context.Context, p Poller, q catalog.Querier, in syncapi.ShapeHTTPRequest, send func(syncapi.ShapeHTTPPart) error) error {
	req, err := ParseRequest(url.Values(in.Query), in.Shape, in.ClientShape)
	if err != nil {
		return sendResponse(send, ErrorResponse(http.StatusBadRequest, err))
	}
	poll := req.Poll
	if req.SSE {
		poll.Live, poll.Wait = false, 0 // the head at once, then the stream
	}
	res, err := p.Poll(ctx, poll)
	if err != nil {
		if r, ok := errorResponse(err); ok {
			return sendResponse(send, r)
		}
		return err
	}
	schema := ""
	if !req.Poll.Live && !res.MustRefetch {
		if schema, err = Schema(ctx, q, req.Poll.Shape); err != nil {
			return err
		}
	}
	if in.Private {
		send = privately(send)
	}
	if !req.SSE || res.MustRefetch {
		return sendResponse(send, Respond(req, res, schema, in.IfNoneMatch))
	}
	return serveSSE(ctx, p, req, res, send)
}

// privately makes the Cache-Control of the head send passes private: a shape made
// for one user must never be answered to another from a shared cache.
func privately(send func(syncapi.ShapeHTTPPart) error) func(syncapi.ShapeHTTPPart) error {
	return func(p syncapi.ShapeHTTPPart) error {
		if cc := p.Header["Cache-Control"]; len(cc) > 0 {
			p.Header["Cache-Control"] = []string{PrivateCache(cc[0])}
		}
		return send(p)
	}
}

// PrivateCache turns a public Cache-Control value into a private one: the same
// lifetimes for the user's own browser, none for shared caches.
func PrivateCache(cc string) string {
	var parts []string
	for _, d := range strings.Split(cc, ",") {
		d = strings.TrimSpace(d)
		switch {
		case d == "public":
			parts = append(parts, "private")
		case strings.HasPrefix(d, "s-maxage="):
		default:
			parts = append(parts, d)
		}
	}
	return strings.Join(parts, ", ")
}

// errorResponse is the response to an error of Poll that the client caused or
// can wait out.
func errorResponse(err error) (Response, bool) {
	var inv *live.InvalidError
	switch {
	case errors.As(err, &inv):
		return ErrorResponse(http.StatusBadRequest, inv), true
	case errors.Is(err, live.ErrClosed):
		return ErrorResponse(http.StatusServiceUnavailable, err), true
	}
	return Response{}, false
}

func sendResponse(send func(syncapi.ShapeHTTPPart) error, r Response) error {
	if err := send(syncapi.ShapeHTTPPart{Status: r.Status, Header: r.Header}); err != nil {
		return err
	}
	if len(r.Body) == 0 {
		return nil
	}
	return send(syncapi.ShapeHTTPPart{Body: r.Body})
}

// serveSSE streams the shape as server-sent events from res, the answer of a
// first poll that did not wait.
func serveSSE(ctx context.Context, p Poller, req Request, res live.PollResult, send func(syncapi.ShapeHTTPPart) error) error {
	h := http.Header{}
	h.Set("Access-Control-Expose-Headers", ExposeHeaders)
	h.Set("Vary", "Authorization, Cookie")
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", CacheLive)
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	h.Set(HeaderHandle, res.Handle)
	// The offset the client resumes from until an up-to-date moves it: the
	// request's, since the events below may not all reach it.
	h.Set(HeaderOffset, WireOffset(req.Poll.Offset))
	h.Set(HeaderCursor, NextCursor(req.Cursor, time.Now()))
	if err := send(syncapi.ShapeHTTPPart{Status: http.StatusOK, Header: h}); err != nil {
		return err
	}
	first := true
	for {
		var buf bytes.Buffer
		for _, m := range res.Messages {
			b, _ := json.Marshal(m.Message)
			event(&buf, b)
		}
		switch {
		case res.UpToDate && (first || len(res.Messages) > 0):
			b, _ := json.Marshal(map[string]any{"headers": map[string]string{
				"control": syncapi.ControlUpToDate, "global_last_seen_lsn": LastSeenLSN(res.Offset)}})
			event(&buf, b)
		case len(res.Messages) == 0:
			buf.WriteString(": keep-alive\n\n")
		}
		if err := send(syncapi.ShapeHTTPPart{Body: buf.Bytes()}); err != nil {
			return err
		}
		first = false
		next := req.Poll
		next.Handle, next.Offset, next.Live, next.Wait = res.Handle, res.Offset, true, Heartbeat
		var err error
		if res, err = p.Poll(ctx, next); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if res.MustRefetch {
			// The client publishes it, reconnects with its old handle and gets the
			// 409 that makes it start over with the new one.
			var b bytes.Buffer
			event(&b, []byte(`{"headers":{"control":"must-refetch"}}`))
			return send(syncapi.ShapeHTTPPart{Body: b.Bytes()})
		}
	}
}

// event writes one server-sent event whose data is the JSON message b (one line).
func event(buf *bytes.Buffer, b []byte) {
	buf.WriteString("data: ")
	buf.Write(b)
	buf.WriteString("\n\n")
}
