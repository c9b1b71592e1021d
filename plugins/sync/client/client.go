// Package client is the receiving side of Sync, for scripts, migrations and other
// plugins: connect to a sending site with its one-time code, look at its tables, and
// transfer one table or all of them into a local PostgreSQL database with a conflict
// strategy. Bulk transfers use the fast path (binary batches in COPY text format,
// zstd, CRC-32C, credit-based flow control); the PhoenixKit-compatible records API
// is there too.
//
//	c, err := client.Connect(ctx, "https://prod.example.com", "ABCD2345", client.Options{})
//	defer c.Close()
//	results, err := c.TransferAll(ctx, pool, client.TransferAllOptions{Strategy: syncapi.Skip})
//
// A transfer runs sender → wire → client → importer: the client asks for a table's
// definition (catalog's Schema, carried in wire's payloads), creates it locally when
// asked (ddl), then streams batches and hands each to the importer.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf16"

	"github.com/fasthttp/websocket"

	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// RemoteError is an error the sending site reported, with its wire code
// (wire.ErrInvalidCode, wire.ErrWrongPassword, …).
type RemoteError struct {
	Code    string
	Message string
}

// Error implements error.
func (e *RemoteError) Error() string {
	if e.Message == "" {
		return "sender: " + e.Code
	}
	return "sender: " + e.Code + ": " + e.Message
}

// Is matches RemoteErrors by code: errors.Is(err, &RemoteError{Code: wire.ErrInvalidCode}).
func (e *RemoteError) Is(target error) bool {
	t, ok := target.(*RemoteError)
	return ok && t.Code == e.Code
}

// HTTPError is a sender's answer to the WebSocket upgrade other than a refusal
// (403, 429: those are RemoteErrors): 404 when Sync is off there or the URL is
// wrong, a proxy's 502, and so on.
type HTTPError struct {
	URL    string
	Status int
	Reason string // the start of the response body
}

// Error implements error.
func (e *HTTPError) Error() string {
	return fmt.Sprintf("connect to %s: HTTP %d %s", e.URL, e.Status, e.Reason)
}

// Errors for the common refusals (compare with errors.Is).
var (
	ErrInvalidCode      = &RemoteError{Code: wire.ErrInvalidCode}
	ErrAlreadyUsed      = &RemoteError{Code: wire.ErrAlreadyUsed}
	ErrRateLimited      = &RemoteError{Code: wire.ErrRateLimited}
	ErrPasswordRequired = &RemoteError{Code: wire.ErrPasswordRequired}
	ErrWrongPassword    = &RemoteError{Code: wire.ErrWrongPassword}
	ErrDenied           = &RemoteError{Code: wire.ErrDenied}
	ErrApprovalTimeout  = &RemoteError{Code: wire.ErrApprovalTimeout}
	ErrUnknownTable     = &RemoteError{Code: wire.ErrUnknownTable}
	// ErrClosed: the connection ended (the sender went away, or Close was called).
	ErrClosed = errors.New("sync connection closed")
	// ErrPeerSilent: nothing came from the sender for Options.IdleTimeout (the
	// network or the sender hung without closing the connection). The connection is
	// closed; errors carrying it match ErrClosed too.
	ErrPeerSilent = errors.New("nothing heard from the sender within the idle timeout")
	// ErrProtocol: the sender broke the protocol (sent more batches than its credit,
	// ended a stream twice); the stream is ended with it.
	ErrProtocol = errors.New("sync protocol violation by the sender")
)

// Default heartbeat interval; the default idle timeout is 2.5 times the interval.
const defaultHeartbeat = 30 * time.Second

// Options configure Connect.
type Options struct {
	// Token of a permanent connection (fkc_…), used instead of a code.
	Token string
	// Password for senders in require_password mode.
	Password string
	// Timeout bounds connecting and joining, including waiting for an approval.
	// Default 30s (PhoenixKit's default); raise it when the sender requires approval.
	Timeout time.Duration
	// ReceiverInfo tells the sender (and its admin) who is asking.
	ReceiverInfo map[string]any
	// OnAwaitingApproval is called when the sender holds the connection for approval.
	OnAwaitingApproval func()
	// CheckAddr, when set, vets every address the client is about to dial (after DNS
	// resolution, so a name cannot be re-pointed between a check and the dial).
	CheckAddr func(ip netip.Addr) error
	// HeartbeatInterval is how often the client sends a heartbeat, which the sender
	// answers. Default 30s, or IdleTimeout/2.5 when only that is set.
	HeartbeatInterval time.Duration
	// IdleTimeout: when no byte arrives from the sender for this long (heartbeat
	// replies included), the connection is taken as dead and closed, and every call
	// and transfer on it fails with ErrPeerSilent (which matches ErrClosed). Default
	// 2.5 × HeartbeatInterval (75s); negative turns the check off.
	IdleTimeout time.Duration
}

// withDefaults fills in the heartbeat interval and idle timeout.
func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = defaultHeartbeat
		if o.IdleTimeout > 0 {
			o.HeartbeatInterval = min(defaultHeartbeat, o.IdleTimeout*2/5)
		}
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = o.HeartbeatInterval * 5 / 2
	}
	return o
}

// Client is a connection to a sending site. Its methods are safe for concurrent use.
type Client struct {
	conn  *websocket.Conn
	topic string

	wmu     sync.Mutex // one writer
	nextRef atomic.Uint64
	nextSID atomic.Uint32

	mu      sync.Mutex
	pending map[string]chan wire.Frame
	streams map[uint32]chan streamMsg
	closed  bool
	err     error
	done    chan struct{}

	pushes chan wire.Frame
	follow *followRoute // the running Follow's frames, if one runs

	heartbeatEvery time.Duration
	idle           time.Duration // 0: no idle check

	capsMu sync.Mutex
	caps   *Capabilities // the sender's answer, once it gave one
}

type streamMsg struct {
	batch []byte // a binary frame
	end   *wire.End
	err   error
}

// endpoint turns what a user typed into the sender's WebSocket URL: a full
// …/websocket URL is used as is; a bare site URL gets the kit's default mount
// (/fiberkit/sync/websocket); another path is taken as the kit's prefix.
func endpoint(raw, code string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("sender URL %q: want http(s)://host[/prefix]", raw)
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("sender URL %q: scheme must be http, https, ws or wss", raw)
	}
	p := strings.TrimRight(u.Path, "/")
	switch {
	case strings.HasSuffix(p, "/websocket"):
	case p == "":
		p = "/fiberkit/sync/websocket"
	case strings.HasSuffix(p, "/sync"):
		p += "/websocket"
	default:
		p += "/sync/websocket"
	}
	u.Path = p
	q := u.Query()
	if code != "" {
		q.Set("code", code)
	}
	q.Set("vsn", wire.Version)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Connect dials the sender, presents the code (and password), joins the transfer
// topic and, when the sender requires approval, waits for it (within Timeout).
//
// The code is sent upper-cased and without surrounding spaces, as codes are shown.
func Connect(ctx context.Context, senderURL, code string, o Options) (*Client, error) {
	o = o.withDefaults()
	code = strings.ToUpper(strings.TrimSpace(code))
	u, err := endpoint(senderURL, code)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	h := http.Header{}
	if o.Password != "" {
		h.Set("X-Sync-Password", o.Password)
	}
	topic := "transfer:" + code
	if o.Token != "" {
		h.Set("Authorization", "Bearer "+o.Token)
		topic = "transfer:token"
	}
	if info := receiverInfoHeader(o.ReceiverInfo); info != "" {
		// Lets the sender record who tried, even when it refuses the attempt.
		h.Set("X-Sync-Receiver-Info", info)
	}
	d := websocket.Dialer{HandshakeTimeout: o.Timeout, ReadBufferSize: 64 << 10, WriteBufferSize: 16 << 10}
	nd := &net.Dialer{Timeout: o.Timeout}
	if o.CheckAddr != nil {
		nd.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return err
			}
			return o.CheckAddr(ap.Addr().Unmap())
		}
	}
	idle := max(o.IdleTimeout, 0)
	d.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := nd.DialContext(ctx, network, addr)
		if err != nil || idle == 0 {
			return nc, err
		}
		return &idleConn{Conn: nc, idle: idle}, nil
	}
	conn, resp, err := d.DialContext(ctx, u, h)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			reason := strings.TrimSpace(string(body))
			if resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusTooManyRequests {
				return nil, &RemoteError{Code: reason}
			}
			return nil, &HTTPError{URL: senderURL, Status: resp.StatusCode, Reason: reason}
		}
		return nil, fmt.Errorf("connect to %s: %w", senderURL, err)
	}
	conn.SetReadLimit(wire.MaxBatchBytes + 1<<20)
	c := &Client{conn: conn, topic: topic, pending: map[string]chan wire.Frame{}, streams: map[uint32]chan streamMsg{},
		done: make(chan struct{}), pushes: make(chan wire.Frame, 16), heartbeatEvery: o.HeartbeatInterval, idle: idle}
	go c.readLoop()
	go c.heartbeat()
	if err := c.join(ctx, o); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Client) join(ctx context.Context, o Options) error {
	reply, err := c.request(ctx, c.topic, wire.EventJoin, wire.Join{ReceiverInfo: o.ReceiverInfo})
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	var r wire.Reply
	if err := json.Unmarshal(reply.Payload, &r); err != nil || r.Status != "ok" {
		return fmt.Errorf("join refused: %s", reply.Payload)
	}
	if waiting, _ := r.Response["awaiting_approval"].(bool); !waiting {
		return nil
	}
	if o.OnAwaitingApproval != nil {
		o.OnAwaitingApproval()
	}
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for approval: %w", ErrApprovalTimeout)
		case <-c.done:
			return c.closeErr()
		case f := <-c.pushes:
			switch f.Event {
			case wire.EventApproved:
				return nil
			case wire.EventDenied:
				var p wire.Denied
				_ = json.Unmarshal(f.Payload, &p)
				if p.Error == "" {
					p.Error = wire.ErrDenied
				}
				return &RemoteError{Code: p.Error}
			}
		}
	}
}

func (c *Client) closeErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return ErrClosed
}

// Connected reports whether the connection is up.
func (c *Client) Connected() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// Close leaves the topic and closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.wmu.Lock()
	_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(time.Second))
	c.wmu.Unlock()
	select {
	case <-c.done:
	case <-time.After(2 * time.Second):
	}
	if err := c.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err // the reader had not closed it already
	}
	return nil
}

// idleConn is the connection under the WebSocket: every read waits at most idle for
// a byte, so a sender (or network) that goes silent without closing is noticed.
// Deadlines set on it (the handshake's) still apply when they are earlier.
type idleConn struct {
	net.Conn
	idle time.Duration

	mu    sync.Mutex
	fixed time.Time // a read deadline set from outside; zero: none
}

func (c *idleConn) Read(p []byte) (int, error) {
	d := time.Now().Add(c.idle)
	c.mu.Lock()
	if !c.fixed.IsZero() && c.fixed.Before(d) {
		d = c.fixed
	}
	c.mu.Unlock()
	_ = c.Conn.SetReadDeadline(d)
	return c.Conn.Read(p)
}

func (c *idleConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.fixed = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

func (c *idleConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.fixed = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

// receiverInfoHeader is the receiver's info as one header line: JSON with every
// non-ASCII character escaped, at most 2 KiB (else left out).
func receiverInfoHeader(info map[string]any) string {
	if len(info) == 0 {
		return ""
	}
	b, err := json.Marshal(info)
	if err != nil {
		return ""
	}
	var sb strings.Builder
	for _, r := range string(b) {
		switch {
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&sb, `\u%04x`, r)
		case r < 0x80:
			sb.WriteRune(r)
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			fmt.Fprintf(&sb, `\u%04x\u%04x`, r1, r2)
		default:
			fmt.Fprintf(&sb, `\u%04x`, r)
		}
	}
	if sb.Len() > 2048 {
		return ""
	}
	return sb.String()
}

// heartbeat keeps the connection busy both ways: the sender answers each heartbeat,
// so a live sender is never silent for longer than the interval.
func (c *Client) heartbeat() {
	t := time.NewTicker(c.heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			// The reply needs no waiting for: any byte from the sender counts as life
			// (idleConn), and a reply nobody waits for is dropped by route.
			ref := strconv.FormatUint(c.nextRef.Add(1), 10)
			_ = c.write(wire.New(nil, &ref, wire.TopicPhoenix, wire.EventHeartbeat, struct{}{}))
		}
	}
}

func (c *Client) write(f wire.Frame) error {
	c.wmu.Lock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	err := c.conn.WriteMessage(websocket.TextMessage, f.Encode())
	c.wmu.Unlock()
	if err != nil {
		// A write fails because the connection is ending: report why it ended.
		select {
		case <-c.done:
			return c.closeErr()
		case <-time.After(time.Second):
			return fmt.Errorf("%w: %v", ErrClosed, err)
		}
	}
	return nil
}

// readLoop is the only reader: it routes replies to their requests, batches to
// their streams and pushes to the push channel.
func (c *Client) readLoop() {
	var err error
	defer func() {
		c.mu.Lock()
		if c.err == nil {
			c.err = fmt.Errorf("%w: %v", ErrClosed, err)
			var ce *websocket.CloseError
			var ne net.Error
			switch {
			case errors.As(err, &ce) && ce.Code >= 4000:
				c.err = &RemoteError{Code: ce.Text}
			case c.idle > 0 && !c.closed && (errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()):
				c.err = fmt.Errorf("%w: %w (%s)", ErrClosed, ErrPeerSilent, c.idle)
			}
		}
		// Done before the streams hear of it: a transfer that returns on this error
		// must find the client already not Connected.
		close(c.done)
		for _, s := range c.streams {
			select {
			case s <- streamMsg{err: c.err}:
			default:
			}
		}
		c.mu.Unlock()
		// Nothing more can be read: free the socket now (a writer blocked on a silent
		// peer returns at once) rather than at Close.
		_ = c.conn.NetConn().Close()
	}()
	hint := 64 << 10 // the size of the last binary message: batches come alike
	for {
		var t int
		var data []byte
		t, data, err = c.readMessage(hint)
		if err != nil {
			return
		}
		if t == websocket.BinaryMessage {
			hint = max(64<<10, len(data)+len(data)/8)
		}
		if t == websocket.BinaryMessage {
			c.routeBatch(data)
			continue
		}
		f, derr := wire.Decode(data)
		if derr != nil {
			continue // a sender bug; nothing to route it to
		}
		c.route(f)
	}
}

// readMessage reads the next message into a buffer of hint bytes to start with,
// so that a batch of megabytes is not copied over and over as it grows.
func (c *Client) readMessage(hint int) (int, []byte, error) {
	t, r, err := c.conn.NextReader()
	if err != nil {
		return t, nil, err
	}
	buf := bytes.NewBuffer(make([]byte, 0, hint))
	_, err = buf.ReadFrom(r)
	return t, buf.Bytes(), err
}

func (c *Client) routeBatch(data []byte) {
	if sid, ok := wire.BatchStream(data); ok {
		c.deliver(sid, streamMsg{batch: data}, false)
	}
}

// deliver hands a message to its stream without ever blocking the reader. A stream's
// channel has room for every batch its credit allows plus its end, so a full channel
// means the sender ignored the credit: the stream is ended with ErrProtocol (what
// it had not applied yet is dropped; its last key still says where to resume) and
// the sender is told to stop it. last says msg ends the stream (stream:end or
// stream:error): nothing more is routed to it after that.
func (c *Client) deliver(sid uint32, msg streamMsg, last bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := c.streams[sid]
	if ch == nil {
		return
	}
	select {
	case ch <- msg:
		if last {
			delete(c.streams, sid)
		}
		return
	default:
	}
	// The reader is the only one sending on ch: once drained, the error fits.
	for drained := false; !drained; {
		select {
		case <-ch:
		default:
			drained = true
		}
	}
	select {
	case ch <- streamMsg{err: fmt.Errorf("%w: stream %d: more messages than the credit allows", ErrProtocol, sid)}:
	default: // an unbuffered channel nobody is reading: the stream just stops
	}
	delete(c.streams, sid)
	go func() { _ = c.write(wire.New(nil, nil, c.topic, wire.StreamCancel, wire.StreamRef{Stream: sid})) }()
}

func (c *Client) route(f wire.Frame) {
	switch f.Event {
	case wire.FollowTxn, wire.FollowKeepalive, wire.FollowEnd:
		c.routeFollow(f)
		return
	case wire.StreamEnd, wire.StreamError:
		var sid wire.StreamRef
		_ = json.Unmarshal(f.Payload, &sid)
		if f.Event == wire.StreamEnd {
			var end wire.End
			_ = json.Unmarshal(f.Payload, &end)
			c.deliver(sid.Stream, streamMsg{end: &end}, true)
		} else {
			var se wire.StreamErr
			_ = json.Unmarshal(f.Payload, &se)
			c.deliver(sid.Stream, streamMsg{err: &RemoteError{Code: se.Error, Message: se.Message}}, true)
		}
		return
	}
	ref := f.Ref
	if ref == nil && strings.HasPrefix(f.Event, "response:") {
		// A PhoenixKit sender answers with a push carrying the request's ref in
		// its payload.
		ref = payloadRef(f.Payload)
	}
	if ref != nil {
		c.mu.Lock()
		ch, ok := c.pending[*ref]
		delete(c.pending, *ref)
		c.mu.Unlock()
		if ok {
			ch <- f
			return
		}
	}
	select {
	case c.pushes <- f:
	default: // nobody is waiting for pushes now
	}
}

// withRef returns payload as a JSON object carrying "ref": PhoenixKit's sender
// reads a request's ref from its payload (and ignores a request without one).
func withRef(payload any, ref string) (json.RawMessage, error) {
	b, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encode payload: %w", err)
	}
	r, _ := json.Marshal(ref)
	switch {
	case bytes.Equal(b, []byte("{}")):
		return append(append([]byte(`{"ref":`), r...), '}'), nil
	case len(b) > 1 && b[0] == '{':
		return append(append(append([]byte(`{"ref":`), r...), ','), b[1:]...), nil
	}
	return b, nil
}

// payloadRef returns the "ref" string of a payload object, or nil.
func payloadRef(payload json.RawMessage) *string {
	var p struct {
		Ref *string `json:"ref"`
	}
	if json.Unmarshal(payload, &p) != nil {
		return nil
	}
	return p.Ref
}

// request sends a frame and waits for the frame answering it (same ref, in the
// frame or, from a PhoenixKit sender, in the payload).
func (c *Client) request(ctx context.Context, topic, event string, payload any) (wire.Frame, error) {
	ref := strconv.FormatUint(c.nextRef.Add(1), 10)
	ch := make(chan wire.Frame, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return wire.Frame{}, c.err
	}
	c.pending[ref] = ch
	c.mu.Unlock()
	joinRef := "1"
	body, err := withRef(payload, ref)
	if err != nil {
		c.mu.Lock()
		delete(c.pending, ref)
		c.mu.Unlock()
		return wire.Frame{}, fmt.Errorf("%s: %w", event, err)
	}
	if err := c.write(wire.New(&joinRef, &ref, topic, event, body)); err != nil {
		c.mu.Lock()
		delete(c.pending, ref)
		c.mu.Unlock()
		return wire.Frame{}, fmt.Errorf("%s: %w", event, err)
	}
	select {
	case f := <-ch:
		return reply(f)
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, ref)
		c.mu.Unlock()
		return wire.Frame{}, fmt.Errorf("%s: %w", event, ctx.Err())
	case <-c.done:
		// A reply that came just before the close is still the answer (select
		// picks among ready cases at random).
		select {
		case f := <-ch:
			return reply(f)
		default:
			return wire.Frame{}, c.closeErr()
		}
	}
}

// reply is the outcome of a request answered by f.
func reply(f wire.Frame) (wire.Frame, error) {
	if f.Event == wire.ResponseError {
		var e wire.ErrorPayload
		_ = json.Unmarshal(f.Payload, &e)
		return f, &RemoteError{Code: e.Error, Message: e.Message}
	}
	return f, nil
}

func (c *Client) call(ctx context.Context, event string, payload, out any) error {
	f, err := c.request(ctx, c.topic, event, payload)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(f.Payload, out); err != nil {
		return fmt.Errorf("%s: decode reply: %w", event, err)
	}
	return nil
}

// Capabilities says what the sender supports: ours (Stream true, with the fast
// path's limits) or a PhoenixKit sender's (the records API alone).
type Capabilities struct {
	wire.Capabilities
	// PhoenixKit is the PhoenixKit capabilities object, when the sender sent one.
	PhoenixKit *wire.PhoenixKitCapabilities `json:"capabilities,omitempty"`
}

// Stream reports whether the sender offers the fast path (stream.v1).
func (c Capabilities) Stream() bool { return slices.Contains(c.Features, wire.StreamFeature) }

// Capabilities asks what the sender supports. The first answer is kept for the
// connection.
func (c *Client) Capabilities(ctx context.Context) (Capabilities, error) {
	c.capsMu.Lock()
	defer c.capsMu.Unlock()
	if c.caps != nil {
		return *c.caps, nil
	}
	// A failed ask (a cancelled ctx, say) is not kept: the next call asks again.
	var caps Capabilities
	if err := c.call(ctx, wire.RequestCapabilities, struct{}{}, &caps); err != nil {
		return caps, err
	}
	if caps.Version == "" && caps.PhoenixKit != nil {
		caps.Version, caps.Features = caps.PhoenixKit.Version, caps.PhoenixKit.Features
	}
	c.caps = &caps
	return caps, nil
}

// ListTables lists the sender's tables with row counts.
func (c *Client) ListTables(ctx context.Context) ([]syncapi.Table, error) {
	var out wire.TablesResponse
	return out.Tables, c.call(ctx, wire.RequestTables, struct{}{}, &out)
}

// GetSchema returns a table's definition on the sender.
//
// A PhoenixKit sender describes columns as information_schema does ("character
// varying" plus a max_length, "ARRAY" plus an element_type, nextval defaults):
// its definition is turned into the same shape as ours.
func (c *Client) GetSchema(ctx context.Context, table string) (*syncapi.Schema, error) {
	var out struct {
		Schema json.RawMessage `json:"schema"`
	}
	if err := c.call(ctx, wire.RequestSchema, wire.TableRequest{Table: table}, &out); err != nil {
		return nil, fmt.Errorf("schema of %s: %w", table, err)
	}
	var sch syncapi.Schema
	if err := json.Unmarshal(out.Schema, &sch); err != nil {
		return nil, fmt.Errorf("schema of %s: decode: %w", table, err)
	}
	caps, err := c.Capabilities(ctx)
	if err != nil {
		return nil, fmt.Errorf("schema of %s: %w", table, err)
	}
	if !caps.Stream() {
		if err := syncapi.FromPhoenixKit(out.Schema, &sch); err != nil {
			return nil, fmt.Errorf("schema of %s: %w", table, err)
		}
	}
	return &sch, nil
}

// GetCount returns a table's row count on the sender.
func (c *Client) GetCount(ctx context.Context, table string) (int64, error) {
	var out wire.CountResponse
	if err := c.call(ctx, wire.RequestCount, wire.TableRequest{Table: table}, &out); err != nil {
		return 0, fmt.Errorf("count of %s: %w", table, err)
	}
	return out.Count, nil
}

// FetchRecords returns a page of records (column → text value) in key order.
//
// Values are PostgreSQL's text representation. Our senders send them so; a
// PhoenixKit sender's JSON-typed values are turned into text without knowing the
// columns' types (numbers and booleans as written, the bytea wrapper as \x hex,
// lists and objects as JSON): Transfer converts them by the local column's type.
func (c *Client) FetchRecords(ctx context.Context, table string, offset, limit int) (syncapi.Page, error) {
	raw, err := c.fetchRaw(ctx, table, offset, limit)
	if err != nil {
		return syncapi.Page{}, err
	}
	p := syncapi.Page{Offset: raw.Offset, HasMore: raw.HasMore, Records: make([]map[string]*string, len(raw.Records))}
	for i, rec := range raw.Records {
		if p.Records[i], err = textRecord(rec, nil); err != nil {
			return syncapi.Page{}, fmt.Errorf("records of %s: %w", table, err)
		}
	}
	return p, nil
}

// rawPage is a response:records payload with its values undecoded.
type rawPage struct {
	Records []map[string]json.RawMessage `json:"records"`
	Offset  int                          `json:"offset"`
	HasMore bool                         `json:"has_more"`
}

// fetchRaw asks for a page of records in text encoding (a PhoenixKit sender
// ignores the ask and sends JSON-typed values).
func (c *Client) fetchRaw(ctx context.Context, table string, offset, limit int) (rawPage, error) {
	var p rawPage
	req := wire.RecordsRequest{Table: table, Offset: offset, Limit: limit, Encoding: wire.EncodingText}
	if err := c.call(ctx, wire.RequestRecords, req, &p); err != nil {
		return p, fmt.Errorf("records of %s: %w", table, err)
	}
	return p, nil
}

// GetChecksum returns the md5 of a table's rows on the sender (COPY text format, key
// order, over the written columns) and those columns; compare with LocalChecksum.
func (c *Client) GetChecksum(ctx context.Context, table string) (string, []string, error) {
	var out wire.ChecksumResponse
	if err := c.call(ctx, wire.RequestChecksum, wire.TableRequest{Table: table}, &out); err != nil {
		return "", nil, fmt.Errorf("checksum of %s: %w", table, err)
	}
	return out.MD5, out.Columns, nil
}
