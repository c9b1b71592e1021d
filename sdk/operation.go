package sdk

import (
	"context"
	"encoding/json"

	"github.com/fiberkit/fiberkit/sdk/transport"
)

// Operations maps operation names to their implementations.
type Operations map[string]Operation

// Operation is a named operation; make one with Op.
type Operation interface {
	call(ctx context.Context, payload []byte) ([]byte, error)
}

type opFunc[In, Out any] func(ctx context.Context, in In) (Out, error)

// Op makes an Operation of a typed function. Input and output travel as JSON; an
// input that does not decode is refused with an invalid_input error before fn runs.
func Op[In, Out any](fn func(ctx context.Context, in In) (Out, error)) Operation {
	return opFunc[In, Out](fn)
}

func (f opFunc[In, Out]) call(ctx context.Context, payload []byte) ([]byte, error) {
	var in In
	if len(payload) > 0 {
		if err := json.Unmarshal(payload, &in); err != nil {
			return nil, transport.Errorf(transport.CodeInvalidInput, "decode input: %v", err)
		}
	}
	out, err := f(ctx, in)
	if err != nil {
		return nil, err
	}
	return json.Marshal(out)
}

// Error is an operation failure with a code that reaches the caller intact, in
// another process too. errors.Is matches Errors by Code.
type Error = transport.OpError

// Errorf returns an *Error with the given code.
func Errorf(code, format string, args ...any) *Error { return transport.Errorf(code, format, args...) }

// The error codes the host and the SDK use; a module's own codes are its own
// strings (write them as constants in its contract package).
const (
	CodeUnknownOperation = transport.CodeUnknownOperation
	CodeUnknownModule    = transport.CodeUnknownModule
	CodeModuleDisabled   = transport.CodeModuleDisabled
	CodeModuleDown       = transport.CodeModuleDown
	CodeInvalidInput     = transport.CodeInvalidInput
	CodeForbidden        = transport.CodeForbidden
	CodeLocked           = transport.CodeLocked
	CodeInternal         = transport.CodeInternal
)

// Typed errors callers of other modules branch on (compare with errors.Is).
var (
	ErrUnknownModule    = &Error{Code: transport.CodeUnknownModule}
	ErrModuleDisabled   = &Error{Code: transport.CodeModuleDisabled}
	ErrModuleDown       = &Error{Code: transport.CodeModuleDown}
	ErrUnknownOperation = &Error{Code: transport.CodeUnknownOperation}
	ErrInvalidInput     = &Error{Code: transport.CodeInvalidInput}
	ErrLocked           = &Error{Code: transport.CodeLocked}
	ErrForbidden        = &Error{Code: transport.CodeForbidden}
)

// Caller says who is calling, as established by the host, never by the caller.
type Caller transport.Caller

type callerKey struct{}

func withCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller of the operation, HTTP request or WebSocket whose
// context ctx is.
func CallerFrom(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}
