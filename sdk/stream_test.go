package sdk

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/fiberkit/fiberkit/sdk/transport"
)

// sink records what a streaming operation accepted and sent.
type sink struct {
	mu       sync.Mutex
	accepted bool
	sent     []string
}

func (s *sink) Accept() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accepted = true
	return nil
}

func (s *sink) Send(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.accepted {
		return errors.New("send before accept")
	}
	s.sent = append(s.sent, string(p))
	return nil
}

type countIn struct{ N int }

func TestStreamOpSendsJSONAfterAccepting(t *testing.T) {
	op := StreamOp(func(ctx context.Context, in countIn, send func(map[string]int) error) error {
		for i := range in.N {
			if err := send(map[string]int{"i": i}); err != nil {
				return err
			}
		}
		return nil
	})
	var s sink
	if err := op.stream(context.Background(), []byte(`{"N":3}`), &s); err != nil {
		t.Fatal(err)
	}
	if want := []string{`{"i":0}`, `{"i":1}`, `{"i":2}`}; !slices.Equal(s.sent, want) {
		t.Fatalf("sent %q, want %q", s.sent, want)
	}
}

func TestStreamOpRefusesInputThatDoesNotDecode(t *testing.T) {
	ran := false
	op := StreamOp(func(ctx context.Context, in countIn, send func(int) error) error { ran = true; return nil })
	var s sink
	err := op.stream(context.Background(), []byte(`{"N":"three"}`), &s)
	if !errors.Is(err, ErrInvalidInput) || ran || s.accepted {
		t.Fatalf("err %v, ran %v, accepted %v: want invalid_input before fn runs or the stream opens", err, ran, s.accepted)
	}
}

func TestStreamOpSendIsSafeConcurrentlyAndEndsWithTheOperation(t *testing.T) {
	var late func(int) error
	op := StreamOp(func(ctx context.Context, _ struct{}, send func(int) error) error {
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 50 {
					_ = send(g*100 + i)
				}
			}()
		}
		wg.Wait()
		late = send
		return nil
	})
	var s sink
	if err := op.stream(context.Background(), nil, &s); err != nil {
		t.Fatal(err)
	}
	if len(s.sent) != 400 {
		t.Fatalf("%d values sent, want 400", len(s.sent))
	}
	if err := late(1); err == nil {
		t.Fatal("send after the operation returned succeeded")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	op = StreamOp(func(ctx context.Context, _ struct{}, send func(int) error) error { return send(1) })
	if err := op.stream(ctx, nil, &sink{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("send on a cancelled stream: %v", err)
	}
}

func TestAdapterServesStreamsByName(t *testing.T) {
	a := newAdapter(Module{
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Operations: Operations{"get": Op(func(ctx context.Context, _ struct{}) (int, error) { return 1, nil })},
		Streams: Streams{
			"who": StreamOp(func(ctx context.Context, _ struct{}, send func(Caller) error) error { return send(CallerFrom(ctx)) }),
			"boom": StreamOp(func(ctx context.Context, _ struct{}, send func(int) error) error {
				panic("boom")
			}),
		},
	})
	d, _ := a.Describe(context.Background())
	if want := []string{"boom", "get", "who"}; !slices.Equal(d.Operations, want) {
		t.Fatalf("described %q, want %q", d.Operations, want)
	}
	var s sink
	if err := a.CallStream(context.Background(), transport.Call{Operation: "who", Caller: transport.Caller{Plugin: "p"}}, &s); err != nil {
		t.Fatal(err)
	}
	if len(s.sent) != 1 || s.sent[0] != `{"plugin":"p"}` {
		t.Fatalf("who sent %q", s.sent)
	}
	if err := a.CallStream(context.Background(), transport.Call{Operation: "get"}, &sink{}); !errors.Is(err, ErrUnknownOperation) {
		t.Fatalf("a unary operation as a stream: %v", err)
	}
	if err := a.CallStream(context.Background(), transport.Call{Operation: "boom"}, &sink{}); !errors.Is(err, &Error{Code: CodeInternal}) {
		t.Fatalf("a panicking stream: %v", err)
	}
}
