package transport

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc"

	pb "github.com/fiberkit/fiberkit/sdk/transport/pluginv1"
)

// StreamModule is implemented by a Module that serves streaming operations. A
// module that does not implement it answers CallStream with Unimplemented, as a
// plugin built before the call does.
type StreamModule interface {
	// CallStream runs the streaming operation c: it calls sink.Accept once the
	// operation took its input, then sink.Send for each value, and returns when the
	// operation ends (nil: the caller's Recv gives io.EOF). ctx is cancelled when
	// the caller goes away.
	CallStream(ctx context.Context, c Call, sink StreamSink) error
}

// StreamSink is where a streaming operation's values go, one message each. It is
// not safe for use from two goroutines at once.
type StreamSink interface {
	// Accept tells the caller that the operation accepted its input and is running,
	// before any value: the caller's open call returns then. Send accepts too.
	Accept() error
	// Send sends one value. It blocks while the caller is not reading and the
	// buffers on the way are full (gRPC flow control).
	Send(payload []byte) error
}

// grpcSink sends a streaming operation's values on a gRPC server stream.
type grpcSink struct {
	stream   grpc.ServerStreamingServer[pb.CallStreamMessage]
	accepted bool
}

func (s *grpcSink) Accept() error {
	if s.accepted {
		return nil
	}
	s.accepted = true
	return s.stream.SendHeader(nil)
}

func (s *grpcSink) Send(payload []byte) error {
	s.accepted = true // the headers go with the first message
	return s.stream.Send(&pb.CallStreamMessage{Payload: payload})
}

func (s *server) CallStream(req *pb.CallRequest, stream pb.Plugin_CallStreamServer) error {
	sm, ok := s.impl.(StreamModule)
	if !ok {
		return toStatus(ErrUnimplemented)
	}
	call := Call{Operation: req.GetOperation(), Payload: req.GetPayload(), Caller: callerFromPB(req.GetCaller())}
	return toStatus(sm.CallStream(stream.Context(), call, &grpcSink{stream: stream}))
}

func (h *hostServer) CallPluginStream(r *pb.CallPluginRequest, stream pb.Host_CallPluginStreamServer) error {
	return toStatus(h.svc.CallPluginStream(stream.Context(), r.GetTarget(), r.GetOperation(), r.GetPayload(), &grpcSink{stream: stream}))
}

// CallStream opens a streaming operation of the module. It returns once the
// operation accepted its input, or with the error that refused it. The stream
// lives as long as ctx, or until it ends or is closed.
func (c *Client) CallStream(ctx context.Context, call Call) (*CallStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.rpc.CallStream(ctx, &pb.CallRequest{Operation: call.Operation, Payload: call.Payload, Caller: callerToPB(call.Caller)})
	if err != nil {
		cancel()
		return nil, fromStatus(err)
	}
	return openCallStream(ctx, stream, cancel)
}

// CallPluginStream opens another module's streaming operation through the host,
// which stamps this module as caller. It returns once the target accepted the call,
// or with the error that refused it.
func (c *HostClient) CallPluginStream(ctx context.Context, target, operation string, payload []byte) (*CallStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.rpc.CallPluginStream(ctx, &pb.CallPluginRequest{Target: target, Operation: operation, Payload: payload})
	if err != nil {
		cancel()
		return nil, fromStatus(err)
	}
	return openCallStream(ctx, stream, cancel)
}

// openCallStream waits for the response headers, which the other side sends once
// the operation accepted its input. A stream that ends without them was refused (or
// ended at once): its status is the answer.
func openCallStream(ctx context.Context, stream grpc.ServerStreamingClient[pb.CallStreamMessage], cancel context.CancelFunc) (*CallStream, error) {
	s := &CallStream{ctx: ctx, stream: stream, cancel: cancel}
	if md, _ := stream.Header(); md != nil {
		return s, nil
	}
	m, err := stream.Recv()
	switch {
	case errors.Is(err, io.EOF):
		s.end = io.EOF
	case err != nil:
		cancel()
		return nil, fromStatus(err)
	default:
		s.first = m
	}
	return s, nil
}

// CallStream is the receiving end of a streaming operation. Recv is not safe for
// use from two goroutines at once; Close is safe at any time.
type CallStream struct {
	ctx    context.Context // the stream's own: done once it is closed
	stream grpc.ServerStreamingClient[pb.CallStreamMessage]
	cancel context.CancelFunc
	first  *pb.CallStreamMessage // received while opening
	end    error                 // the stream's end, once seen

	closeOnce sync.Once
}

// Recv returns the next value. It returns io.EOF when the operation returned nil,
// the operation's error (an *OpError, or a context error) otherwise, and the
// context's error once the stream was closed or its context ended. Recv waits for
// the next value as long as the operation runs.
func (s *CallStream) Recv() ([]byte, error) {
	if m := s.first; m != nil {
		s.first = nil
		return m.GetPayload(), nil
	}
	if s.end != nil {
		return nil, s.end
	}
	if err := s.ctx.Err(); err != nil {
		// Closed, or the caller's context ended: what gRPC holds received is dropped.
		s.end = err
		return nil, err
	}
	m, err := s.stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			s.end = io.EOF
		} else {
			s.end = fromStatus(err)
		}
		s.Close()
		return nil, s.end
	}
	return m.GetPayload(), nil
}

// Close ends the stream: the operation's context is cancelled. Recv returns
// context.Canceled after it (io.EOF or the operation's error if it had seen the
// end already).
func (s *CallStream) Close() {
	s.closeOnce.Do(s.cancel)
}
