package transport

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	pb "github.com/fiberkit/fiberkit/sdk/transport/pluginv1"
)

// The Exchange call carries HTTP exchanges whose request body the host holds whole
// on long-lived streams that the host pools: opening a gRPC stream per request (a
// HEADERS frame each way, trailers, a goroutine on the plugin's side) cost more than
// the request itself. Requests with a streamed body keep using ServeHTTP.

// Exchange is the plugin's side of an Exchange stream: exchanges one after another,
// each served by impl on this goroutine.
func (s *server) Exchange(stream pb.Plugin_ExchangeServer) error {
	// One writer per stream, reset for each exchange: its head timer is reused.
	w := &exchangeWriter{stream: stream, delay: s.exchangeHeadDelay()}
	defer w.stop()
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := s.serveExchange(stream.Context(), req, w); err != nil {
			return err
		}
		if err := stream.Context().Err(); err != nil {
			return err
		}
	}
}

// serveExchange serves one exchange, whichever way it came, with w reset for it. Only
// a broken connection is returned: the handler's own failure goes to the host in the
// response.
func (s *server) serveExchange(ctx context.Context, req *pb.ExchangeRequest, w *exchangeWriter) error {
	h := req.GetHead()
	if h == nil {
		return toStatus(Errorf(CodeInvalidInput, "exchange request without a head"))
	}
	w.start()
	err := s.impl.ServeHTTP(ctx, requestHeadFromPB(h), bytes.NewReader(req.GetBody()), w)
	return w.finish(err)
}

func (s *server) exchangeHeadDelay() time.Duration { return cmp.Or(s.headDelay, defaultHeadDelay) }

func requestHeadFromPB(h *pb.HTTPRequestHead) RequestHead {
	return RequestHead{
		Method: h.GetMethod(), Path: h.GetPath(), RawQuery: h.GetRawQuery(),
		Header: headerFromPB(h.GetHeaders()), RemoteAddr: h.GetRemoteAddr(), Host: h.GetHost(), TLS: h.GetTls(),
		Caller: callerFromPB(h.GetCaller()), Route: h.GetRoute(), Params: h.GetParams(),
	}
}

func requestHeadToPB(head RequestHead) *pb.HTTPRequestHead {
	return &pb.HTTPRequestHead{
		Method: head.Method, Path: head.Path, RawQuery: head.RawQuery, Headers: headerToPB(head.Header),
		RemoteAddr: head.RemoteAddr, Host: head.Host, Tls: head.TLS, Caller: callerToPB(head.Caller),
		Route: head.Route, Params: head.Params,
	}
}

// defaultHeadDelay is how long a response head the handler wrote may wait for the
// rest of the response before it is sent without it (with what body is buffered). A
// handler that writes its head and then waits (a long-poll that answers 200 at once,
// then blocks) is seen to have answered: the host stops its head timeout and the
// client gets the status. A handler that finishes within it still sends its whole
// response in one message.
const defaultHeadDelay = 5 * time.Millisecond

// responseSender is where an exchangeWriter sends: an Exchange stream or an exchange
// socket connection.
type responseSender interface {
	Send(*pb.ExchangeResponse) error
}

// exchangeWriter buffers the response as net/http does: the head and body go out
// together when the handler flushes, fills a chunk or returns, so a small response is
// one message; a head left waiting for delay goes out without waiting for more.
// One exchangeWriter serves the exchanges of one stream, one after another.
type exchangeWriter struct {
	stream responseSender
	delay  time.Duration

	// mu guards the fields below and sending on the stream: the head timer sends
	// from its own goroutine.
	mu       sync.Mutex
	head     *pb.HTTPResponseHead // set by WriteHead until it is sent
	headSent bool
	headDue  time.Time // when a pending head is sent by the timer
	buf      []byte
	err      error       // a send failed: the stream is broken
	timer    *time.Timer // runs sendLateHead; reused across exchanges
}

// start readies the writer for the next exchange on its stream.
func (w *exchangeWriter) start() {
	w.mu.Lock()
	w.head, w.headSent, w.headDue, w.buf = nil, false, time.Time{}, w.buf[:0]
	w.mu.Unlock()
}

// stop stops the head timer when the stream ends.
func (w *exchangeWriter) stop() {
	w.mu.Lock()
	if w.timer != nil {
		w.timer.Stop()
	}
	w.head = nil
	w.mu.Unlock()
}

func (w *exchangeWriter) WriteHead(status int, header http.Header) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writeHead(status, header)
	return nil
}

// writeHead sets the pending head, unless one was written, and arms the timer that
// sends it if the handler goes quiet. w.mu is held.
func (w *exchangeWriter) writeHead(status int, header http.Header) {
	if w.head != nil || w.headSent {
		return
	}
	w.head = &pb.HTTPResponseHead{Status: int32(status), Headers: headerToPB(header)}
	// A timer callback of an earlier exchange may still run: it sends nothing
	// before headDue.
	w.headDue = time.Now().Add(w.delay)
	if w.timer == nil {
		w.timer = time.AfterFunc(w.delay, w.sendLateHead)
	} else {
		w.timer.Reset(w.delay)
	}
}

// sendLateHead sends a head that waited w.delay, with the body buffered so far.
func (w *exchangeWriter) sendLateHead() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.head == nil || w.err != nil || time.Now().Before(w.headDue) {
		return
	}
	_ = w.send(&pb.ExchangeResponse{})
}

func (w *exchangeWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.head == nil && !w.headSent {
		w.writeHead(200, nil)
	}
	if w.err != nil {
		return 0, w.err
	}
	n := len(p)
	for len(p) > 0 {
		take := min(chunkSize-len(w.buf), len(p))
		w.buf = append(w.buf, p[:take]...)
		p = p[take:]
		if len(w.buf) == chunkSize {
			if err := w.send(&pb.ExchangeResponse{}); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *exchangeWriter) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.head == nil && !w.headSent {
		w.writeHead(200, nil)
	}
	if w.err != nil {
		return w.err
	}
	return w.send(&pb.ExchangeResponse{Flush: true})
}

// send sends m with the pending head and body. w.mu is held.
func (w *exchangeWriter) send(m *pb.ExchangeResponse) error {
	if w.head != nil {
		m.Head, w.head, w.headSent = w.head, nil, true
	}
	m.Body = w.buf
	// Send encodes the message before returning, so the buffer can be reused.
	err := w.stream.Send(m)
	w.buf = w.buf[:0]
	if err != nil && w.err == nil {
		w.err = err
	}
	return err
}

// finish ends the exchange: what is pending, then end, with the handler's error if
// it failed. Only a failure to send is returned: the stream is then unusable.
func (w *exchangeWriter) finish(herr error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil && w.head != nil {
		w.timer.Stop()
	}
	if w.err != nil {
		return w.err
	}
	m := &pb.ExchangeResponse{End: true}
	if herr != nil {
		// A failed response is cut short: what was not sent yet is dropped, and the
		// host answers in the module's place if no head went out.
		m.Error = exchangeErrorToPB(herr)
		w.head, w.buf = nil, w.buf[:0]
	} else if w.head == nil && !w.headSent {
		w.head = &pb.HTTPResponseHead{Status: 200}
	}
	return w.send(m)
}

// codeUnimplemented is the ExchangeError code of ErrUnimplemented.
const codeUnimplemented = "unimplemented"

func exchangeErrorToPB(err error) *pb.ExchangeError {
	if errors.Is(err, ErrUnimplemented) {
		return &pb.ExchangeError{Code: codeUnimplemented, Message: err.Error()}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &pb.ExchangeError{Code: CodeInternal, Message: err.Error()}
	}
	var op *OpError
	if !errors.As(err, &op) {
		op = &OpError{Code: CodeInternal, Message: err.Error()}
	}
	return &pb.ExchangeError{Code: op.Code, Message: op.Message}
}

func exchangeErrorFromPB(e *pb.ExchangeError) error {
	if e.GetCode() == codeUnimplemented {
		return ErrUnimplemented
	}
	return &OpError{Code: e.GetCode(), Message: e.GetMessage()}
}

// ResponsePart is a piece of a module's response to an Exchange.
type ResponsePart struct {
	// HasHead says Status and Header are set: the first part of a response has them.
	HasHead bool
	Status  int
	Header  http.Header
	// Body is the next piece of the body; the caller may keep it.
	Body []byte
	// Flush asks for everything so far to be pushed to the client.
	Flush bool
	// End says the response is complete; Next returns no more parts.
	End bool
}

// maxIdleStreams is how many idle Exchange streams a Client keeps; more are opened
// when more exchanges run at once, and closed when they finish beyond this.
const maxIdleStreams = 64

// idleStreamTTL is how long an idle Exchange stream is kept before it is closed.
const idleStreamTTL = time.Minute

// exchangeConn carries one exchange at a time for the host: an Exchange stream, or a
// connection to the module's exchange socket.
type exchangeConn interface {
	Send(*pb.ExchangeRequest) error
	// Recv returns the next response message; io.EOF when the module ended the
	// stream, context.Canceled after Close.
	Recv() (*pb.ExchangeResponse, error)
	// Close abandons the connection, cancelling the exchange in the module.
	Close()
}

// grpcExchange is an Exchange stream as an exchangeConn.
type grpcExchange struct {
	stream pb.Plugin_ExchangeClient
	cancel context.CancelFunc
}

func (g *grpcExchange) Send(m *pb.ExchangeRequest) error {
	if err := g.stream.Send(m); err != nil {
		return fromStatus(recvErr(g.stream, err))
	}
	return nil
}

func (g *grpcExchange) Recv() (*pb.ExchangeResponse, error) {
	m, err := g.stream.Recv()
	if err != nil && !errors.Is(err, io.EOF) {
		err = fromStatus(err)
	}
	return m, err
}

func (g *grpcExchange) Close() { g.cancel() }

// exchangeStream is a pooled exchangeConn.
type exchangeStream struct {
	conn exchangeConn
	idle time.Time
}

// streamPool keeps idle exchange connections for reuse, newest last.
type streamPool struct {
	mu   sync.Mutex
	idle []*exchangeStream
}

func (p *streamPool) get() *exchangeStream {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	// Streams idle too long are closed; the oldest are first.
	for len(p.idle) > 0 && now.Sub(p.idle[0].idle) > idleStreamTTL {
		p.idle[0].conn.Close()
		p.idle = p.idle[1:]
	}
	if n := len(p.idle); n > 0 {
		s := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		return s
	}
	return nil
}

func (p *streamPool) put(s *exchangeStream) {
	s.idle = time.Now()
	p.mu.Lock()
	if len(p.idle) < maxIdleStreams {
		p.idle = append(p.idle, s)
		s = nil
	}
	p.mu.Unlock()
	if s != nil {
		s.conn.Close()
	}
}

// Exchange is one HTTP exchange in flight on a pooled stream. Next and Abort may be
// called from different goroutines; Next from one at a time.
type Exchange struct {
	c     *Client
	s     *exchangeStream
	mu    sync.Mutex
	ended bool // the response ended: the stream went back to the pool
	abort bool // Abort was called: the stream was cancelled
}

// CanExchange reports whether the module serves Exchange (known once Describe
// answered); without it, use ServeHTTP.
func (c *Client) CanExchange() bool { return c.exchange.Load() }

// StartExchange sends a request whose body is held whole to the module on a pooled
// connection: the module's exchange socket when it has one, an Exchange stream
// otherwise. Read the response with Next until a part says End, or Abort.
func (c *Client) StartExchange(head RequestHead, body []byte) (*Exchange, error) {
	req := &pb.ExchangeRequest{Head: requestHeadToPB(head), Body: body}
	// A pooled connection may have been broken while idle (the module restarted its
	// server, say): the send shows it, and the next one is tried. A fresh one that
	// fails is the module's failure.
	for {
		s := c.pool.get()
		fresh := s == nil
		if fresh {
			conn, err := c.openExchange()
			if err != nil {
				return nil, err
			}
			s = &exchangeStream{conn: conn}
		}
		if err := s.conn.Send(req); err != nil {
			s.conn.Close()
			if fresh {
				return nil, err
			}
			continue
		}
		return &Exchange{c: c, s: s}, nil
	}
}

// openExchange opens a connection for exchanges: to the exchange socket if the module
// offered one and it answers, else an Exchange stream.
func (c *Client) openExchange() (exchangeConn, error) {
	if addr, token := c.socket.get(); addr != "" {
		if sc, err := dialExchangeSocket(addr, token, DefaultMaxMessageSize); err == nil {
			return sc, nil
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := c.rpc.Exchange(ctx)
	if err != nil {
		cancel()
		return nil, fromStatus(err)
	}
	return &grpcExchange{stream: stream, cancel: cancel}, nil
}

// Next returns the next part of the response. After a part with End, or an error,
// the exchange is over. An error after Abort is context.Canceled.
func (x *Exchange) Next() (ResponsePart, error) {
	m, err := x.s.conn.Recv()
	if err != nil {
		x.drop()
		if errors.Is(err, io.EOF) {
			return ResponsePart{}, Errorf(CodeInternal, "module ended the exchange stream")
		}
		return ResponsePart{}, err
	}
	p := ResponsePart{Body: m.GetBody(), Flush: m.GetFlush(), End: m.GetEnd()}
	if h := m.GetHead(); h != nil {
		p.HasHead, p.Status, p.Header = true, int(h.GetStatus()), headerFromPB(h.GetHeaders())
	}
	if p.End {
		x.mu.Lock()
		reuse := !x.abort && !x.ended
		x.ended = true
		x.mu.Unlock()
		if reuse {
			x.c.pool.put(x.s)
		}
		if e := m.GetError(); e != nil {
			return p, exchangeErrorFromPB(e)
		}
	}
	return p, nil
}

// Abort abandons the exchange: the connection is closed, which cancels the handler's
// context in the module, and a Next waiting returns. It does nothing once the
// response ended.
func (x *Exchange) Abort() { x.drop() }

func (x *Exchange) drop() {
	x.mu.Lock()
	cancel := !x.ended && !x.abort
	x.abort = true
	x.mu.Unlock()
	if cancel {
		x.s.conn.Close()
	}
}
