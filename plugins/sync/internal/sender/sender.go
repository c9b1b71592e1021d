// Package sender is the sending end of the Sync protocol (package wire): the
// WebSocket endpoint a receiver connects to. Admission checks the code (with its
// password and approval) or a permanent connection's token before the upgrade;
// each request is then dispatched through a handler table, held to the
// connection's limits, and answered from one consistent snapshot of the database;
// tables stream as binary batches under the receiver's credit.
package sender

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/plugins/sync/session"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
	"github.com/fiberkit/fiberkit/sdk"
)

// Sender serves receivers. Build one with New.
type Sender struct {
	log     *slog.Logger
	current site.Current
	// receiverIdle ends a receiver's connection when nothing (not even a heartbeat)
	// has come from it for this long, so a vanished peer does not hold a snapshot.
	receiverIdle time.Duration
	// open answers before the receiver joined; joined once it has.
	open, joined map[string]handler
}

// handler answers one event of a receiver's.
type handler func(p *peer, ctx context.Context, f wire.Frame) error

// New returns a Sender serving the site current returns, ending a receiver's
// connection after receiverIdle without a word from it.
func New(log *slog.Logger, current site.Current, receiverIdle time.Duration) *Sender {
	return &Sender{log: log, current: current, receiverIdle: receiverIdle,
		open: map[string]handler{
			wire.EventJoin:  (*peer).join,
			wire.EventLeave: (*peer).leave,
		},
		joined: map[string]handler{
			wire.RequestCapabilities: admitted((*peer).capabilities),
			wire.RequestTables:       admitted((*peer).tables),
			wire.RequestChecksum:     payload((*peer).checksum),
			wire.RequestSchema:       payload((*peer).schemaRequest),
			wire.RequestCount:        payload((*peer).count),
			wire.RequestRecords:      payload((*peer).records),
			wire.RequestRanges:       payload((*peer).ranges),
			wire.StreamStart:         payload((*peer).startStream),
			wire.StreamAck:           payload((*peer).ack),
			wire.StreamCancel:        payload((*peer).cancelStream),
			wire.RequestFollow:       payload((*peer).requestFollow),
			wire.FollowStart:         payload((*peer).startFollow),
			wire.FollowAck:           payload((*peer).followAck),
		}}
}

// payload makes a handler of fn, which takes the frame's payload decoded as a T:
// a payload that does not decode, or that its Validate method (when T has one)
// refuses, is answered with bad_request before anything reaches the database;
// then the connection's limits must admit the request.
func payload[T any](fn func(p *peer, ctx context.Context, f wire.Frame, req T) error) handler {
	return func(p *peer, ctx context.Context, f wire.Frame) error {
		var req T
		if err := f.Unpack(&req); err != nil {
			return p.fail(f, wire.ErrBadRequest, err.Error())
		}
		if v, ok := any(req).(interface{ Validate() error }); ok {
			if err := v.Validate(); err != nil {
				return p.fail(f, wire.ErrBadRequest, err.Error())
			}
		}
		if !p.admit(ctx, f) {
			return nil
		}
		return fn(p, ctx, f, req)
	}
}

// admitted makes a handler of fn that runs once the connection's limits admit
// the request.
func admitted(fn handler) handler {
	return func(p *peer, ctx context.Context, f wire.Frame) error {
		if !p.admit(ctx, f) {
			return nil
		}
		return fn(p, ctx, f)
	}
}

// ownerCheck is how often a connection checks that it may go on.
const ownerCheck = 2 * time.Second

// redeemError maps a session error to the HTTP status and plain reason of a refused upgrade.
func redeemError(err error) (int, string) {
	switch {
	case errors.Is(err, session.ErrInvalidCode):
		return http.StatusForbidden, wire.ErrInvalidCode
	case errors.Is(err, session.ErrAlreadyUsed):
		return http.StatusForbidden, wire.ErrAlreadyUsed
	case errors.Is(err, session.ErrRateLimited):
		return http.StatusTooManyRequests, wire.ErrRateLimited
	case errors.Is(err, session.ErrPasswordRequired):
		return http.StatusForbidden, wire.ErrPasswordRequired
	case errors.Is(err, session.ErrWrongPassword):
		return http.StatusForbidden, wire.ErrWrongPassword
	case errors.Is(err, session.ErrDenied):
		return http.StatusForbidden, wire.ErrDenied
	}
	return http.StatusInternalServerError, wire.ErrInternal
}

// Serve is the sender's WebSocket endpoint: {prefix}/sync/websocket?code=CODE&vsn=2.0.0.
// The code (and password, in the X-Sync-Password header) or the permanent
// connection's token (Authorization: Bearer fkc_…) are checked before the
// upgrade; a refusal is a plain HTTP answer with the reason.
func (s *Sender) Serve(ctx context.Context, c *sdk.Conn) error {
	st, err := s.current()
	if err != nil {
		return c.Reject(http.StatusServiceUnavailable, "sync is starting")
	}
	q := c.Query()
	password := c.Header().Get("X-Sync-Password")
	if password == "" {
		password = q.Get("password")
	}
	addr := c.Caller().RemoteAddr
	p := &peer{srv: s, st: st, c: c, addr: addr, streams: map[uint32]*liveStream{}}
	p.lastSeen.Store(time.Now().UnixNano())
	if token := strings.TrimPrefix(c.Header().Get("Authorization"), "Bearer "); strings.HasPrefix(token, "fkc_") {
		// A permanent connection: its token and limits replace the code.
		conn, err := st.Conns.Authorize(ctx, token, addr)
		if err != nil {
			var ref *connection.Refusal
			if errors.As(err, &ref) {
				status := http.StatusForbidden
				if ref.Reason == connection.ErrRate.Reason {
					status = http.StatusTooManyRequests
				}
				return c.Reject(status, ref.Reason)
			}
			s.log.Error("authorize connection", "err", err)
			return c.Reject(http.StatusInternalServerError, wire.ErrInternal)
		}
		p.connID, p.token, p.topic, p.joined = conn.ID, token, "transfer:token", false
	} else {
		// Codes are shown upper-case; accept them as typed, with stray spaces.
		code := session.NormalizeCode(q.Get("code"))
		sess, err := st.Sessions.Redeem(ctx, code, session.Attempt{Address: addr, Password: password, ReceiverInfo: receiverInfo(c.Header())}, st.Policy())
		if err != nil {
			status, reason := redeemError(err)
			if status == http.StatusInternalServerError {
				s.log.Error("redeem code", "err", err)
			} else {
				st.Metrics.AttemptRefused(reason)
			}
			return c.Reject(status, reason)
		}
		p.sess, p.topic = sess, "transfer:"+code
	}
	st.Metrics.SessionOpened("send")
	defer st.Metrics.SessionClosed("send")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p.cancel = cancel
	defer p.finish(ctx)
	go p.watchOwner(ctx)
	return p.loop(ctx)
}

// normalTopic spells a transfer:CODE topic as the sender does (codes upper-case,
// no spaces), so a receiver may echo the code as its user typed it.
func normalTopic(topic string) string {
	if code, ok := strings.CutPrefix(topic, "transfer:"); ok && code != "token" {
		return "transfer:" + session.NormalizeCode(code)
	}
	return topic
}

// receiverInfo reads the X-Sync-Receiver-Info header (a JSON object the client
// sends so that even a refused attempt says who tried); anything else is ignored.
func receiverInfo(h http.Header) map[string]any {
	v := h.Get("X-Sync-Receiver-Info")
	if v == "" || len(v) > maxReceiverInfo {
		return nil
	}
	var info map[string]any
	if json.Unmarshal([]byte(v), &info) != nil {
		return nil
	}
	return info
}

// maxReceiverInfo bounds the receiver-info header (bytes).
const maxReceiverInfo = 2 << 10
