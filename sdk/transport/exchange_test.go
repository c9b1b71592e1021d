package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/fiberkit/fiberkit/sdk/transport/pluginv1"
)

// fakeModule serves HTTP by path and echoes WebSockets.
type fakeModule struct {
	mu   sync.Mutex
	ctxs []context.Context // the context of each HTTP exchange, in order

	release chan struct{} // /late-head and /late-body wait on it
}

func (f *fakeModule) Describe(context.Context) (Description, error) {
	return Description{HTTP: true, WebSocket: true}, nil
}
func (f *fakeModule) Configure(context.Context, Configuration) error { return nil }
func (f *fakeModule) Call(context.Context, Call) ([]byte, error)     { return nil, ErrUnimplemented }

func (f *fakeModule) ServeHTTP(ctx context.Context, head RequestHead, body io.Reader, w ResponseWriter) error {
	f.mu.Lock()
	f.ctxs = append(f.ctxs, ctx)
	f.mu.Unlock()
	switch head.Path {
	case "/echo":
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		if err := w.WriteHead(201, http.Header{"X-Method": {head.Method}}); err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	case "/big":
		_ = w.WriteHead(200, nil)
		_, err := w.Write(bytes.Repeat([]byte("b"), 3*chunkSize+10))
		return err
	case "/flush":
		_, _ = w.Write([]byte("first"))
		if err := w.Flush(); err != nil {
			return err
		}
		_, err := w.Write([]byte("second"))
		return err
	case "/hang":
		<-ctx.Done()
		return ctx.Err()
	case "/late-head", "/late-body":
		// A long-poll: the head (and a first piece of body) at once, the rest later.
		if err := w.WriteHead(202, http.Header{"X-Late": {"yes"}}); err != nil {
			return err
		}
		if head.Path == "/late-body" {
			_, _ = w.Write([]byte("partial "))
		}
		select {
		case <-f.release:
		case <-ctx.Done():
			return ctx.Err()
		}
		_, err := w.Write([]byte("done"))
		return err
	case "/fail":
		_, _ = w.Write([]byte("lost"))
		return Errorf(CodeInvalidInput, "bad")
	}
	return ErrUnimplemented
}

func (f *fakeModule) ServeWebSocket(ctx context.Context, open WebSocketOpen, s Socket) error {
	for {
		m, err := s.Recv()
		if err != nil {
			return nil
		}
		if err := s.Send(m); err != nil {
			return err
		}
		if m.Kind == Close {
			return nil
		}
	}
}

// startFake serves a fakeModule over gRPC on loopback and returns the host's client.
// A head the handler wrote waits for the rest of the response as long as it takes
// (the tests of whole responses do not depend on timing); startFakeDelay sets that.
func startFake(t testing.TB) (*Client, *fakeModule) {
	t.Helper()
	return startFakeDelay(t, time.Hour)
}

// lane is a way exchanges travel: the module's exchange socket, or gRPC streams only.
type lane struct {
	name     string
	grpcOnly bool
}

var lanes = []lane{{"socket", false}, {"grpc", true}}

// forEachLane runs test once per lane, against a fake module serving that way with
// the given head delay.
func forEachLane(t *testing.T, headDelay time.Duration, test func(t *testing.T, c *Client, f *fakeModule)) {
	for _, l := range lanes {
		t.Run(l.name, func(t *testing.T) {
			c, f := startFakeOn(t, headDelay, l.grpcOnly)
			_, onSocket := c.socket.get()
			if onSocket == nil != l.grpcOnly {
				t.Fatalf("lane %s: exchange socket offered = %v", l.name, onSocket != nil)
			}
			test(t, c, f)
		})
	}
}

func startFakeDelay(t testing.TB, headDelay time.Duration) (*Client, *fakeModule) {
	t.Helper()
	return startFakeOn(t, headDelay, false)
}

// startFakeOn is startFakeDelay, with exchanges over gRPC only when grpcOnly.
func startFakeOn(t testing.TB, headDelay time.Duration, grpcOnly bool) (*Client, *fakeModule) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeModule{release: make(chan struct{})}
	srv := grpc.NewServer()
	pb.RegisterPluginServer(srv, &server{impl: f, headDelay: headDelay, noSocket: grpcOnly})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	c := &Client{rpc: pb.NewPluginClient(cc)}
	if _, err := c.Describe(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !c.CanExchange() || !c.wsBatch.Load() {
		t.Fatal("the transport's server does not offer Exchange and WebSocket batches")
	}
	return c, f
}

// readAll collects an exchange's response.
func readAll(t *testing.T, x *Exchange) (ResponsePart, []ResponsePart, []byte, error) {
	t.Helper()
	var parts []ResponsePart
	var body []byte
	for {
		p, err := x.Next()
		if err != nil {
			if len(parts) == 0 {
				return ResponsePart{}, nil, nil, err
			}
			return parts[0], parts, body, err
		}
		parts = append(parts, p)
		body = append(body, p.Body...)
		if p.End {
			return parts[0], parts, body, nil
		}
	}
}

func TestExchangeAnswersWholeResponsesInOnePartOnOneStream(t *testing.T) {
	forEachLane(t, time.Hour, func(t *testing.T, c *Client, f *fakeModule) {
		for i := 0; i < 3; i++ {
			x, err := c.StartExchange(RequestHead{Method: "POST", Path: "/echo"}, []byte("hello"))
			if err != nil {
				t.Fatal(err)
			}
			first, parts, body, err := readAll(t, x)
			if err != nil {
				t.Fatal(err)
			}
			if len(parts) != 1 || !first.HasHead || !first.End || first.Status != 201 || first.Header.Get("X-Method") != "POST" || string(body) != "hello" {
				t.Fatalf("exchange %d: %d parts, first %+v, body %q", i, len(parts), first, body)
			}
		}
		// One stream carried all three: the handler saw the same stream context.
		if len(f.ctxs) != 3 || f.ctxs[0] != f.ctxs[1] || f.ctxs[1] != f.ctxs[2] {
			t.Fatalf("exchanges did not share a pooled stream (%d contexts)", len(f.ctxs))
		}
	})
}

func TestExchangeStreamsLargeAndFlushedResponses(t *testing.T) {
	forEachLane(t, time.Hour, func(t *testing.T, c *Client, _ *fakeModule) {
		x, err := c.StartExchange(RequestHead{Method: "GET", Path: "/big"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, parts, body, err := readAll(t, x)
		if err != nil {
			t.Fatal(err)
		}
		if len(body) != 3*chunkSize+10 || len(parts) < 4 {
			t.Fatalf("big response: %d bytes in %d parts", len(body), len(parts))
		}
		for _, p := range parts {
			if len(p.Body) > chunkSize {
				t.Fatalf("a part of %d bytes, more than a chunk", len(p.Body))
			}
		}
		x, err = c.StartExchange(RequestHead{Method: "GET", Path: "/flush"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		first, parts, body, err := readAll(t, x)
		if err != nil {
			t.Fatal(err)
		}
		if len(parts) != 2 || !first.Flush || first.End || string(first.Body) != "first" || string(body) != "firstsecond" || first.Status != 200 {
			t.Fatalf("flushed response: %+v", parts)
		}
	})
}

// A handler that writes its head and then waits (a long-poll) has its head, and what
// body it buffered, sent after the head delay without waiting for the handler: the
// host sees an answer before its head timeout. The rest follows when the handler
// writes again; the stream then serves whole responses in one part as before.
func TestExchangeSendsAHeadLeftWaiting(t *testing.T) {
	forEachLane(t, defaultHeadDelay, func(t *testing.T, c *Client, f *fakeModule) {
		for _, path := range []string{"/late-head", "/late-body"} {
			x, err := c.StartExchange(RequestHead{Method: "GET", Path: path}, nil)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			first, err := x.Next()
			if err != nil {
				t.Fatal(err)
			}
			wantBody := ""
			if path == "/late-body" {
				wantBody = "partial "
			}
			if !first.HasHead || first.End || first.Status != 202 || first.Header.Get("X-Late") != "yes" || string(first.Body) != wantBody {
				t.Fatalf("%s: first part %+v", path, first)
			}
			t.Logf("%s: head after %v", path, time.Since(start))
			f.release <- struct{}{}
			_, parts, body, err := readAll(t, x)
			if err != nil {
				t.Fatal(err)
			}
			if string(body) != "done" || parts[0].HasHead || !parts[len(parts)-1].End {
				t.Fatalf("%s: rest %+v", path, parts)
			}
		}
		// A handler preempted for longer than the delay between its head and its return
		// sends two parts, which is correct too: most must still be one part.
		single := 0
		for i := 0; i < 20; i++ {
			x, err := c.StartExchange(RequestHead{Method: "POST", Path: "/echo"}, []byte("whole"))
			if err != nil {
				t.Fatal(err)
			}
			first, parts, body, err := readAll(t, x)
			if err != nil {
				t.Fatal(err)
			}
			if !first.HasHead || first.Status != 201 || string(body) != "whole" || !parts[len(parts)-1].End {
				t.Fatalf("whole response %d after late heads: %+v", i, parts)
			}
			if len(parts) == 1 {
				single++
			}
		}
		if single < 10 {
			t.Fatalf("only %d of 20 whole responses after late heads came in one part", single)
		}
	})
}

func TestExchangeErrorsAndAbort(t *testing.T) {
	forEachLane(t, time.Hour, func(t *testing.T, c *Client, f *fakeModule) {
		x, err := c.StartExchange(RequestHead{Method: "GET", Path: "/nothing"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := readAll(t, x); !errors.Is(err, ErrUnimplemented) {
			t.Fatalf("unimplemented: %v", err)
		}
		// A failed handler's unsent output is dropped: no head, the error's code.
		x, err = c.StartExchange(RequestHead{Method: "GET", Path: "/fail"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		p, err := x.Next()
		var op *OpError
		if !errors.As(err, &op) || op.Code != CodeInvalidInput || p.HasHead || len(p.Body) > 0 {
			t.Fatalf("failed handler: %+v %v", p, err)
		}
		// Abort cancels the handler and the stream is not reused.
		x, err = c.StartExchange(RequestHead{Method: "GET", Path: "/hang"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(100*time.Millisecond, x.Abort)
		if _, err := x.Next(); !errors.Is(err, context.Canceled) {
			t.Fatalf("aborted exchange: %v", err)
		}
		f.mu.Lock()
		hung := f.ctxs[len(f.ctxs)-1]
		f.mu.Unlock()
		select {
		case <-hung.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the handler's context was not cancelled")
		}
		x, err = c.StartExchange(RequestHead{Method: "POST", Path: "/echo"}, []byte("after"))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, body, err := readAll(t, x); err != nil || string(body) != "after" {
			t.Fatalf("after abort: %q %v", body, err)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if last := f.ctxs[len(f.ctxs)-1]; last == hung || last.Err() != nil {
			t.Fatal("the aborted stream was reused")
		}
	})
}

func TestWebSocketBatchesKeepMessagesAndOrder(t *testing.T) {
	c, _ := startFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sock, err := c.OpenWebSocket(ctx, WebSocketOpen{ID: "x", Path: "/ws"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	want := make([]Message, 0, n+2)
	for i := 0; i < n; i++ {
		m := Message{Kind: Text, Data: []byte(strings.Repeat(string(rune('a'+i%26)), 1+i%100))}
		if i%7 == 0 {
			m.Kind = Binary
		}
		if i == n/2 {
			m.Data = bytes.Repeat([]byte("B"), batchMessageMax+1) // sent alone
		}
		want = append(want, m)
	}
	want = append(want, Message{Kind: Text, Data: []byte{}}, Message{Kind: Close, Code: 1000, Reason: "bye"})
	go func() {
		buf := make([]byte, 0, 128)
		for _, m := range want {
			// The sender reuses its buffer: queued messages must not change.
			if len(m.Data) <= 100 {
				buf = append(buf[:0], m.Data...)
				m.Data = buf
			}
			if err := sock.Send(m); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i, w := range want {
		got, err := sock.Recv()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if got.Kind != w.Kind || !bytes.Equal(got.Data, w.Data) || got.Code != w.Code || got.Reason != w.Reason {
			t.Fatalf("message %d: got %v %q, want %v %q", i, got.Kind, trunc(got.Data), w.Kind, trunc(w.Data))
		}
	}
}

func trunc(b []byte) []byte { return b[:min(len(b), 20)] }

func TestWSSenderBatchesWhatIsQueued(t *testing.T) {
	gate := make(chan struct{})
	var mu sync.Mutex
	var frames []*pb.WebSocketFrame
	s := newWSSender(context.Background(), func(f *pb.WebSocketFrame) error {
		<-gate
		mu.Lock()
		frames = append(frames, f)
		mu.Unlock()
		return nil
	})
	for i := 0; i < 50; i++ {
		if err := s.Send(Message{Kind: Text, Data: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	close(gate)
	if err := s.finish(nil); err != nil {
		t.Fatal(err)
	}
	r := wsReceiver{recv: func() (*pb.WebSocketFrame, error) {
		if len(frames) == 0 {
			return nil, io.EOF
		}
		f := frames[0]
		frames = frames[1:]
		return f, nil
	}}
	mu.Lock()
	nFrames := len(frames)
	mu.Unlock()
	if nFrames >= 50 {
		t.Fatalf("50 queued messages went out in %d frames", nFrames)
	}
	for i := 0; i < 50; i++ {
		m, err := r.next()
		if err != nil || m.Kind != Text || len(m.Data) != 1 || m.Data[0] != byte(i) {
			t.Fatalf("message %d: %+v %v", i, m, err)
		}
	}
	if _, err := r.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last message: %v", err)
	}
}

// A small request answered whole, one exchange at a time (what kitbench's route p50
// measures, without HTTP around it).
func BenchmarkExchangeWholeResponse(b *testing.B) {
	c, _ := startFakeDelay(b, defaultHeadDelay)
	body := []byte("hello")
	for b.Loop() {
		x, err := c.StartExchange(RequestHead{Method: "POST", Path: "/echo"}, body)
		if err != nil {
			b.Fatal(err)
		}
		if p, err := x.Next(); err != nil || !p.End {
			b.Fatalf("%+v %v", p, err)
		}
	}
}
