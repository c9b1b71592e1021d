package transport

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/fiberkit/fiberkit/sdk/transport/pluginv1"
)

// grpcPlugin is the go-plugin glue for both sides.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl Module
}

func (p *grpcPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterPluginServer(s, &server{impl: p.impl, broker: broker})
	return nil
}

func (p *grpcPlugin) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return &Client{rpc: pb.NewPluginClient(cc), broker: broker}, nil
}

// server adapts a Module to the gRPC Plugin service.
type server struct {
	pb.UnimplementedPluginServer
	impl   Module
	broker *plugin.GRPCBroker
	// headDelay overrides defaultHeadDelay when set (tests).
	headDelay time.Duration
	// noSocket serves exchanges over gRPC only (tests), or says opening the exchange
	// socket failed.
	noSocket bool

	mu       sync.Mutex
	hostID   uint32
	host     *HostClient
	hostConn *grpc.ClientConn
	socket   *exchangeSocket
}

func (s *server) Describe(ctx context.Context, _ *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	d, err := s.impl.Describe(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	r := &pb.DescribeResponse{Id: d.ID, Version: d.Version, Http: d.HTTP, Websocket: d.WebSocket, Operations: d.Operations,
		Exchange: true, WebsocketBatch: true}
	if es := s.exchangeSocket(); es != nil {
		r.ExchangeSocket, r.ExchangeToken = es.addr, es.token
	}
	return r, nil
}

// exchangeSocket opens the exchange socket on first use. When it cannot be opened,
// exchanges go over gRPC only.
func (s *server) exchangeSocket() *exchangeSocket {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.socket == nil && !s.noSocket {
		es, err := s.openExchangeSocket()
		s.socket, s.noSocket = es, err != nil
	}
	return s.socket
}

// hostClient dials the host service once per broker id; the host brokers it once
// per plugin process, so normally this dials exactly once.
func (s *server) hostClient(id uint32) (*HostClient, error) {
	if id == 0 {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.host != nil && s.hostID == id {
		return s.host, nil
	}
	conn, err := s.broker.DialWithOptions(id, callLimits(maxMessageFromEnv())...)
	if err != nil {
		return nil, err
	}
	if s.hostConn != nil {
		_ = s.hostConn.Close()
	}
	s.hostID, s.hostConn = id, conn
	s.host = &HostClient{rpc: pb.NewHostClient(conn)}
	return s.host, nil
}

func (s *server) Configure(ctx context.Context, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	host, err := s.hostClient(req.GetHostBrokerId())
	if err != nil {
		return nil, toStatus(Errorf(CodeInternal, "dial host service: %v", err))
	}
	err = s.impl.Configure(ctx, Configuration{
		ModuleID:    req.GetModuleId(),
		Revision:    req.GetRevision(),
		Settings:    req.GetSettings(),
		DatabaseURL: req.GetDatabaseUrl(),
		HostVersion: req.GetHostVersion(),
		PublicURL:   req.GetPublicUrl(),
		MountPrefix: req.GetMountPrefix(),
		AdminPrefix: req.GetAdminPrefix(),
		Host:        host,
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ConfigureResponse{}, nil
}

func (s *server) Call(ctx context.Context, req *pb.CallRequest) (*pb.CallResponse, error) {
	out, err := s.impl.Call(ctx, Call{Operation: req.GetOperation(), Payload: req.GetPayload(), Caller: callerFromPB(req.GetCaller())})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CallResponse{Payload: out}, nil
}

func (s *server) ServeHTTP(stream pb.Plugin_ServeHTTPServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	h := first.GetHead()
	if h == nil {
		return toStatus(Errorf(CodeInvalidInput, "http stream must start with a request head"))
	}
	head := requestHeadFromPB(h)
	w := &streamResponseWriter{stream: stream}
	err = s.impl.ServeHTTP(stream.Context(), head, &streamBody{stream: stream}, w)
	if err == nil {
		err = w.finish()
	}
	return toStatus(err)
}

// streamBody reads request body chunks from the stream as the handler asks for them,
// so a large upload is never held whole.
type streamBody struct {
	stream pb.Plugin_ServeHTTPServer
	buf    []byte
	err    error
}

func (b *streamBody) Read(p []byte) (int, error) {
	for len(b.buf) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		part, err := b.stream.Recv()
		if err != nil {
			b.err = err
			if errors.Is(err, io.EOF) {
				b.err = io.EOF
			}
			continue
		}
		b.buf = part.GetBody().GetData()
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	return n, nil
}

// streamResponseWriter sends the head, then body chunks of at most chunkSize.
type streamResponseWriter struct {
	stream      pb.Plugin_ServeHTTPServer
	wroteHeader bool
	buf         []byte
}

func (w *streamResponseWriter) WriteHead(status int, header http.Header) error {
	if w.wroteHeader {
		return nil
	}
	w.wroteHeader = true
	return w.stream.Send(&pb.HTTPResponsePart{Part: &pb.HTTPResponsePart_Head{Head: &pb.HTTPResponseHead{Status: int32(status), Headers: headerToPB(header)}}})
}

func (w *streamResponseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		if err := w.WriteHead(200, nil); err != nil {
			return 0, err
		}
	}
	n := len(p)
	for len(p) > 0 {
		room := chunkSize - len(w.buf)
		take := min(room, len(p))
		w.buf = append(w.buf, p[:take]...)
		p = p[take:]
		if len(w.buf) == chunkSize {
			if err := w.send(false); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *streamResponseWriter) send(flush bool) error {
	if len(w.buf) == 0 && !flush {
		return nil
	}
	// Send encodes the message before returning, so the buffer can be reused.
	err := w.stream.Send(&pb.HTTPResponsePart{Part: &pb.HTTPResponsePart_Body{Body: &pb.BodyChunk{Data: w.buf, Flush: flush}}})
	w.buf = w.buf[:0]
	return err
}

func (w *streamResponseWriter) Flush() error {
	if !w.wroteHeader {
		if err := w.WriteHead(200, nil); err != nil {
			return err
		}
	}
	return w.send(true)
}

func (w *streamResponseWriter) finish() error {
	if !w.wroteHeader {
		if err := w.WriteHead(200, nil); err != nil {
			return err
		}
	}
	return w.send(false)
}

func (s *server) ServeWebSocket(stream pb.Plugin_ServeWebSocketServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	o := first.GetOpen()
	if o == nil {
		return toStatus(Errorf(CodeInvalidInput, "websocket stream must start with an open frame"))
	}
	open := WebSocketOpen{
		ID: o.GetId(), Path: o.GetPath(), Route: o.GetRoute(), Params: o.GetParams(), RawQuery: o.GetRawQuery(),
		Header: headerFromPB(o.GetHeaders()), Caller: callerFromPB(o.GetCaller()),
	}
	sock := &serverSocket{stream: stream, recv: wsReceiver{recv: stream.Recv}}
	if o.GetBatch() {
		sock.batch = newWSSender(stream.Context(), stream.Send)
	}
	err = s.impl.ServeWebSocket(stream.Context(), open, sock)
	if sock.batch != nil {
		// What the handler queued goes out before the stream ends, and nothing is
		// sent once this handler returns.
		if ferr := sock.batch.finish(nil); err == nil && ferr != nil && stream.Context().Err() == nil {
			err = ferr
		}
	}
	return toStatus(err)
}

type serverSocket struct {
	stream pb.Plugin_ServeWebSocketServer
	batch  *wsSender // nil when the host reads no batches
	recv   wsReceiver
}

func (s *serverSocket) Send(m Message) error {
	if s.batch != nil {
		return s.batch.Send(m)
	}
	f := messageToPB(m)
	if f == nil {
		return Errorf(CodeInvalidInput, "unknown message kind %d", m.Kind)
	}
	return s.stream.Send(f)
}

func (s *serverSocket) Recv() (Message, error) { return s.recv.next() }
