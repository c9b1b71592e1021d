package host

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	fws "github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/fiberkit/fiberkit/sdk/transport"
)

const (
	// writeTimeout bounds one write to a client; a client that never reads is
	// disconnected instead of holding the plugin's messages in memory.
	writeTimeout = 30 * time.Second
	pingInterval = 30 * time.Second
	// outQueue is how many messages may wait for a slow client before the plugin's
	// stream is back-pressured.
	outQueue = 16
	// publishWait is how long Publish waits for room in a connection's full queue
	// (all connections at once) before it disconnects that client as too slow.
	publishWait = time.Second
	// maxControlPayload is the largest ping or pong payload (RFC 6455 §5.5).
	maxControlPayload = 125
)

const wsOpenLocal = "fiberkit.wsopen"

// serveWebSocket upgrades the request and bridges it to the plugin: exactly one
// goroutine writes to the client, the client reader never outlives the handler, and
// close codes pass through both ways.
//
// Cross-site WebSocket hijacking is refused by the Origin check: a browser endpoint
// must present an allowed Origin, and an admin endpoint (browser or not) refuses any
// Origin that is not allowed — a browser always sends one, so a page on another site
// cannot ride on the admin's credentials; a non-browser admin client sends none.
func (m *module) serveWebSocket(c *fiber.Ctx, route string, browser, admin bool, rel string, params map[string]string) error {
	if browser || admin {
		if origin := c.Get(fiber.HeaderOrigin); (origin != "" || browser) && !m.kit.originAllowed(c) {
			m.kit.log.Warn("websocket origin refused", "module", m.man.ID, "path", rel, "origin", origin)
			return c.Status(fiber.StatusForbidden).SendString("origin not allowed")
		}
	}
	rpc, err := m.client()
	if err != nil {
		return unavailable(c, err)
	}
	open := transport.WebSocketOpen{
		ID: newConnID(), Path: rel, Route: route, Params: params,
		RawQuery: string(c.Request().URI().QueryString()), Header: requestHeader(c, admin), Caller: caller(c, admin),
	}
	// Open the module's side first: it accepts or rejects before the upgrade, so an
	// authentication failure is a plain HTTP answer (e.g. 403 with a reason).
	ctx, cancel := context.WithCancel(context.Background())
	sock, err := rpc.OpenWebSocket(ctx, open)
	if err != nil {
		cancel()
		return unavailable(c, err)
	}
	first, err := recvAnswer(ctx, sock, 30*time.Second)
	if errors.Is(err, transport.ErrUnimplemented) {
		cancel()
		return fiber.ErrNotFound
	}
	if err != nil {
		cancel()
		m.kit.log.Warn("websocket not answered", "module", m.man.ID, "path", rel, "err", err)
		return c.Status(fiber.StatusBadGateway).SendString("module did not answer the connection")
	}
	if first.Kind == transport.Reject {
		cancel()
		status := first.Code
		if status < 400 || status > 599 {
			status = fiber.StatusForbidden
		}
		return c.Status(status).SendString(first.Reason)
	}
	c.Locals(wsOpenLocal, &pendingSocket{open: open, sock: sock, ctx: ctx, cancel: cancel})
	upgraded := false
	defer func() {
		if !upgraded {
			cancel()
		}
	}()
	err = fws.New(func(conn *fws.Conn) {
		p := conn.Locals(wsOpenLocal).(*pendingSocket)
		m.bridge(conn, p)
	}, fws.Config{ReadBufferSize: 32 << 10, WriteBufferSize: 32 << 10, RecoverHandler: func(*fws.Conn) {
		if r := recover(); r != nil {
			m.kit.log.Error("websocket bridge panic", "module", m.man.ID, "panic", r)
		}
	}})(c)
	upgraded = err == nil
	return err
}

// pendingSocket carries the module's accepted stream into the upgraded handler.
type pendingSocket struct {
	open   transport.WebSocketOpen
	sock   transport.ClientSocket
	ctx    context.Context
	cancel context.CancelFunc
}

// recvAnswer waits for the module's accept or reject.
func recvAnswer(ctx context.Context, sock transport.ClientSocket, timeout time.Duration) (transport.Message, error) {
	type res struct {
		m   transport.Message
		err error
	}
	ch := make(chan res, 1)
	go func() {
		m, err := sock.Recv()
		ch <- res{m, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			return transport.Message{}, r.err
		}
		if r.m.Kind != transport.Accept && r.m.Kind != transport.Reject {
			return transport.Message{}, errors.New("module sent data before accepting the connection")
		}
		return r.m, nil
	case <-t.C:
		return transport.Message{}, errors.New("timed out")
	case <-ctx.Done():
		return transport.Message{}, ctx.Err()
	}
}

// originAllowed accepts a browser's Origin when it is this request's own host or one
// of Config.AllowedOrigins. A missing Origin (not a browser) is refused too.
func (k *Kit) originAllowed(c *fiber.Ctx) bool {
	origin := c.Get(fiber.HeaderOrigin)
	if origin == "" {
		return false
	}
	for _, o := range k.cfg.AllowedOrigins {
		if o == origin {
			return true
		}
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == string(c.Request().Host())
}

func newConnID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// liveConn is a bridged connection as the registry sees it, for Publish.
type liveConn struct {
	route string
	out   chan transport.Message
	done  chan struct{}
	kick  func(code int, reason string)

	mu   sync.Mutex
	nc   net.Conn // the client's connection while the bridge runs; nil after
	slow bool     // already being disconnected as too slow
}

// dropSlow disconnects a client whose queue stayed full: it is asked to close with
// 1008 and a reason, and a write blocked on it is woken, since a client that does not
// read would otherwise hold the writer for writeTimeout.
func (c *liveConn) dropSlow() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.slow || c.nc == nil {
		return
	}
	c.slow = true
	c.kick(websocket.ClosePolicyViolation, "client too slow: message queue full")
	nc := c.nc
	time.AfterFunc(100*time.Millisecond, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.nc == nc {
			_ = nc.SetWriteDeadline(time.Now())
		}
	})
}

// sockets is one module's registry of open bridged connections.
type sockets struct {
	mu    sync.Mutex
	conns map[string]*liveConn
}

func newSockets() *sockets { return &sockets{conns: map[string]*liveConn{}} }

func (s *sockets) add(id string, c *liveConn) {
	s.mu.Lock()
	s.conns[id] = c
	s.mu.Unlock()
}

func (s *sockets) remove(id string) {
	s.mu.Lock()
	delete(s.conns, id)
	s.mu.Unlock()
}

// count is how many connections are open.
func (s *sockets) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *sockets) snapshot() []*liveConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*liveConn, 0, len(s.conns))
	for _, c := range s.conns {
		out = append(out, c)
	}
	return out
}

// publish queues m on every connection on route ("" = all) and returns how many took
// it. It never waits on one client at a time: connections with room get m at once;
// for those whose queue is full it waits up to publishWait, for all of them together,
// then disconnects each still full one as too slow (1008), so one client that does
// not read cannot hold up the others.
func (s *sockets) publish(ctx context.Context, route string, m transport.Message) int {
	n := 0
	var full []*liveConn
	for _, c := range s.snapshot() {
		if route != "" && c.route != route {
			continue
		}
		select {
		case c.out <- m:
			n++
		case <-c.done:
		default:
			full = append(full, c)
		}
	}
	if len(full) == 0 {
		return n
	}
	wctx, cancel := context.WithTimeout(ctx, publishWait)
	defer cancel()
	var wg sync.WaitGroup
	var delivered atomic.Int64
	for _, c := range full {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case c.out <- m:
				delivered.Add(1)
			case <-c.done:
			case <-wctx.Done():
				if ctx.Err() == nil {
					c.dropSlow()
				}
			}
		}()
	}
	wg.Wait()
	return n + int(delivered.Load())
}

// closeAll closes every connection, e.g. when the module is disabled or restarts.
func (s *sockets) closeAll(code int, reason string) {
	for _, c := range s.snapshot() {
		c.kick(code, reason)
	}
}

func (m *module) bridge(conn *fws.Conn, p *pendingSocket) {
	ctx, cancel, sock, open := p.ctx, p.cancel, p.sock, p.open
	defer cancel()
	lc := &liveConn{route: open.Route, out: make(chan transport.Message, outQueue), done: make(chan struct{})}
	kicked := make(chan transport.Message, 1)
	lc.kick = func(code int, reason string) {
		select {
		case kicked <- transport.Message{Kind: transport.Close, Code: code, Reason: reason}:
		default:
		}
	}
	lc.nc = conn.NetConn()
	defer func() {
		// After this the connection goes back to fasthttp: no one may touch it.
		lc.mu.Lock()
		lc.nc = nil
		lc.mu.Unlock()
	}()
	m.sock.add(open.ID, lc)
	m.metrics.wsConns.Inc()
	defer m.sock.remove(open.ID)
	defer close(lc.done)

	// Plugin → queue. Blocks when the queue is full, which stops reading the gRPC
	// stream and so back-pressures the plugin.
	fromPlugin := make(chan error, 1)
	go func() {
		for {
			msg, err := sock.Recv()
			if err != nil {
				fromPlugin <- err
				return
			}
			select {
			case lc.out <- msg:
			case <-ctx.Done():
				fromPlugin <- ctx.Err()
				return
			}
			if msg.Kind == transport.Close {
				fromPlugin <- nil
				return
			}
		}
	}()

	// Client → plugin. The only reader of conn; it ends before this handler returns.
	// It is also the only sender on sock: the ping and pong handlers run inside
	// ReadMessage, on the reader goroutine.
	conn.SetReadLimit(m.kit.cfg.MaxFrameSize)
	// What the reader answers the client (a pong for a ping, the reply to a close)
	// is written by the writer loop below, the only writer: every write to the
	// client sets its own deadline just before it, so none shortens another's — a
	// batch of frames is written straight to the connection, outside the websocket
	// library's lock, and a pong's short deadline would otherwise cut it off.
	replies := make(chan transport.Message, 4)
	reply := func(msg transport.Message) {
		for {
			select {
			case replies <- msg:
				return
			default:
			}
			// The writer is behind (a client not reading): the oldest answer goes, as
			// a pong may answer only the latest ping (RFC 6455 §5.5.3). This
			// goroutine is the only sender, so there is room after one is taken.
			select {
			case <-replies:
			default:
			}
		}
	}
	conn.SetPingHandler(func(data string) error {
		// The writer answers, and the plugin is told.
		reply(transport.Message{Kind: transport.Pong, Data: []byte(data)})
		_ = sock.Send(transport.Message{Kind: transport.Ping, Data: []byte(data)})
		return nil
	})
	conn.SetCloseHandler(func(code int, _ string) error {
		// The close frame is echoed (RFC 6455 §5.5.1) by the writer; ReadMessage
		// then returns the close error and the reader tells the plugin.
		reply(transport.Message{Kind: transport.Close, Code: code})
		return nil
	})
	conn.SetPongHandler(func(data string) error {
		_ = sock.Send(transport.Message{Kind: transport.Pong, Data: []byte(data)})
		return nil
	})
	var readerDone sync.WaitGroup
	readerDone.Add(1)
	clientGone := make(chan transport.Message, 1)
	go func() {
		defer readerDone.Done()
		for {
			kind, data, err := conn.ReadMessage()
			if err != nil {
				code, reason := websocket.CloseAbnormalClosure, ""
				var ce *websocket.CloseError
				switch {
				case errors.As(err, &ce):
					code, reason = ce.Code, ce.Text
				case errors.Is(err, websocket.ErrReadLimit):
					code, reason = websocket.CloseMessageTooBig, "message too big"
				}
				closeMsg := transport.Message{Kind: transport.Close, Code: code, Reason: reason}
				_ = sock.Send(closeMsg)
				_ = sock.CloseSend()
				clientGone <- closeMsg
				return
			}
			k := transport.Text
			if kind == websocket.BinaryMessage {
				k = transport.Binary
			}
			if err := sock.Send(transport.Message{Kind: k, Data: data}); err != nil {
				clientGone <- transport.Message{Kind: transport.Close, Code: websocket.CloseGoingAway}
				return
			}
		}
	}()
	defer func() {
		cancel()
		readerDone.Wait()
	}()

	// send writes one queued message to the client and reports whether the
	// connection is over (a close frame, or a client that cannot be written to).
	send := func(msg transport.Message) bool {
		var err error
		switch msg.Kind {
		case transport.Close:
			writeClose(conn, msg.Code, msg.Reason)
			return true
		case transport.Text, transport.Binary:
			_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			err = conn.WriteMessage(kindToWS(msg.Kind), msg.Data)
		case transport.Ping, transport.Pong:
			data := msg.Data
			if len(data) > maxControlPayload {
				data = data[:maxControlPayload]
			}
			err = conn.WriteControl(kindToWS(msg.Kind), data, time.Now().Add(writeTimeout))
		default:
			// Accept, Reject or an unknown kind after the upgrade: nothing to send.
			m.kit.log.Debug("websocket message of kind dropped", "module", m.man.ID, "kind", int(msg.Kind))
			return false
		}
		if err != nil {
			cancel()
			_ = conn.SetReadDeadline(time.Now())
			return true
		}
		return false
	}
	// echoed says the client's close was answered: no data may follow (RFC 6455
	// §5.5.1); the loop waits for the reader's clientGone.
	echoed := false
	// answer sends the host's answer to a client's control frame; true: stop.
	answer := func(r transport.Message) bool {
		if r.Kind == transport.Close {
			echoClose(conn, r.Code)
			echoed = true
			return false
		}
		return send(r)
	}
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	var batch []transport.Message
	var frames []byte
	// This loop is the only writer to the client.
	for {
		// A kick (disable, restart, too slow) goes before whatever is queued.
		select {
		case msg := <-kicked:
			writeClose(conn, msg.Code, msg.Reason)
			cancel()
			return
		default:
		}
		// Answers to the client's control frames (a pong, a close's echo) go
		// before data the plugin queued since.
		select {
		case r := <-replies:
			if answer(r) {
				return
			}
			continue
		default:
		}
		select {
		case msg := <-lc.out:
			if echoed && msg.Kind != transport.Close {
				continue // the client closed: it reads no more data
			}
			if isData(msg) && len(lc.out) > 0 {
				// More are queued: the data messages ready now go out in one write.
				var ok bool
				batch = append(batch[:0], msg)
				var rest *transport.Message
				for len(lc.out) > 0 && len(batch) < 64 {
					next := <-lc.out
					if !isData(next) {
						rest = &next
						break
					}
					batch = append(batch, next)
				}
				frames, ok = writeFrames(conn, frames, batch)
				if !ok {
					cancel()
					_ = conn.SetReadDeadline(time.Now())
					return
				}
				if rest != nil && send(*rest) {
					return
				}
				continue
			}
			if send(msg) {
				return
			}
		case err := <-fromPlugin:
			if err != nil {
				// The plugin's stream ended without a close frame: drain what it queued.
			drain:
				for {
					select {
					case msg := <-lc.out:
						if send(msg) {
							return
						}
					default:
						break drain
					}
				}
				code := websocket.CloseInternalServerErr
				if errors.Is(err, context.Canceled) {
					code = websocket.CloseGoingAway
				}
				writeClose(conn, code, "module closed the connection")
				return
			}
		case r := <-replies:
			if answer(r) {
				return
			}
		case cm := <-clientGone:
			// The client closed or vanished: the reply to its close frame, if the
			// writer has not sent it yet, goes first.
		replied:
			for {
				select {
				case r := <-replies:
					if r.Kind == transport.Close {
						echoClose(conn, r.Code)
						break replied
					}
				default:
					break replied
				}
			}
			// Give the plugin a moment to answer with its own close frame, then end.
			t := time.NewTimer(2 * time.Second)
			defer t.Stop()
			for {
				select {
				case msg := <-lc.out:
					if msg.Kind == transport.Close {
						writeClose(conn, msg.Code, msg.Reason)
						return
					}
				case <-fromPlugin:
					writeClose(conn, cm.Code, cm.Reason)
					return
				case <-t.C:
					writeClose(conn, cm.Code, cm.Reason)
					return
				}
			}
		case msg := <-kicked:
			writeClose(conn, msg.Code, msg.Reason)
			cancel()
			return
		case <-ping.C:
			if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeTimeout)); err != nil {
				_ = conn.SetReadDeadline(time.Now())
				return
			}
		}
	}
}

func isData(m transport.Message) bool {
	return (m.Kind == transport.Text || m.Kind == transport.Binary) && len(m.Data) <= 16<<10
}

// writeFrames writes data messages to the client as one write of whole frames (a
// server's frames are unmasked, RFC 6455 §5.2), with a deadline of its own. Only the
// bridge's writer loop calls it, and that loop makes every other write to the client
// too (the pongs and close replies the reader asks for included), so nothing else
// writes, or moves the write deadline, while it runs.
func writeFrames(conn *fws.Conn, buf []byte, msgs []transport.Message) ([]byte, bool) {
	buf = buf[:0]
	for _, m := range msgs {
		op := byte(websocket.TextMessage)
		if m.Kind == transport.Binary {
			op = websocket.BinaryMessage
		}
		buf = append(buf, 0x80|op)
		switch n := len(m.Data); {
		case n < 126:
			buf = append(buf, byte(n))
		default:
			buf = append(buf, 126, byte(n>>8), byte(n))
		}
		buf = append(buf, m.Data...)
	}
	nc := conn.NetConn()
	_ = nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := nc.Write(buf)
	return buf, err == nil
}

// kindToWS is the WebSocket frame type of a message kind, or -1 for kinds that are
// not frames (Accept, Reject).
func kindToWS(k transport.MessageKind) int {
	switch k {
	case transport.Text:
		return websocket.TextMessage
	case transport.Binary:
		return websocket.BinaryMessage
	case transport.Close:
		return websocket.CloseMessage
	case transport.Ping:
		return websocket.PingMessage
	case transport.Pong:
		return websocket.PongMessage
	}
	return -1
}

// echoClose answers a client's close frame with its code, as the websocket library's
// default close handler does. Later writes fail: the close was sent.
func echoClose(conn *fws.Conn, code int) {
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(time.Second))
}

// writeClose sends a close frame and makes the reader return soon: on a hijacked
// fasthttp connection Close() alone may not unblock it.
func writeClose(conn *fws.Conn, code int, reason string) {
	if code == 0 || code == websocket.CloseNoStatusReceived || code == websocket.CloseAbnormalClosure {
		code = websocket.CloseNormalClosure
	}
	if len(reason) > 120 {
		reason = reason[:120]
	}
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
}
