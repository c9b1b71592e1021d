package host

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/fiberkit/fiberkit/sdk/transport"
)

// matchRoute matches path against a manifest pattern ("/records/:table", "/files/*").
func matchRoute(pattern, path string) (map[string]string, bool) {
	ps := strings.Split(strings.Trim(pattern, "/"), "/")
	xs := strings.Split(strings.Trim(path, "/"), "/")
	params := map[string]string{}
	for i, p := range ps {
		if p == "*" {
			params["*"] = strings.Join(xs[i:], "/")
			return params, true
		}
		if i >= len(xs) {
			return nil, false
		}
		switch {
		case strings.HasPrefix(p, ":"):
			if xs[i] == "" {
				return nil, false
			}
			params[p[1:]] = xs[i]
		case p != xs[i]:
			return nil, false
		}
	}
	if len(xs) != len(ps) {
		return nil, false
	}
	return params, true
}

func (m *module) dispatchPublic(c *fiber.Ctx) error { return m.dispatch(c, false) }
func (m *module) dispatchAdmin(c *fiber.Ctx) error  { return m.dispatch(c, true) }

// dispatch finds the manifest route or WebSocket endpoint for the request and hands
// it to the plugin. A disabled module, or a path the manifest does not declare for
// this side (public or admin), answers 404.
func (m *module) dispatch(c *fiber.Ctx, admin bool) error {
	if !m.status().Enabled {
		return fiber.ErrNotFound
	}
	prefix := m.kit.cfg.Prefix
	if admin {
		prefix = m.kit.cfg.AdminPrefix
	}
	rel := strings.TrimPrefix(c.Path(), prefix+"/"+m.man.ID)
	if rel == "" {
		rel = "/"
	}
	if isWebSocketUpgrade(c) {
		for _, ws := range m.man.WebSockets {
			if ws.Admin != admin {
				continue
			}
			if params, ok := matchRoute(ws.Path, rel); ok {
				return m.serveWebSocket(c, ws.Path, ws.Browser, rel, params)
			}
		}
		return fiber.ErrNotFound
	}
	allowed := false
	for _, r := range m.man.Routes {
		if r.Admin != admin {
			continue
		}
		params, ok := matchRoute(r.Path, rel)
		if !ok {
			continue
		}
		if !methodAllowed(r.Methods, c.Method()) {
			allowed = true
			continue
		}
		return m.proxy(c, r.Path, rel, params)
	}
	if allowed {
		return fiber.ErrMethodNotAllowed
	}
	return fiber.ErrNotFound
}

func methodAllowed(methods []string, method string) bool {
	if len(methods) == 0 {
		return true
	}
	for _, x := range methods {
		if strings.EqualFold(x, method) || (method == fiber.MethodHead && strings.EqualFold(x, fiber.MethodGet)) {
			return true
		}
	}
	return false
}

func isWebSocketUpgrade(c *fiber.Ctx) bool {
	return strings.EqualFold(c.Get(fiber.HeaderUpgrade), "websocket") &&
		strings.Contains(strings.ToLower(c.Get(fiber.HeaderConnection)), "upgrade")
}

// caller is who the host says is making the request.
func caller(c *fiber.Ctx, admin bool) transport.Caller {
	user, _ := c.Locals(UserLocal).(string)
	return transport.Caller{User: user, RemoteAddr: c.IP(), Admin: admin}
}

func requestHeader(c *fiber.Ctx) http.Header {
	h := http.Header{}
	c.Request().Header.VisitAll(func(k, v []byte) {
		h.Add(string(k), string(v))
	})
	return h
}

// hopByHop headers belong to one connection and are not forwarded.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Transfer-Encoding": true,
	"Te": true, "Trailer": true, "Upgrade": true, "Content-Length": true,
}

// proxy streams the request to the plugin and the response back. The response body
// is handed from the gRPC stream to the client chunk by chunk through a channel of
// a few chunks, so neither a large body nor a slow client grows memory.
func (m *module) proxy(c *fiber.Ctx, route, rel string, params map[string]string) error {
	rpc, err := m.client()
	if err != nil {
		return unavailable(c, err)
	}
	admin := strings.HasPrefix(c.Path(), m.kit.cfg.AdminPrefix+"/")
	head := transport.RequestHead{
		Method: c.Method(), Path: rel, RawQuery: string(c.Request().URI().QueryString()),
		Header: requestHeader(c), RemoteAddr: c.IP(), Host: c.Hostname(), TLS: c.Protocol() == "https",
		Caller: caller(c, admin), Route: route, Params: params,
	}
	if admin {
		// The module embeds this token in its own forms; the kit checks it on POST.
		if tok, ok := c.Locals(csrfLocal).(string); ok {
			head.Header.Set(csrfHeader, tok)
		}
	}
	var body io.Reader
	if s := c.Context().RequestBodyStream(); s != nil && c.Locals(bodyReadLocal) == nil {
		body = s
	} else {
		// Small bodies arrive whole; copy, since fasthttp reuses the buffer.
		body = bytes.NewReader(append([]byte(nil), c.Body()...))
	}

	ctx, cancel := context.WithCancel(context.Background())
	pw := &pipeWriter{ctx: ctx, head: make(chan respHead, 1), body: make(chan chunk, 4)}
	done := make(chan error, 1)
	go func() {
		err := rpc.ServeHTTP(ctx, head, body, pw)
		close(pw.body)
		done <- err
	}()

	var h respHead
	select {
	case h = <-pw.head:
	case err := <-done:
		// The exchange may have ended right after sending its head: both channels
		// are ready then, and select picks either.
		select {
		case h = <-pw.head:
			done <- err // hand the outcome on to the body writer
		default:
			cancel()
			if err == nil {
				err = errors.New("no response")
			}
			m.kit.log.Warn("module request failed", "module", m.man.ID, "path", rel, "err", err)
			return unavailable(c, err)
		}
	}
	c.Status(h.status)
	for k, vs := range h.header {
		if hopByHop[http.CanonicalHeaderKey(k)] {
			continue
		}
		for _, v := range vs {
			c.Response().Header.Add(k, v)
		}
	}
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer cancel()
		for ch := range pw.body {
			if len(ch.data) > 0 {
				if _, err := w.Write(ch.data); err != nil {
					return
				}
			}
			if ch.flush {
				if err := w.Flush(); err != nil {
					return
				}
			}
		}
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			m.kit.log.Warn("module response cut short", "module", m.man.ID, "path", rel, "err", err)
		}
	})
	return nil
}

func unavailable(c *fiber.Ctx, err error) error {
	var op *transport.OpError
	if errors.As(err, &op) {
		switch op.Code {
		case transport.CodeModuleDisabled:
			return fiber.ErrNotFound
		case transport.CodeModuleDown:
			return c.Status(fiber.StatusServiceUnavailable).SendString("module unavailable: " + op.Message)
		}
	}
	return c.Status(fiber.StatusBadGateway).SendString("module error")
}

type respHead struct {
	status int
	header http.Header
}

type chunk struct {
	data  []byte
	flush bool
}

// pipeWriter hands the plugin's response to the fasthttp body writer. Sends block
// while the client is slow (bounded memory) and give up when ctx ends.
type pipeWriter struct {
	ctx  context.Context
	head chan respHead
	body chan chunk
}

func (p *pipeWriter) WriteHead(status int, header http.Header) error {
	p.head <- respHead{status: status, header: header}
	return nil
}

func (p *pipeWriter) Write(b []byte) (int, error) {
	select {
	case p.body <- chunk{data: b}:
		return len(b), nil
	case <-p.ctx.Done():
		return 0, p.ctx.Err()
	}
}

func (p *pipeWriter) Flush() error {
	select {
	case p.body <- chunk{flush: true}:
		return nil
	case <-p.ctx.Done():
		return p.ctx.Err()
	}
}
