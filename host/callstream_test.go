package host_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/sdk"
)

// number is a value of the test module's numbers and tick streams.
type number struct {
	I   int
	Pad string
}

// streamStats asks module id how its streaming operations went.
func streamStats(t *testing.T, s *site, id string) map[string]int64 {
	t.Helper()
	out, err := s.kit.Call(context.Background(), "tester", id, "stream_stats", nil)
	if err != nil {
		t.Fatalf("stream_stats of %s: %v", id, err)
	}
	var st map[string]int64
	decodeJSON(t, string(out), &st)
	return st
}

// relay has module from open target's streaming operation op through the host and
// returns the values it received (the first max, or all when max is 0).
func relay(ctx context.Context, s *site, from, target, op string, in any, max int) ([]json.RawMessage, error) {
	payload, _ := json.Marshal(map[string]any{"Target": target, "Op": op, "In": in, "Max": max})
	out, err := s.kit.Call(ctx, "tester", from, "relay", payload)
	if err != nil {
		return nil, err
	}
	var got []json.RawMessage
	if err := json.Unmarshal(out, &got); err != nil {
		return nil, fmt.Errorf("decode %s: %w", out, err)
	}
	return got, nil
}

// recvAll reads the stream to its end and returns the values and how it ended.
func recvAll(t *testing.T, cs *host.CallStream) ([]number, error) {
	t.Helper()
	var got []number
	for {
		data, err := cs.Recv()
		if err != nil {
			return got, err
		}
		var n number
		decodeJSON(t, string(data), &n)
		got = append(got, n)
	}
}

func expectInOrder(t *testing.T, what string, got []number, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%s: %d values, want %d", what, len(got), n)
	}
	for i, v := range got {
		if v.I != i {
			t.Fatalf("%s: value %d is number %d", what, i, v.I)
		}
	}
}

// Every value a streaming operation sends arrives, in order, then io.EOF; an error
// the operation ends with arrives after its values with its code; both to the host
// app's own code and, relayed by the host, to another module.
func TestCallStreamDeliversEveryValueInOrderThenTheEnd(t *testing.T) {
	s := startSite(t, kitOptions{ids: []string{"a", "b"}, enabled: []string{"a", "b"}})
	ctx := context.Background()
	before := scrapeKit(t, s.kit)

	cs, err := s.kit.CallStream(ctx, "alice", "b", "numbers", []byte(`{"N":2000,"Size":100}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := recvAll(t, cs)
	if err != io.EOF {
		t.Fatalf("stream ended with %v, want io.EOF", err)
	}
	expectInOrder(t, "numbers from the host app", got, 2000)
	if _, err := cs.Recv(); err != io.EOF {
		t.Fatalf("Recv after the end: %v, want io.EOF again", err)
	}
	cs.Close()

	// An operation that sends nothing and ends.
	cs, err = s.kit.CallStream(ctx, "alice", "b", "numbers", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Recv(); err != io.EOF {
		t.Fatalf("empty stream: %v, want io.EOF", err)
	}

	// An operation's error, after its values, with its code.
	cs, err = s.kit.CallStream(ctx, "alice", "b", "numbers", []byte(`{"N":3,"Code":"gone_fishing"}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err = recvAll(t, cs)
	expectInOrder(t, "numbers before the error", got, 3)
	var opErr *sdk.Error
	if !errors.As(err, &opErr) || opErr.Code != "gone_fishing" || opErr.Message != "stopped after 3" {
		t.Fatalf("stream ended with %v, want the operation's gone_fishing error", err)
	}
	if !errors.Is(err, &sdk.Error{Code: "gone_fishing"}) {
		t.Fatalf("errors.Is does not match the code: %v", err)
	}

	// Module a receives b's values through the host.
	raw, err := relay(ctx, s, "a", "b", "numbers", map[string]int{"N": 500}, 0)
	if err != nil {
		t.Fatal(err)
	}
	relayed := make([]number, len(raw))
	for i, r := range raw {
		decodeJSON(t, string(r), &relayed[i])
	}
	expectInOrder(t, "numbers relayed to a", relayed, 500)
	_, err = relay(ctx, s, "a", "b", "numbers", map[string]any{"N": 2, "Code": "gone_fishing"}, 0)
	if !errors.Is(err, &sdk.Error{Code: "gone_fishing"}) {
		t.Fatalf("relayed error: %v, want gone_fishing", err)
	}

	after := scrapeKit(t, s.kit)
	expectMoved(t, before, after, 3, "fiberkit_operation_calls_total", "module=b", "caller=host", "op=numbers", "kind=stream")
	expectMoved(t, before, after, 2, "fiberkit_operation_calls_total", "module=b", "caller=a", "op=numbers", "kind=stream")
	expectMoved(t, before, after, 1, "fiberkit_operation_errors_total", "module=b", "caller=host", "op=numbers", "kind=stream", "code=gone_fishing")
	expectMoved(t, before, after, 2, "fiberkit_operation_calls_total", "module=a", "caller=host", "op=relay", "kind=unary")
}

// Whatever the host refuses for a call it refuses for a stream, before it opens,
// with the same codes; and an input the operation cannot decode is refused before
// the operation runs.
func TestCallStreamRefusalsCarryTheirCodes(t *testing.T) {
	s := startSite(t, kitOptions{ids: []string{"a", "b", "off"}, enabled: []string{"a", "b"}})
	ctx := context.Background()
	for _, c := range []struct {
		what, target, op, in string
		want                 error
	}{
		{"unknown module", "nope", "numbers", `{}`, sdk.ErrUnknownModule},
		{"disabled module", "off", "numbers", `{}`, sdk.ErrModuleDisabled},
		{"unknown operation", "b", "no-such-stream", `{}`, sdk.ErrUnknownOperation},
		{"a unary operation", "b", "whoami", `{}`, sdk.ErrUnknownOperation},
		{"input that does not decode", "b", "numbers", `{"N":"many"}`, sdk.ErrInvalidInput},
	} {
		cs, err := s.kit.CallStream(ctx, "alice", c.target, c.op, []byte(c.in))
		if !errors.Is(err, c.want) || cs != nil {
			t.Errorf("%s, from the host app: %v, want %v", c.what, err, c.want)
		}
		var in any
		_ = json.Unmarshal([]byte(c.in), &in)
		if _, err := relay(ctx, s, "a", c.target, c.op, in, 0); !errors.Is(err, c.want) {
			t.Errorf("%s, from module a: %v, want %v", c.what, err, c.want)
		}
	}
	if got := streamStats(t, s, "b")["numbers_sent"]; got != 0 {
		t.Errorf("numbers ran for an input it could not decode (%d sent)", got)
	}
	// The manifest's callers list applies to streams: b may not, a may.
	if _, err := relay(ctx, s, "b", "a", "caller-guarded", nil, 0); !errors.Is(err, sdk.ErrForbidden) {
		t.Errorf("b, not listed: %v, want ErrForbidden", err)
	}
	if _, err := relay(ctx, s, "a", "b", "caller-guarded", nil, 0); err != nil {
		t.Errorf("a, listed: %v", err)
	}
}

// A plugin built before CallStream (the raw module implements transport.Module
// without it) answers Unimplemented, which callers see as an unknown operation.
func TestCallStreamToAPluginWithoutStreams(t *testing.T) {
	s := startRawSite(t, false)
	_, err := s.kit.CallStream(context.Background(), "alice", "rm", "anything", nil)
	if !errors.Is(err, sdk.ErrUnknownOperation) {
		t.Fatalf("stream to a plugin without CallStream: %v, want ErrUnknownOperation", err)
	}
}

// The operation learns its caller from the host: the calling module's id, or the
// host app's user.
func TestCallStreamTargetSeesTheCaller(t *testing.T) {
	s := startSite(t, kitOptions{ids: []string{"a", "b"}, enabled: []string{"a", "b"}})
	ctx := context.Background()
	raw, err := relay(ctx, s, "a", "b", "caller", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var seen sdk.Caller
	if len(raw) != 1 || json.Unmarshal(raw[0], &seen) != nil || seen.Plugin != "a" || seen.User != "" {
		t.Fatalf("b saw %s, want plugin a", raw)
	}
	cs, err := s.kit.CallStream(ctx, "alice", "b", "caller", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	data, err := cs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	seen = sdk.Caller{}
	decodeJSON(t, string(data), &seen)
	if seen.User != "alice" || seen.Plugin != "" {
		t.Fatalf("the host app's stream seen as %+v", seen)
	}
}

// A caller that goes away — the host app cancelling ctx or closing the stream, a
// module closing it — cancels the operation's context promptly.
func TestCallStreamCallerGoneCancelsTheOperation(t *testing.T) {
	s := startSite(t, kitOptions{ids: []string{"a", "b"}, enabled: []string{"a", "b"}})
	waitCancelled := func(what, id string, want int64) {
		t.Helper()
		start := time.Now()
		testsupport.Eventually(t, what+" to cancel the operation", func() bool {
			return streamStats(t, s, id)["ticks_cancelled"] == want
		})
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: the operation was cancelled only after %s", what, d)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cs, err := s.kit.CallStream(ctx, "alice", "b", "tick", nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := cs.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	waitCancelled("cancelling ctx", "b", 1)
	if _, err := cs.Recv(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv after cancel: %v, want context.Canceled", err)
	}

	cs, err = s.kit.CallStream(context.Background(), "alice", "b", "tick", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Recv(); err != nil {
		t.Fatal(err)
	}
	cs.Close()
	waitCancelled("Close", "b", 2)

	// Module a reads three ticks and closes its stream.
	if raw, err := relay(context.Background(), s, "a", "b", "tick", nil, 3); err != nil || len(raw) != 3 {
		t.Fatalf("relay of 3 ticks: %d, %v", len(raw), err)
	}
	waitCancelled("a module's Close", "b", 3)
	if st := streamStats(t, s, "b"); st["ticks_started"] != 3 {
		t.Fatalf("b started %d tick streams, want 3", st["ticks_started"])
	}
	// The host's part of the relay ends with it: the relay is measured, not leaked.
	testsupport.Eventually(t, "the stream metrics to see three tick streams end", func() bool {
		return scrapeKit(t, s.kit).Value("fiberkit_operation_duration_seconds", "module=b", "op=tick", "kind=stream") == 3
	})
	if v := scrapeKit(t, s.kit).Value("fiberkit_operation_errors_total", "module=b", "op=tick"); v != 0 {
		t.Errorf("streams their callers ended counted %v errors", v)
	}
}

// A plugin killed mid-stream ends its callers' streams promptly with
// module_unavailable, whether the caller is the host app or another module; a
// calling module killed mid-stream cancels the operation it was reading.
func TestCallStreamPluginKilledMidStream(t *testing.T) {
	s := startSite(t, kitOptions{ids: []string{"a", "b"}, enabled: []string{"a", "b"}})
	ctx := context.Background()
	kill := func(id string) {
		t.Helper()
		pid := s.waitState(t, id, host.StateRunning).PID
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	within := func(what string, d time.Duration, f func() error) error {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- f() }()
		select {
		case err := <-done:
			return err
		case <-time.After(d):
			t.Fatalf("%s: no answer within %s", what, d)
			return nil
		}
	}

	// The host app reading b's ticks.
	cs, err := s.kit.CallStream(ctx, "alice", "b", "tick", nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := cs.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	kill("b")
	err = within("the host app's Recv after b was killed", 5*time.Second, func() error {
		for {
			if _, err := cs.Recv(); err != nil {
				return err
			}
		}
	})
	if !errors.Is(err, sdk.ErrModuleDown) {
		t.Fatalf("Recv after b was killed: %v, want module_unavailable", err)
	}
	restarted := func(n int) func() bool {
		return func() bool {
			m, _ := s.kit.Module("b")
			return m.State == host.StateRunning && m.Restarts == n
		}
	}
	testsupport.Eventually(t, "b to be restarted", restarted(1))

	// Module a relaying b's ticks.
	relayed := make(chan error, 1)
	go func() {
		_, err := relay(ctx, s, "a", "b", "tick", nil, 0)
		relayed <- err
	}()
	testsupport.Eventually(t, "a's relay to start b's ticks", func() bool { return streamStats(t, s, "b")["ticks_started"] == 1 })
	kill("b")
	err = within("a's relay after b was killed", 5*time.Second, func() error { return <-relayed })
	if !errors.Is(err, sdk.ErrModuleDown) {
		t.Fatalf("relay after b was killed: %v, want module_unavailable", err)
	}
	testsupport.Eventually(t, "b to be restarted again", restarted(2))

	// The calling module killed while relaying: b's operation is cancelled.
	go func() {
		_, err := relay(ctx, s, "a", "b", "tick", nil, 0)
		relayed <- err
	}()
	testsupport.Eventually(t, "a's relay to start b's ticks", func() bool { return streamStats(t, s, "b")["ticks_started"] == 1 })
	kill("a")
	if err := within("the host app's call to a", 5*time.Second, func() error { return <-relayed }); !errors.Is(err, sdk.ErrModuleDown) {
		t.Fatalf("call to a killed mid-relay: %v, want module_unavailable", err)
	}
	start := time.Now()
	testsupport.Eventually(t, "b's operation to be cancelled once its caller died", func() bool {
		return streamStats(t, s, "b")["ticks_cancelled"] == 1
	})
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("b's operation was cancelled %s after its caller died", d)
	}
}

// A receiver that does not read holds the sender back: the values in flight are
// bounded by flow control, far below what the operation wants to send, and nothing
// is lost once the receiver reads.
func TestCallStreamSlowReceiverHoldsTheSenderBack(t *testing.T) {
	s := startSite(t, kitOptions{ids: []string{"b"}, enabled: []string{"b"}})
	const total, size = 4000, 16 << 10 // 64 MB
	cs, err := s.kit.CallStream(context.Background(), "alice", "b", "numbers", fmt.Appendf(nil, `{"N":%d,"Size":%d}`, total, size))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	time.Sleep(2 * time.Second)
	stalled := streamStats(t, s, "b")["numbers_sent"]
	time.Sleep(time.Second)
	still := streamStats(t, s, "b")["numbers_sent"]
	t.Logf("with the receiver not reading, b sent %d of %d values (%d KB) and stopped", still, total, still*size>>10)
	if stalled == 0 || still != stalled || still > total/20 {
		t.Fatalf("b sent %d, then %d values of %d to a receiver that does not read: want a small number that stays put", stalled, still, total)
	}
	got, err := recvAll(t, cs)
	if err != io.EOF {
		t.Fatalf("stream ended with %v", err)
	}
	expectInOrder(t, "numbers read late", got, total)
}
