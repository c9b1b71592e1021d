package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"

	"github.com/fiberkit/fiberkit/sdk/transport"
)

// WebSocketHandler serves one WebSocket connection. When it returns, the connection
// is closed (with code 1000 unless the handler closed it otherwise; 1011 if it
// returned an error).
type WebSocketHandler func(ctx context.Context, c *Conn) error

// MessageType is the type of a WebSocket data message.
type MessageType int

// The two data message types.
const (
	TextMessage   MessageType = MessageType(transport.Text)
	BinaryMessage MessageType = MessageType(transport.Binary)
)

// Close codes used by the kit (RFC 6455 §7.4.1).
const (
	CloseNormal        = 1000
	CloseGoingAway     = 1001
	CloseProtocolError = 1002
	CloseUnsupported   = 1003
	ClosePolicy        = 1008
	CloseTooBig        = 1009
	CloseInternal      = 1011
)

// CloseError is returned by ReadMessage when the peer closed the connection.
type CloseError struct {
	Code   int
	Reason string
}

// Error implements error.
func (e *CloseError) Error() string { return fmt.Sprintf("websocket closed: %d %s", e.Code, e.Reason) }

// Conn is one WebSocket connection as seen by a module. Writes may come from any
// number of goroutines; reads from one at a time.
type Conn struct {
	open transport.WebSocketOpen
	sock transport.Socket

	wmu      sync.Mutex // one writer at a time on the stream
	closed   bool
	answered bool // accept or reject sent
}

// Accept completes the upgrade. Reading or writing accepts implicitly; call it
// explicitly before a long wait so the client is not left hanging at the upgrade.
func (c *Conn) Accept() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.acceptLocked()
}

func (c *Conn) acceptLocked() error {
	if c.answered {
		return nil
	}
	c.answered = true
	return c.sock.Send(transport.Message{Kind: transport.Accept})
}

// ErrAlreadyAccepted is returned by Reject after the connection was accepted.
var ErrAlreadyAccepted = errors.New("websocket already accepted")

// Reject refuses the connection before the upgrade: the client receives a plain HTTP
// response with status (e.g. 403) and reason as its body. The handler should return
// after it.
func (c *Conn) Reject(status int, reason string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.answered {
		return ErrAlreadyAccepted
	}
	c.answered, c.closed = true, true
	return c.sock.Send(transport.Message{Kind: transport.Reject, Code: status, Reason: reason})
}

// ID identifies the connection within the host.
func (c *Conn) ID() string { return c.open.ID }

// Path is the request path, relative to the module's mount prefix.
func (c *Conn) Path() string { return c.open.Path }

// Param returns a route parameter.
func (c *Conn) Param(name string) string { return c.open.Params[name] }

// Query returns the parsed query string.
func (c *Conn) Query() url.Values {
	q, _ := url.ParseQuery(c.open.RawQuery)
	return q
}

// Header returns the upgrade request's headers.
func (c *Conn) Header() http.Header { return c.open.Header }

// Caller says who opened the connection.
func (c *Conn) Caller() Caller { return Caller(c.open.Caller) }

// ReadMessage waits for the next data message. It returns a *CloseError when the
// peer closed, and io.EOF when the host went away.
func (c *Conn) ReadMessage() (MessageType, []byte, error) {
	if err := c.Accept(); err != nil {
		return 0, nil, err
	}
	for {
		m, err := c.sock.Recv()
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return 0, nil, io.EOF
			}
			return 0, nil, err
		}
		switch m.Kind {
		case transport.Text, transport.Binary:
			return MessageType(m.Kind), m.Data, nil
		case transport.Close:
			return 0, nil, &CloseError{Code: m.Code, Reason: m.Reason}
		}
	}
}

// WriteMessage sends one data message. Safe for concurrent use.
func (c *Conn) WriteMessage(t MessageType, data []byte) error {
	return c.send(transport.Message{Kind: transport.MessageKind(t), Data: data})
}

// WriteText sends a text message. Safe for concurrent use.
func (c *Conn) WriteText(s string) error { return c.WriteMessage(TextMessage, []byte(s)) }

// Close sends a close frame with code and reason. Later writes fail.
func (c *Conn) Close(code int, reason string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return nil
	}
	if err := c.acceptLocked(); err != nil {
		return err
	}
	c.closed = true
	return c.sock.Send(transport.Message{Kind: transport.Close, Code: code, Reason: reason})
}

func (c *Conn) send(m transport.Message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return &CloseError{Code: CloseNormal, Reason: "connection closed"}
	}
	if err := c.acceptLocked(); err != nil {
		return err
	}
	return c.sock.Send(m)
}

func (a *adapter) ServeWebSocket(ctx context.Context, open transport.WebSocketOpen, s transport.Socket) (err error) {
	h, ok := a.m.WebSockets[open.Route]
	if !ok {
		h, ok = a.m.WebSockets[open.Path]
	}
	if !ok {
		return transport.ErrUnimplemented
	}
	c := &Conn{open: open, sock: s}
	defer func() {
		if r := recover(); r != nil {
			a.logPanic("websocket "+open.Path, r)
			_ = c.Close(CloseInternal, "internal error")
			err = nil
		}
	}()
	herr := h(withCaller(ctx, Caller(open.Caller)), c)
	if herr != nil {
		a.log.Warn("websocket handler failed", "path", open.Path, "err", herr)
		_ = c.Close(CloseInternal, "internal error")
		return nil
	}
	_ = c.Close(CloseNormal, "")
	return nil
}
