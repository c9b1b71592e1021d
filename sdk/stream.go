package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/fiberkit/fiberkit/sdk/transport"
)

// Streams maps streaming operation names to their implementations. Their names
// share one namespace with Operations: the manifest's operations list, and its
// callers, cover both kinds.
type Streams map[string]StreamOperation

// StreamOperation is a named operation that sends a series of values; make one
// with StreamOp.
type StreamOperation interface {
	stream(ctx context.Context, payload []byte, sink transport.StreamSink) error
}

type streamFunc[In, Out any] func(ctx context.Context, in In, send func(Out) error) error

// StreamOp makes a StreamOperation of a typed function. Input and each sent value
// travel as JSON; an input that does not decode is refused with an invalid_input
// error before fn runs. fn sends values with send, in order, for as long as it
// likes; returning nil ends the stream (the caller's Recv gives io.EOF), returning
// an error ends it with that error (an *Error keeps its code). ctx is cancelled
// when the caller closes the stream or goes away, so a stream that runs until told
// to stop watches ctx.Done(). send blocks while the caller is not reading (the
// buffers on the way hold about a megabyte), fails once ctx is done, may be called
// from several goroutines, and must not be called after fn returned.
func StreamOp[In, Out any](fn func(ctx context.Context, in In, send func(Out) error) error) StreamOperation {
	return streamFunc[In, Out](fn)
}

func (f streamFunc[In, Out]) stream(ctx context.Context, payload []byte, sink transport.StreamSink) error {
	var in In
	if len(payload) > 0 {
		if err := json.Unmarshal(payload, &in); err != nil {
			return transport.Errorf(transport.CodeInvalidInput, "decode input: %v", err)
		}
	}
	if err := sink.Accept(); err != nil {
		return err
	}
	var (
		mu   sync.Mutex
		done bool
	)
	send := func(v Out) error {
		data, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode value: %w", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if done {
			return errStreamEnded
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return sink.Send(data)
	}
	defer func() {
		mu.Lock()
		done = true
		mu.Unlock()
	}()
	return f(ctx, in, send)
}

var errStreamEnded = errors.New("send after the stream operation returned")

// Stream is a streaming operation of another module, being received. Recv is not
// safe for use from two goroutines at once; Close is safe at any time.
type Stream struct {
	s          *transport.CallStream
	target, op string
}

// CallStream opens streaming operation op of module target through the host, which
// tells target that this module is calling. in is sent as JSON. It returns once
// target accepted the call; a refusal (unknown module or operation, disabled or
// unavailable module, invalid input, forbidden) is its error, with its code. The
// stream lives until it ends, Close is called or ctx is done — whichever comes
// first; the latter two cancel the operation's context in target. Close it when
// done with it.
func (h *Host) CallStream(ctx context.Context, target, op string, in any) (*Stream, error) {
	payload, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("stream %s.%s: encode input: %w", target, op, err)
	}
	s, err := h.c.CallPluginStream(ctx, target, op, payload)
	if err != nil {
		return nil, fmt.Errorf("stream %s.%s: %w", target, op, err)
	}
	return &Stream{s: s, target: target, op: op}, nil
}

// Recv decodes the next value into out (which may be nil to skip it). It returns
// io.EOF, unwrapped, when the operation returned nil, and the operation's error
// otherwise (errors.As finds its *Error; ErrModuleDown when target's process went
// away; context.Canceled after Close). A value that does not decode into out is
// an error of its own: the stream goes on.
func (s *Stream) Recv(out any) error {
	data, err := s.s.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return fmt.Errorf("stream %s.%s: %w", s.target, s.op, err)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("stream %s.%s: decode value: %w", s.target, s.op, err)
		}
	}
	return nil
}

// Close ends the stream; the operation's context in target is cancelled.
func (s *Stream) Close() { s.s.Close() }

// CallStream runs streaming operation c.Operation for the host.
func (a *adapter) CallStream(ctx context.Context, c transport.Call, sink transport.StreamSink) (err error) {
	op, ok := a.m.Streams[c.Operation]
	if !ok {
		return transport.Errorf(transport.CodeUnknownOperation, "no streaming operation %q", c.Operation)
	}
	defer a.recoverInto(&err, "stream operation "+c.Operation)
	return op.stream(withCaller(ctx, Caller(c.Caller)), c.Payload, sink)
}
