package sdk

import (
	"context"
	"io"
	"net/http"
	"net/url"

	"github.com/fiberkit/fiberkit/sdk/transport"
)

type paramsKey struct{}

// Param returns the route parameter name of r (for a manifest route "/records/:table",
// Param(r, "table")).
func Param(r *http.Request, name string) string {
	p, _ := r.Context().Value(paramsKey{}).(map[string]string)
	return p[name]
}

func (a *adapter) ServeHTTP(ctx context.Context, head transport.RequestHead, body io.Reader, w transport.ResponseWriter) (err error) {
	if a.m.HTTP == nil {
		return transport.ErrUnimplemented
	}
	ctx = withCaller(ctx, Caller(head.Caller))
	ctx = context.WithValue(ctx, paramsKey{}, head.Params)
	u := &url.URL{Path: head.Path, RawQuery: head.RawQuery}
	req, err := http.NewRequestWithContext(ctx, head.Method, u.String(), io.NopCloser(body))
	if err != nil {
		return transport.Errorf(transport.CodeInvalidInput, "build request: %v", err)
	}
	req.Header = head.Header
	req.RemoteAddr = head.RemoteAddr
	req.Host = head.Host
	req.RequestURI = u.RequestURI()
	rw := &responseWriter{w: w, header: http.Header{}}
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				err = transport.Errorf(transport.CodeInternal, "handler aborted")
				return
			}
			a.logPanic("http "+head.Method+" "+head.Path, r)
			if !rw.wroteHeader {
				rw.header = http.Header{"Content-Type": {"text/plain; charset=utf-8"}}
				rw.WriteHeader(http.StatusInternalServerError)
				_, _ = io.WriteString(rw, "internal error\n")
			}
			err = nil
		}
	}()
	a.m.HTTP.ServeHTTP(rw, req)
	return nil
}

// responseWriter is an http.ResponseWriter and http.Flusher over the transport.
type responseWriter struct {
	w           transport.ResponseWriter
	header      http.Header
	wroteHeader bool
	err         error
}

// Header implements http.ResponseWriter.
func (r *responseWriter) Header() http.Header { return r.header }

// WriteHeader implements http.ResponseWriter.
func (r *responseWriter) WriteHeader(status int) {
	if r.wroteHeader {
		return
	}
	r.wroteHeader = true
	r.err = r.w.WriteHead(status, r.header.Clone())
}

// Write implements http.ResponseWriter.
func (r *responseWriter) Write(p []byte) (int, error) {
	if !r.wroteHeader {
		if r.header.Get("Content-Type") == "" {
			r.header.Set("Content-Type", http.DetectContentType(p))
		}
		r.WriteHeader(http.StatusOK)
	}
	if r.err != nil {
		return 0, r.err
	}
	return r.w.Write(p)
}

// Flush sends everything written so far to the client (server-sent events rely on it).
func (r *responseWriter) Flush() {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	if r.err == nil {
		r.err = r.w.Flush()
	}
}
