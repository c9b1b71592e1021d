package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/fiberkit/fiberkit/sdk/transport"
)

// CallStream is a module's streaming operation being received by the host app's
// own code (Kit.CallStream) or relayed to another module. Recv is not safe for use
// from two goroutines at once; Close is safe at any time.
type CallStream struct {
	rs         *transport.CallStream
	ctx        context.Context // the caller's
	target, op string

	// Metrics: the call is counted when opened and observed once, when it ends.
	m           *module
	caller, lbl string
	start       time.Time
	stopAfter   func() bool // stops the observation waiting for ctx to end
	endOnce     sync.Once
}

// CallStream opens a module's streaming operation from the host app's own Go code,
// as caller user. The input is JSON bytes, and so is each value Recv returns. It
// returns once the operation accepted its input; a refusal is the error, with its
// code (errors.Is(err, sdk.ErrUnknownOperation), sdk.ErrModuleDisabled,
// sdk.ErrInvalidInput…). The stream lives until it ends, Close is called or ctx is
// done, whichever comes first; the latter two cancel the operation's context in the
// module. Values are relayed one by one under gRPC flow control: while the app does
// not call Recv, the module's send blocks once about a megabyte is on the way.
func (k *Kit) CallStream(ctx context.Context, user, target, op string, payload []byte) (*CallStream, error) {
	s, err := k.callStream(ctx, transport.Caller{User: user}, target, op, payload)
	if err != nil {
		return nil, fmt.Errorf("stream %s.%s: %w", target, op, err)
	}
	return s, nil
}

// callStream opens target's streaming operation for caller, with the same checks
// as call: the target must be loaded and enabled, and a module may call it only if
// the target's manifest lets it.
func (k *Kit) callStream(ctx context.Context, caller transport.Caller, target, op string, payload []byte) (*CallStream, error) {
	m, ok := k.modules[target]
	if !ok {
		return nil, errUnknownModule(target)
	}
	if caller.Plugin != "" && !m.man.MayCall(op, caller.Plugin) {
		return nil, transport.Errorf(transport.CodeForbidden, "module %s may not call %s.%s (its module.yaml lists the modules that may)", caller.Plugin, target, op)
	}
	s := &CallStream{ctx: ctx, target: target, op: op, m: m, caller: callerLabel(caller), lbl: m.opLabel(op), start: time.Now()}
	m.metrics.countCall(s.caller, s.lbl, kindStream)
	rpc, err := m.client()
	if err == nil {
		s.rs, err = rpc.CallStream(ctx, transport.Call{Operation: op, Payload: payload, Caller: caller})
		if errors.Is(err, transport.ErrUnimplemented) {
			err = transport.Errorf(transport.CodeUnknownOperation, "module %s serves no streaming operations (built before CallStream)", target)
		}
	}
	if err != nil {
		s.end(err)
		return nil, err
	}
	s.stopAfter = context.AfterFunc(ctx, func() { s.end(nil) })
	return s, nil
}

// Recv returns the next value. It returns io.EOF, unwrapped, when the operation
// returned nil, and its error otherwise (errors.As finds the *sdk.Error with the
// module's code; sdk.ErrModuleDown when the module's process went away;
// context.Canceled after Close or when ctx ended).
func (s *CallStream) Recv() ([]byte, error) {
	data, err := s.rs.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			s.finish(nil)
			return nil, io.EOF
		}
		if s.ctx.Err() != nil || errors.Is(err, context.Canceled) {
			s.finish(nil) // the caller ended it: not a failure of the operation
		} else {
			s.finish(err)
		}
		return nil, fmt.Errorf("stream %s.%s: %w", s.target, s.op, err)
	}
	return data, nil
}

// Close ends the stream; the operation's context in the module is cancelled.
func (s *CallStream) Close() {
	s.rs.Close()
	s.finish(nil)
}

// end records the stream's duration, and err if it failed, once. It may run on
// the goroutine context.AfterFunc starts, so it does not touch stopAfter.
func (s *CallStream) end(err error) {
	s.endOnce.Do(func() {
		s.m.metrics.observeEnd(s.caller, s.lbl, kindStream, time.Since(s.start), err)
	})
}

// finish records the stream's end and forgets ctx, whose AfterFunc would
// otherwise hold the stream for as long as ctx lives.
func (s *CallStream) finish(err error) {
	s.stopAfter()
	s.end(err)
}

// CallPluginStream relays target's streaming operation to the calling module,
// which the host names as caller: each value is sent on before the next is read,
// so a caller that does not read holds the target back through flow control.
func (h *hostService) CallPluginStream(ctx context.Context, target, op string, payload []byte, sink transport.StreamSink) error {
	s, err := h.kit.callStream(ctx, transport.Caller{Plugin: h.mod.man.ID}, target, op, payload)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := sink.Accept(); err != nil {
		return err
	}
	for {
		data, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := sink.Send(data); err != nil {
			return err
		}
	}
}
