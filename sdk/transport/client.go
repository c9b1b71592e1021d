package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/fiberkit/fiberkit/sdk/transport/pluginv1"
)

// Client is the host's handle on one module process.
type Client struct {
	rpc    pb.PluginClient
	broker *plugin.GRPCBroker

	// What the module said it serves, from Describe.
	exchange atomic.Bool
	wsBatch  atomic.Bool
	pool     streamPool   // idle exchange connections
	socket   socketDialer // the module's exchange socket, if it has one
}

// Describe asks the module what it is.
func (c *Client) Describe(ctx context.Context) (Description, error) {
	r, err := c.rpc.Describe(ctx, &pb.DescribeRequest{})
	if err != nil {
		return Description{}, fromStatus(err)
	}
	c.exchange.Store(r.GetExchange())
	c.wsBatch.Store(r.GetWebsocketBatch())
	c.socket.set(r.GetExchangeSocket(), r.GetExchangeToken())
	return Description{ID: r.GetId(), Version: r.GetVersion(), HTTP: r.GetHttp(), WebSocket: r.GetWebsocket(), Operations: r.GetOperations()}, nil
}

// ServeHost brokers svc to the module once and returns the broker id to put in
// every Configuration. Call it once per process: go-plugin opens a listener per call.
// maxMsg is the largest message the service accepts or sends (see MaxMessageSize).
func (c *Client) ServeHost(svc HostService, maxMsg int) uint32 {
	id := c.broker.NextId()
	go c.broker.AcceptAndServe(id, func(opts []grpc.ServerOption) *grpc.Server {
		s := newServer(opts, maxMsg)
		pb.RegisterHostServer(s, &hostServer{svc: svc})
		return s
	})
	return id
}

// Configure delivers settings; hostBrokerID comes from ServeHost.
func (c *Client) Configure(ctx context.Context, cfg Configuration, hostBrokerID uint32) error {
	_, err := c.rpc.Configure(ctx, &pb.ConfigureRequest{
		ModuleId: cfg.ModuleID, Revision: cfg.Revision, Settings: cfg.Settings, DatabaseUrl: cfg.DatabaseURL,
		HostBrokerId: hostBrokerID, HostVersion: cfg.HostVersion, PublicUrl: cfg.PublicURL,
		MountPrefix: cfg.MountPrefix, AdminPrefix: cfg.AdminPrefix,
	})
	return fromStatus(err)
}

// Call runs a named operation.
func (c *Client) Call(ctx context.Context, call Call) ([]byte, error) {
	r, err := c.rpc.Call(ctx, &pb.CallRequest{Operation: call.Operation, Payload: call.Payload, Caller: callerToPB(call.Caller)})
	if err != nil {
		return nil, fromStatus(err)
	}
	return r.GetPayload(), nil
}

// ServeHTTP carries one HTTP exchange to the module: the body is sent in chunks while
// the response is received, each chunk written to w as it arrives. Memory in flight is
// bounded by gRPC flow control, whatever the body sizes.
func (c *Client) ServeHTTP(ctx context.Context, head RequestHead, body io.Reader, w ResponseWriter) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.ServeHTTP(ctx)
	if err != nil {
		return fromStatus(err)
	}
	err = stream.Send(&pb.HTTPRequestPart{Part: &pb.HTTPRequestPart_Head{Head: requestHeadToPB(head)}})
	if err != nil {
		return fromStatus(recvErr(stream, err))
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// A request body that fails to read (client gone) ends the exchange; a send
		// that fails because the module already answered is reported by Recv.
		if readErr := sendBody(stream, body); readErr != nil {
			cancel()
		}
	}()
	defer wg.Wait()

	wroteHead := false
	for {
		part, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if !wroteHead {
				return Errorf(CodeInternal, "module ended the response without a head")
			}
			return nil
		}
		if err != nil {
			return fromStatus(err)
		}
		switch p := part.GetPart().(type) {
		case *pb.HTTPResponsePart_Head:
			wroteHead = true
			if err := w.WriteHead(int(p.Head.GetStatus()), headerFromPB(p.Head.GetHeaders())); err != nil {
				return fmt.Errorf("write response head: %w", err)
			}
		case *pb.HTTPResponsePart_Body:
			if len(p.Body.GetData()) > 0 {
				if _, err := w.Write(p.Body.GetData()); err != nil {
					return fmt.Errorf("write response body: %w", err)
				}
			}
			if p.Body.GetFlush() {
				if err := w.Flush(); err != nil {
					return fmt.Errorf("flush response: %w", err)
				}
			}
		}
	}
}

// sendBody streams body to the module and half-closes the stream. It returns only a
// failure to read the body; a failed send means the module has answered already,
// which the receiving side reports.
func sendBody(stream pb.Plugin_ServeHTTPClient, body io.Reader) error {
	if body != nil {
		buf := make([]byte, chunkSize)
		for {
			n, err := body.Read(buf)
			if n > 0 {
				// Send encodes the message before returning, so buf can be reused.
				if stream.Send(&pb.HTTPRequestPart{Part: &pb.HTTPRequestPart_Body{Body: &pb.BodyChunk{Data: buf[:n]}}}) != nil {
					return nil
				}
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("read request body: %w", err)
			}
		}
	}
	_ = stream.CloseSend()
	return nil
}

// recvErr returns the real error when Send fails because the stream ended: gRPC
// reports io.EOF from Send and the status from Recv.
func recvErr(stream grpc.ClientStream, err error) error {
	if errors.Is(err, io.EOF) {
		if rerr := stream.RecvMsg(new(pb.HTTPResponsePart)); rerr != nil && !errors.Is(rerr, io.EOF) {
			return rerr
		}
	}
	return err
}

// ClientSocket is the host's end of a WebSocket carried to the module.
type ClientSocket interface {
	Socket
	// CloseSend says the host will send nothing more.
	CloseSend() error
}

// OpenWebSocket starts a WebSocket stream to the module. Cancel ctx to tear it down.
func (c *Client) OpenWebSocket(ctx context.Context, open WebSocketOpen) (ClientSocket, error) {
	stream, err := c.rpc.ServeWebSocket(ctx)
	if err != nil {
		return nil, fromStatus(err)
	}
	err = stream.Send(&pb.WebSocketFrame{Frame: &pb.WebSocketFrame_Open{Open: &pb.WebSocketOpen{
		Id: open.ID, Path: open.Path, Route: open.Route, Params: open.Params, RawQuery: open.RawQuery,
		Headers: headerToPB(open.Header), Caller: callerToPB(open.Caller), Batch: true,
	}}})
	if err != nil {
		return nil, fromStatus(err)
	}
	s := &clientSocket{stream: stream, recv: wsReceiver{recv: stream.Recv}}
	if c.wsBatch.Load() {
		s.batch = newWSSender(stream.Context(), func(f *pb.WebSocketFrame) error { return fromStatus(stream.Send(f)) })
	}
	return s, nil
}

type clientSocket struct {
	stream pb.Plugin_ServeWebSocketClient
	batch  *wsSender // nil when the module reads no batches
	recv   wsReceiver
}

func (s *clientSocket) Send(m Message) error {
	if s.batch != nil {
		return s.batch.Send(m)
	}
	f := messageToPB(m)
	if f == nil {
		return Errorf(CodeInvalidInput, "unknown message kind %d", m.Kind)
	}
	return fromStatus(s.stream.Send(f))
}

func (s *clientSocket) Recv() (Message, error) {
	m, err := s.recv.next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return Message{}, io.EOF
		}
		return Message{}, fromStatus(err)
	}
	return m, nil
}

// CloseSend sends what is queued, then says the host will send nothing more (on
// the sender's goroutine when there is one: gRPC forbids CloseSend during a Send).
func (s *clientSocket) CloseSend() error {
	if s.batch != nil {
		return s.batch.finish(s.stream.CloseSend)
	}
	return s.stream.CloseSend()
}
