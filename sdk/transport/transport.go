// Package transport is the gRPC adapter pair between the FiberKit host and a module
// process, in the manner of go-plugin's GRPCServer/GRPCClient: the plugin side
// implements Module, the host side drives a *Client, and the host offers a HostService
// that the plugin reaches through a *HostClient. Nothing outside this package sees a
// protobuf type.
//
// Plugin authors do not use this package directly; they use package sdk.
package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// ProtocolVersion is the newest host↔plugin protocol this package speaks.
const ProtocolVersion = 1

// PluginName is the name of the one plugin every module process dispenses.
const PluginName = "module"

// Handshake returns the go-plugin handshake shared by host and plugins. The cookie
// only stops a module binary from being run by hand by mistake; it is not security.
func Handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  ProtocolVersion,
		MagicCookieKey:   "FIBERKIT_PLUGIN",
		MagicCookieValue: "a4f1b7e2-fiberkit-module",
	}
}

// ServerPlugins returns the versioned plugin sets a module process serves.
func ServerPlugins(impl Module) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{1: {PluginName: &grpcPlugin{impl: impl}}}
}

// ClientPlugins returns the versioned plugin sets the host asks for.
func ClientPlugins() map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{1: {PluginName: &grpcPlugin{}}}
}

// windowSize fixes gRPC's flow-control windows (instead of letting BDP estimation
// grow them to 16 MiB), so a stream holds at most this much in flight per direction.
const windowSize = 1 << 20

// MaxMessageEnv names the environment variable in which the host tells a module
// process the largest gRPC message (bytes) either side accepts: a WebSocket frame, a
// Call payload or result, a published message. Both sides use the same limit.
const MaxMessageEnv = "FIBERKIT_MAX_MESSAGE_SIZE"

// messageOverhead is what a message carries besides its payload (headers, caller,
// framing).
const messageOverhead = 1 << 20

// DefaultMaxMessageSize is the limit a module process uses when the host does not set
// MaxMessageEnv: 64 MiB of payload plus overhead.
const DefaultMaxMessageSize = 64<<20 + messageOverhead

// MaxMessageSize returns the gRPC message limit for payloads of up to payload bytes.
func MaxMessageSize(payload int64) int {
	n := payload + messageOverhead
	if payload <= 0 {
		n = DefaultMaxMessageSize
	}
	return int(min(n, math.MaxInt32))
}

// maxMessageFromEnv is the module process's limit: what the host said, or the default.
func maxMessageFromEnv() int {
	if n, err := strconv.ParseInt(os.Getenv(MaxMessageEnv), 10, 64); err == nil && n > 0 {
		return int(min(n, math.MaxInt32))
	}
	return DefaultMaxMessageSize
}

// DialOptions are the gRPC options the host dials a module with; maxMsg is the
// largest message sent or received (see MaxMessageSize).
func DialOptions(maxMsg int) []grpc.DialOption {
	return append(callLimits(maxMsg), grpc.WithInitialWindowSize(windowSize), grpc.WithInitialConnWindowSize(windowSize))
}

func callLimits(maxMsg int) []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg), grpc.MaxCallSendMsgSize(maxMsg))}
}

// NewServer is the gRPC server factory a module process serves with. Its message
// limit comes from MaxMessageEnv.
func NewServer(opts []grpc.ServerOption) *grpc.Server {
	return newServer(opts, maxMessageFromEnv())
}

func newServer(opts []grpc.ServerOption, maxMsg int) *grpc.Server {
	opts = append(opts, grpc.InitialWindowSize(windowSize), grpc.InitialConnWindowSize(windowSize),
		grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(maxMsg))
	return grpc.NewServer(opts...)
}

// Caller says who is on the other end of a request, as established by the host.
type Caller struct {
	User       string `json:"user,omitempty"`
	Plugin     string `json:"plugin,omitempty"`
	RemoteAddr string `json:"remote_addr,omitempty"`
	Admin      bool   `json:"admin,omitempty"`
}

// Description is what a module says about itself.
type Description struct {
	ID        string
	Version   string
	HTTP      bool
	WebSocket bool
	// Operations names the module's operations, streaming ones included.
	Operations []string
}

// Configuration is delivered to the module on start and on every settings change.
type Configuration struct {
	ModuleID    string
	Revision    int64
	Settings    map[string]string
	DatabaseURL string
	HostVersion string
	PublicURL   string
	MountPrefix string
	AdminPrefix string
	// Host reaches the host service; nil when the host offered none.
	Host *HostClient
}

// RequestHead is an HTTP request without its body.
type RequestHead struct {
	Method     string
	Path       string
	RawQuery   string
	Header     http.Header
	RemoteAddr string
	Host       string
	TLS        bool
	Caller     Caller
	Route      string
	Params     map[string]string
}

// ResponseWriter receives a streamed HTTP response.
type ResponseWriter interface {
	// WriteHead sends the status and headers; it is called once, before any Write.
	WriteHead(status int, header http.Header) error
	Write(p []byte) (int, error)
	// Flush pushes what was written so far to the client.
	Flush() error
}

// MessageKind is the kind of a WebSocket message.
type MessageKind int

// The WebSocket message kinds.
const (
	Text MessageKind = iota + 1
	Binary
	Close
	Ping
	Pong
	// Accept (module → host, first) lets the host upgrade the connection.
	Accept
	// Reject (module → host, first) refuses it: Code is the HTTP status, Reason the body.
	Reject
)

// Message is one WebSocket frame passed between host and module.
type Message struct {
	Kind MessageKind
	Data []byte
	// Code and Reason are set for Close.
	Code   int
	Reason string
}

// WebSocketOpen describes a new WebSocket connection.
type WebSocketOpen struct {
	ID       string
	Path     string
	Route    string
	Params   map[string]string
	RawQuery string
	Header   http.Header
	Caller   Caller
}

// Socket is one side of a WebSocket connection carried over the transport. Send and
// Recv may be used from two different goroutines, but neither from two at once.
type Socket interface {
	Send(Message) error
	Recv() (Message, error)
}

// Call is a named operation call.
type Call struct {
	Operation string
	Payload   []byte
	Caller    Caller
}

// Module is what a module process implements; package sdk provides the usual one.
// Methods that a module does not support return ErrUnimplemented.
type Module interface {
	Describe(ctx context.Context) (Description, error)
	Configure(ctx context.Context, c Configuration) error
	ServeHTTP(ctx context.Context, head RequestHead, body io.Reader, w ResponseWriter) error
	ServeWebSocket(ctx context.Context, open WebSocketOpen, s Socket) error
	Call(ctx context.Context, c Call) ([]byte, error)
}

// ErrUnimplemented says the module does not offer that capability.
var ErrUnimplemented = errors.New("not implemented by this module")

// Error codes carried by *OpError across the transport.
const (
	CodeUnknownOperation = "unknown_operation"
	CodeUnknownModule    = "unknown_module"
	CodeModuleDisabled   = "module_disabled"
	CodeModuleDown       = "module_unavailable"
	CodeInvalidInput     = "invalid_input"
	CodeForbidden        = "forbidden"
	CodeLocked           = "locked"
	CodeInternal         = "internal"
)

// OpError is an operation failure with a machine-readable code that survives the
// trip across processes. errors.Is matches two OpErrors by Code.
type OpError struct {
	Code    string
	Message string
}

// Error implements error.
func (e *OpError) Error() string {
	if e.Message == "" {
		return e.Code
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Is reports whether target is an *OpError with the same code.
func (e *OpError) Is(target error) bool {
	t, ok := target.(*OpError)
	return ok && t.Code == e.Code
}

// Errorf returns an *OpError with the given code.
func Errorf(code, format string, args ...any) *OpError {
	return &OpError{Code: code, Message: fmt.Sprintf(format, args...)}
}
