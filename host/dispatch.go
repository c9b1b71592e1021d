package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/fiberkit/fiberkit/sdk/transport"
)

// headTimeout bounds how long the proxy waits for a module's response head once the
// request body stops arriving: a module that never answers costs the client a 504,
// not a connection held forever. Counting from the last body progress keeps slow
// uploads alive.
var headTimeout atomic.Int64

func init() { headTimeout.Store(int64(60 * time.Second)) }

// matchRoute matches path against a manifest pattern ("/records/:table", "/files/*").
// Optional parameters ("/:id?") are refused by the manifest, so none reach here.
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
				return m.serveWebSocket(c, ws.Path, ws.Browser, admin, rel, params)
			}
		}
		return fiber.ErrNotFound
	}
	allowed := false
	for i, r := range m.man.Routes {
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
		return m.proxy(c, admin, &m.metrics.routes[i], r.Path, rel, params)
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

// requestHeader is the header a module sees. Hop-by-hop headers, and those the
// Connection header names, belong to the client's connection and are dropped, as is
// Proxy-Authorization. On admin routes the Authorization header carried the admin's
// credentials to the host's AdminAuth and is dropped too (the module learns the user
// from the caller); on public routes it is addressed to the module and kept. The kit's
// own cookies are removed from Cookie; the app's other cookies pass.
func requestHeader(c *fiber.Ctx, admin bool) http.Header {
	rh := &c.Request().Header
	var connNamed []string // rarely more than "close" or "keep-alive"
	for _, v := range rh.PeekAll(fiber.HeaderConnection) {
		for _, name := range strings.Split(string(v), ",") {
			if name = strings.TrimSpace(name); name != "" {
				connNamed = append(connNamed, http.CanonicalHeaderKey(name))
			}
		}
	}
	dropped := func(key string) bool {
		return key == "Proxy-Authorization" || admin && key == "Authorization" || slices.Contains(connNamed, key)
	}
	h := http.Header{}
	rh.VisitAll(func(k, v []byte) {
		key := http.CanonicalHeaderKey(string(k))
		if dropped(key) || hopByHop[key] && key != "Content-Length" || key == "Cookie" {
			return
		}
		h[key] = append(h[key], string(v))
	})
	var cookies []string
	rh.VisitAllCookie(func(k, v []byte) {
		if string(k) != csrfCookie { // the kit's own cookie never reaches a module
			cookies = append(cookies, string(k)+"="+string(v))
		}
	})
	if len(cookies) > 0 && !dropped("Cookie") {
		h.Set("Cookie", strings.Join(cookies, "; "))
	}
	return h
}

// hopByHop headers belong to one connection and are not forwarded.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Transfer-Encoding": true,
	"Te": true, "Trailer": true, "Upgrade": true, "Content-Length": true,
}

// proxy hands the request to the plugin and the response back. A request whose body
// fasthttp holds whole goes over a pooled Exchange stream (proxyExchange); one whose
// body is streamed, or to a plugin without Exchange, over a ServeHTTP stream of its
// own, as follows. The response body
// is handed from the gRPC stream to fasthttp chunk by chunk through a channel of a
// few chunks, so neither a large body nor a slow client grows memory.
//
// fasthttp recycles the request (its body stream and the connection's reader) as soon
// as the response is written, so the exchange must be over by then: the response
// body is an io.ReadCloser that fasthttp closes in its own goroutine when it is done
// with it, and Close ends the exchange and cuts the transport off the request body
// before returning.
//
// The request is counted in rm when the exchange ends (the response's last byte is
// handed to fasthttp, or the kit answered in the module's place).
func (m *module) proxy(c *fiber.Ctx, admin bool, rm *routeMetrics, route, rel string, params map[string]string) error {
	start := time.Now()
	rpc, err := m.client()
	if err != nil {
		err = unavailable(c, err)
		rm.observe(answeredStatus(c, err), time.Since(start))
		return err
	}
	head := transport.RequestHead{
		Method: c.Method(), Path: rel, RawQuery: string(c.Request().URI().QueryString()),
		Header: requestHeader(c, admin), RemoteAddr: c.IP(), Host: c.Hostname(), TLS: c.Protocol() == "https",
		Caller: caller(c, admin), Route: route, Params: params,
	}
	if admin {
		// The module embeds this token in its own forms; the kit checks it on POST.
		if tok, ok := c.Locals(csrfLocal).(string); ok {
			head.Header.Set(csrfHeader, tok)
		}
	}
	streamed := c.Context().RequestBodyStream() != nil && c.Locals(bodyReadLocal) == nil
	if !streamed && len(c.Body()) <= exchangeBodyMax && rpc.CanExchange() {
		return m.proxyExchange(c, rpc, head, rm, start)
	}
	var body *requestBody
	if s := c.Context().RequestBodyStream(); streamed {
		// The server's read deadline counts from the request's first byte; a body
		// streamed to the module gets it afresh at every read instead.
		body = newRequestBody(s, c.Context().Conn(), c.App().Config().ReadTimeout)
	} else {
		// Small bodies arrive whole; copy, since fasthttp reuses the buffer.
		body = newRequestBody(bytes.NewReader(append([]byte(nil), c.Body()...)), nil, 0) // never blocks; EOF when done
	}

	ctx, cancel := context.WithCancel(context.Background())
	x := &exchange{
		// rel is a view of the fiber.Ctx's path buffer, which the next request on any
		// connection reuses once the handler returned; the exchange logs it later,
		// from fasthttp's response body reads.
		m: m, rel: strings.Clone(rel), cancel: cancel, conn: c.Context().Conn(), rm: rm, start: start,
		pw:       &pipeWriter{ctx: ctx, head: make(chan respHead, 1), body: make(chan chunk, 4)},
		body:     body,
		finished: make(chan struct{}),
	}
	go func() {
		err := rpc.ServeHTTP(ctx, head, x.body, x.pw)
		x.err = err
		close(x.finished)
		close(x.pw.body)
	}()

	h, err := x.waitHead()
	if err != nil {
		if errors.Is(err, errHeadTimeout) {
			x.status = fiber.StatusGatewayTimeout
			x.end(true)
			m.kit.log.Warn("module did not answer in time", "module", m.man.ID, "path", rel, "timeout", time.Duration(headTimeout.Load()))
			return c.Status(fiber.StatusGatewayTimeout).SendString("module did not answer in time")
		}
		m.kit.log.Warn("module request failed", "module", m.man.ID, "path", rel, "err", err)
		err = unavailable(c, err)
		x.status = answeredStatus(c, err)
		x.end(true)
		return err
	}
	x.status = h.status
	if h.status < 200 || h.status > 999 {
		x.status = fiber.StatusBadGateway
		x.end(true)
		m.kit.log.Warn("module sent an invalid status", "module", m.man.ID, "path", rel, "status", h.status)
		return c.Status(fiber.StatusBadGateway).SendString("module error")
	}
	setHead(c, h.status, h.header)
	c.Context().Response.SetBodyStream(&responseBody{x: x}, -1)
	return nil
}

var errHeadTimeout = errors.New("module did not answer in time")

// exchangeBodyMax is the largest request body sent whole in one Exchange message; a
// larger one (an app whose Fiber config buffers big bodies) is sent in chunks over
// ServeHTTP.
const exchangeBodyMax = 1 << 20

// proxyExchange serves a request whose body fasthttp holds whole over a pooled
// Exchange stream, on this goroutine: the request goes up in one message, and a
// response the module finished at once comes back in one and is answered with its
// length. A longer or flushed response is streamed to the client by exchangeBody,
// which reads the stream only as fasthttp asks for more. Once StartExchange
// returned, nothing of the request is read again, so fasthttp may recycle it.
func (m *module) proxyExchange(c *fiber.Ctx, rpc *transport.Client, head transport.RequestHead, rm *routeMetrics, start time.Time) error {
	x, err := rpc.StartExchange(head, c.Body())
	if err != nil {
		m.kit.log.Warn("module request failed", "module", m.man.ID, "path", head.Path, "err", err)
		err = unavailable(c, err)
		rm.observe(answeredStatus(c, err), time.Since(start))
		return err
	}
	var timedOut atomic.Bool
	t := time.AfterFunc(time.Duration(headTimeout.Load()), func() {
		timedOut.Store(true)
		x.Abort()
	})
	p, err := x.Next()
	t.Stop()
	if err == nil && !p.HasHead {
		x.Abort()
		err = errBodyBeforeHead
	}
	if err != nil {
		if timedOut.Load() {
			rm.observe(fiber.StatusGatewayTimeout, time.Since(start))
			m.kit.log.Warn("module did not answer in time", "module", m.man.ID, "path", head.Path, "timeout", time.Duration(headTimeout.Load()))
			return c.Status(fiber.StatusGatewayTimeout).SendString("module did not answer in time")
		}
		if !errors.Is(err, transport.ErrUnimplemented) {
			m.kit.log.Warn("module request failed", "module", m.man.ID, "path", head.Path, "err", err)
		}
		err = unavailable(c, err)
		rm.observe(answeredStatus(c, err), time.Since(start))
		return err
	}
	if p.Status < 200 || p.Status > 999 {
		x.Abort()
		rm.observe(fiber.StatusBadGateway, time.Since(start))
		m.kit.log.Warn("module sent an invalid status", "module", m.man.ID, "path", head.Path, "status", p.Status)
		return c.Status(fiber.StatusBadGateway).SendString("module error")
	}
	setHead(c, p.Status, p.Header)
	if p.End {
		// The whole response: sent with its length, no chunked encoding.
		c.Response().SetBodyRaw(p.Body)
		rm.observe(p.Status, time.Since(start))
		return nil
	}
	if len(p.Body) == 0 {
		// The head came alone: the handler answered and then waits (a long-poll), or
		// flushed its head. The client gets it now, not with the first piece of body.
		c.Context().Response.ImmediateHeaderFlush = true
	}
	// head.Path is a view of the fiber.Ctx's path buffer, which the next request
	// reuses once the handler returned; the body logs it later.
	c.Context().Response.SetBodyStream(&exchangeBody{m: m, x: x, rm: rm, rel: strings.Clone(head.Path),
		status: p.Status, start: start, cur: p.Body}, -1)
	return nil
}

// exchangeBody streams the rest of an Exchange response to fasthttp; each Read is
// written to the client as one chunk and flushed. fasthttp closes it when it is done,
// read whole or not (client gone, HEAD request): an exchange not over by then is
// aborted, which cancels the handler in the module.
type exchangeBody struct {
	m      *module
	x      *transport.Exchange
	rm     *routeMetrics
	rel    string
	status int
	start  time.Time
	cur    []byte
	done   bool // the response ended, or failed
	once   sync.Once
}

func (b *exchangeBody) Read(p []byte) (int, error) {
	for len(b.cur) == 0 {
		if b.done {
			return 0, io.EOF
		}
		part, err := b.x.Next()
		if err == nil && part.HasHead {
			b.x.Abort()
			err = errSecondHead
		}
		if err != nil {
			b.done = true
			b.end()
			b.m.kit.log.Warn("module response cut short", "module", b.m.man.ID, "path", b.rel, "err", err)
			// Failing the read ends the chunked body without its last chunk, so the
			// client sees a truncated response, not a complete one.
			return 0, fmt.Errorf("module response cut short: %w", err)
		}
		b.cur = part.Body
		if part.End {
			b.done = true
			b.end()
		}
	}
	n := copy(p, b.cur)
	b.cur = b.cur[n:]
	return n, nil
}

// Close is called by fasthttp when it is done with the body.
func (b *exchangeBody) Close() error {
	b.x.Abort()
	b.end()
	return nil
}

// end counts the request once.
func (b *exchangeBody) end() {
	b.once.Do(func() { b.rm.observe(b.status, time.Since(b.start)) })
}

// exchange is one proxied request in flight.
type exchange struct {
	m      *module
	rel    string
	cancel context.CancelFunc
	conn   net.Conn
	pw     *pipeWriter
	body   *requestBody
	rm     *routeMetrics
	start  time.Time
	status int // what the client is answered; set before end

	finished chan struct{} // closed when rpc.ServeHTTP has returned
	err      error         // its result; read only after finished

	once sync.Once
}

// waitHead waits for the module's response head. It fails when the exchange ends
// without one, or when neither a head nor request body progress came for headTimeout.
func (x *exchange) waitHead() (respHead, error) {
	limit := time.Duration(headTimeout.Load())
	t := time.NewTimer(limit)
	defer t.Stop()
	for {
		select {
		case h := <-x.pw.head:
			return h, nil
		case <-x.finished:
			// The exchange may have ended right after sending its head: both channels
			// are ready then, and select picks either.
			select {
			case h := <-x.pw.head:
				return h, nil
			default:
			}
			if x.err == nil {
				return respHead{}, errors.New("no response")
			}
			return respHead{}, x.err
		case <-t.C:
			if idle := time.Since(x.body.lastProgress()); idle < limit {
				t.Reset(limit - idle)
				continue
			}
			return respHead{}, errHeadTimeout
		}
	}
}

// end finishes the exchange and returns only once the transport has stopped and can
// no longer touch the request. abort cancels it first (client gone, timeout, or the
// response was abandoned); otherwise it has already finished.
func (x *exchange) end(abort bool) error {
	x.once.Do(func() {
		if abort {
			x.cancel()
			// A body read may be blocked on the client: the deadline wakes it.
			x.body.cut(x.conn)
		}
		<-x.finished
		x.cancel()
		x.body.cut(nil)
		x.rm.observe(x.status, time.Since(x.start))
	})
	return x.err
}

// responseBody is the response body fasthttp reads; each Read is written to the
// client as one chunk and flushed, so server-sent events arrive as they are sent.
type responseBody struct {
	x   *exchange
	cur []byte
}

func (r *responseBody) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		ch, ok := <-r.x.pw.body
		if !ok {
			if err := r.x.end(false); err != nil {
				r.x.m.kit.log.Warn("module response cut short", "module", r.x.m.man.ID, "path", r.x.rel, "err", err)
				// Failing the read ends the chunked body without its last chunk, so
				// the client sees a truncated response, not a complete one.
				return 0, fmt.Errorf("module response cut short: %w", err)
			}
			return 0, io.EOF
		}
		r.cur = ch.data
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// Close is called by fasthttp when it is done with the body, read whole or not
// (client gone, HEAD request).
func (r *responseBody) Close() error {
	r.x.end(true)
	return nil
}

// requestBody hands the client's request body to the transport and can be cut off,
// after which it never reads the underlying stream again.
type requestBody struct {
	mu    sync.Mutex // held during a read of r
	r     io.Reader
	gone  bool
	ended atomic.Bool  // r returned an error (io.EOF included)
	last  atomic.Int64 // UnixNano of the last read, or of creation

	// With readTimeout, each read of r, which reads conn, may wait that long.
	conn        net.Conn
	readTimeout time.Duration
	cutting     atomic.Bool // cut is waking reads: no new deadline may undo that
}

var errBodyCut = errors.New("request body no longer available")

// newRequestBody reads r; with conn and readTimeout, each read may wait readTimeout
// for the client.
func newRequestBody(r io.Reader, conn net.Conn, readTimeout time.Duration) *requestBody {
	b := &requestBody{r: r, conn: conn, readTimeout: readTimeout}
	b.last.Store(time.Now().UnixNano())
	return b
}

func (b *requestBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gone {
		return 0, errBodyCut
	}
	if b.conn != nil && b.readTimeout > 0 {
		_ = b.conn.SetReadDeadline(time.Now().Add(b.readTimeout))
		// cut sets cutting before it expires the deadline: seen here, this read must
		// not wait; not seen, cut's deadline comes after ours and wakes it.
		if b.cutting.Load() {
			return 0, errBodyCut
		}
	}
	n, err := b.r.Read(p)
	b.last.Store(time.Now().UnixNano())
	if err != nil {
		b.ended.Store(true)
	}
	return n, err
}

func (b *requestBody) lastProgress() time.Time { return time.Unix(0, b.last.Load()) }

// cut stops further reads. With conn, a read still waiting for the client is woken
// by an expired read deadline; the connection is then useless for another request,
// which is right since its request body was not read to the end.
func (b *requestBody) cut(conn net.Conn) {
	if conn != nil && !b.ended.Load() {
		b.cutting.Store(true)
		_ = conn.SetReadDeadline(time.Now())
	}
	b.mu.Lock()
	b.gone = true
	b.mu.Unlock()
}

// answeredStatus is the status of the answer unavailable gave: set on c, or carried
// by the *fiber.Error it returned for the app's error handler.
func answeredStatus(c *fiber.Ctx, err error) int {
	var fe *fiber.Error
	if errors.As(err, &fe) {
		return fe.Code
	}
	return c.Response().StatusCode()
}

func unavailable(c *fiber.Ctx, err error) error {
	if errors.Is(err, transport.ErrUnimplemented) {
		return c.Status(fiber.StatusNotImplemented).SendString("not implemented by this module")
	}
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
	data []byte
}

var (
	errSecondHead     = errors.New("module sent a second response head")
	errBodyBeforeHead = errors.New("module sent body before the response head")
)

// pipeWriter hands the plugin's response to the fasthttp body reader. The transport
// calls it from one goroutine. Sends block while the client is slow (bounded memory)
// and give up when ctx ends; a head sent twice, or body before the head, is an error
// rather than a wait that nobody would end.
type pipeWriter struct {
	ctx       context.Context
	head      chan respHead
	body      chan chunk
	wroteHead bool
}

func (p *pipeWriter) WriteHead(status int, header http.Header) error {
	if p.wroteHead {
		return errSecondHead
	}
	p.wroteHead = true
	select {
	case p.head <- respHead{status: status, header: header}:
		return nil
	case <-p.ctx.Done():
		return p.ctx.Err()
	}
}

func (p *pipeWriter) Write(b []byte) (int, error) {
	if !p.wroteHead {
		return 0, errBodyBeforeHead
	}
	if len(b) == 0 {
		return 0, nil
	}
	select {
	case p.body <- chunk{data: b}:
		return len(b), nil
	case <-p.ctx.Done():
		return 0, p.ctx.Err()
	}
}

// Flush has nothing to do: every chunk handed to fasthttp is flushed to the client.
func (p *pipeWriter) Flush() error {
	if !p.wroteHead {
		return errBodyBeforeHead
	}
	return p.ctx.Err()
}

// setHead writes a module's response status and headers to c, leaving out the
// hop-by-hop ones, which are the host's to set.
func setHead(c *fiber.Ctx, status int, header http.Header) {
	c.Status(status)
	for k, vs := range header {
		if hopByHop[http.CanonicalHeaderKey(k)] {
			continue
		}
		for _, v := range vs {
			c.Response().Header.Add(k, v)
		}
	}
}
