package transport

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/fiberkit/fiberkit/sdk/transport/pluginv1"
)

// The exchange socket carries the same ExchangeRequest / ExchangeResponse messages as
// the Exchange call, each framed by a 4-byte big-endian length, over a private Unix
// socket. It exists for latency: a gRPC message crosses three goroutines on each side
// (caller, HTTP/2 writer, reader), and on a machine with idle cores each hand-off can
// wake a sleeping thread; here the caller writes to the socket and the handler reads
// from it itself. kitbench measured the route's p50 overhead at ~0.13 ms over gRPC.
//
// The socket is reached only by whoever holds its token: the plugin makes it from
// crypto/rand and hands it over in Describe, on go-plugin's mutually authenticated
// channel; a connection's first bytes are the token, compared in constant time. One
// connection carries one exchange at a time; the host pools idle ones. The host
// abandons an exchange by closing its connection, which cancels the handler.

// exchangeTokenSize is the length of an exchange socket's token.
const exchangeTokenSize = 32

// tokenDeadline bounds how long a new connection may take to present its token.
const tokenDeadline = 5 * time.Second

// writeFrame sends m with its length prefix in one write; buf is reused between calls.
func writeFrame(w io.Writer, buf *[]byte, m proto.Message) error {
	b := append((*buf)[:0], 0, 0, 0, 0)
	b, err := proto.MarshalOptions{}.MarshalAppend(b, m)
	if err != nil {
		return err
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	*buf = b
	_, err = w.Write(b)
	return err
}

// errFrameTooLarge is a frame whose length is over the reader's limit.
var errFrameTooLarge = errors.New("exchange frame over the message size limit")

// readFrame reads one frame into m; a frame over limit bytes is refused unread.
func readFrame(r io.Reader, limit int, m proto.Message) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if int64(n) > int64(limit) {
		return fmt.Errorf("%w (%d bytes)", errFrameTooLarge, n)
	}
	// Fresh per frame: the message's byte fields alias it, and callers keep them.
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return proto.Unmarshal(b, m)
}

// exchangeSocket is the plugin's listener for framed exchanges.
type exchangeSocket struct {
	ln    net.Listener
	addr  string
	token []byte
}

// openExchangeSocket starts serving s's exchanges on a private socket.
func (s *server) openExchangeSocket() (*exchangeSocket, error) {
	token := make([]byte, exchangeTokenSize)
	if _, err := rand.Read(token); err != nil {
		return nil, err
	}
	ln, addr, err := listenPrivate()
	if err != nil {
		return nil, fmt.Errorf("exchange socket: %w", err)
	}
	es := &exchangeSocket{ln: ln, addr: addr, token: token}
	go es.accept(s)
	return es, nil
}

func (es *exchangeSocket) accept(s *server) {
	for {
		conn, err := es.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		go s.serveExchangeConn(conn, es.token)
	}
}

// serveExchangeConn serves the exchanges of one connection, one after another, each
// on this goroutine.
func (s *server) serveExchangeConn(conn net.Conn, token []byte) {
	defer conn.Close()
	got := make([]byte, len(token))
	_ = conn.SetReadDeadline(time.Now().Add(tokenDeadline))
	if _, err := io.ReadFull(conn, got); err != nil || subtle.ConstantTimeCompare(got, token) != 1 {
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	limit := maxMessageFromEnv()
	br := bufio.NewReaderSize(conn, chunkSize)
	out := &frameSender{conn: conn}
	w := &exchangeWriter{stream: out, delay: s.exchangeHeadDelay()}
	defer w.stop()
	// Like an Exchange stream's context, the connection's ends when the host
	// abandons it: it is never used again then.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch := &closeWatch{conn: conn, br: br, cancel: cancel}
	for {
		req := new(pb.ExchangeRequest)
		if err := readFrame(br, limit, req); err != nil {
			return
		}
		// The host sends nothing more until the response ended: bytes already
		// waiting break the protocol.
		if br.Buffered() > 0 {
			return
		}
		watch.arm()
		err := s.serveExchange(ctx, req, w)
		if !watch.stop() || err != nil {
			return
		}
	}
}

// frameSender sends framed responses on an exchange socket connection; calls are
// serialized by the exchangeWriter's mutex.
type frameSender struct {
	conn net.Conn
	buf  []byte
}

func (f *frameSender) Send(m *pb.ExchangeResponse) error { return writeFrame(f.conn, &f.buf, m) }

// watchDelay is how long an exchange runs before its connection is watched for the
// host closing it: most handlers finish sooner, and starting a watcher costs each
// one a thread wake-up on the critical path. An abandoned handler's context is
// cancelled at most this much later.
const watchDelay = time.Millisecond

// closeWatch watches a connection, while an exchange is served on it, for the host
// closing it (the exchange was abandoned). One serves a connection's exchanges.
type closeWatch struct {
	conn   net.Conn
	br     *bufio.Reader
	cancel context.CancelFunc
	timer  *time.Timer

	mu      sync.Mutex
	stopped bool          // the exchange is over: a late timer does nothing
	done    chan struct{} // set when the watch started; closed when it returned
	broken  atomic.Bool
}

// arm starts watching once the exchange has run for watchDelay.
func (w *closeWatch) arm() {
	w.mu.Lock()
	w.stopped, w.done = false, nil
	w.mu.Unlock()
	if w.timer == nil {
		w.timer = time.AfterFunc(watchDelay, w.watch)
	} else {
		w.timer.Reset(watchDelay)
	}
}

// watch peeks at the connection until the host closes it or the watch is stopped.
// It only peeks: the host may send its next request as soon as the response's end
// went out, before the watch is stopped.
func (w *closeWatch) watch() {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	done := make(chan struct{})
	w.done = done
	w.mu.Unlock()
	defer close(done)
	_, err := w.br.Peek(1)
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		return // the next request, or stopped
	}
	w.broken.Store(true)
	w.cancel()
}

// stop ends the watch and reports whether the connection can carry another exchange.
func (w *closeWatch) stop() bool {
	w.mu.Lock()
	w.stopped = true
	done := w.done
	w.mu.Unlock()
	w.timer.Stop()
	if done != nil {
		_ = w.conn.SetReadDeadline(time.Unix(1, 0))
		<-done
		_ = w.conn.SetReadDeadline(time.Time{})
	}
	return !w.broken.Load()
}

// socketConn is the host's end of an exchange socket connection.
type socketConn struct {
	conn   net.Conn
	br     *bufio.Reader
	buf    []byte
	limit  int
	closed atomic.Bool
}

// dialExchangeSocket connects to a plugin's exchange socket and presents the token.
func dialExchangeSocket(addr string, token []byte, limit int) (*socketConn, error) {
	conn, err := net.DialTimeout("unix", addr, tokenDeadline)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(token); err != nil {
		conn.Close()
		return nil, err
	}
	return &socketConn{conn: conn, br: bufio.NewReaderSize(conn, chunkSize), limit: limit}, nil
}

func (c *socketConn) Send(m *pb.ExchangeRequest) error { return writeFrame(c.conn, &c.buf, m) }

func (c *socketConn) Recv() (*pb.ExchangeResponse, error) {
	m := new(pb.ExchangeResponse)
	if err := readFrame(c.br, c.limit, m); err != nil {
		if c.closed.Load() {
			return nil, context.Canceled
		}
		if errors.Is(err, io.EOF) {
			return nil, err
		}
		return nil, Errorf(CodeModuleDown, "exchange socket: %v", err)
	}
	return m, nil
}

func (c *socketConn) Close() {
	c.closed.Store(true)
	c.conn.Close()
}

// socketDialer dials a plugin's exchange socket, once Describe told where it is.
type socketDialer struct {
	mu    sync.Mutex
	addr  string
	token []byte
}

func (d *socketDialer) set(addr string, token []byte) {
	d.mu.Lock()
	d.addr, d.token = addr, token
	d.mu.Unlock()
}

func (d *socketDialer) get() (string, []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addr, d.token
}
