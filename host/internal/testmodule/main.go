// Command testmodule is the module the host kit's tests load: it exercises every
// capability of the protocol (streamed bodies both ways, server-sent events, headers,
// panics, WebSockets with close codes and concurrent writers, operations, settings,
// calls to other modules, streaming operations and relaying another module's, its
// own Prometheus metrics). It has no ID of its own, so a test can load it twice.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/fiberkit/fiberkit/sdk"
)

type state struct {
	mu        sync.Mutex
	settings  sdk.Settings
	revision  int64
	host      *sdk.Host
	lastClose string
	gates     sync.Map // "gate/n" → chan closed when the test has seen SSE event n

	// The flood command's progress: messages the host took, and how it ended.
	floodSent atomic.Int64
	floodEnd  atomic.Pointer[string]

	// The streaming operations' progress: values numbers sent (since it last
	// started), tick streams started and those whose context was cancelled.
	numbersSent    atomic.Int64
	ticksStarted   atomic.Int64
	ticksCancelled atomic.Int64
}

func main() {
	st := &state{}
	// The module's own metrics. counted carries a label named "module", which the
	// host must keep apart from its own; fiberkit_module_restarts_total is a name the
	// kit owns and must drop.
	reg := prometheus.NewRegistry()
	counted := promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "testmodule_counted_total", Help: "What the count operation was asked to add.",
	}, []string{"module"})
	promauto.With(reg).NewCounter(prometheus.CounterOpts{
		Name: "fiberkit_module_restarts_total", Help: "A name that belongs to the kit.",
	}).Add(99)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "pong") })
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, map[string]any{"bytes": n, "sha256": hex.EncodeToString(h.Sum(nil))})
	})
	mux.HandleFunc("GET /download", func(w http.ResponseWriter, r *http.Request) {
		size, _ := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
		w.Header().Set("Content-Type", "application/octet-stream")
		buf := make([]byte, 64<<10)
		for i := range buf {
			buf[i] = byte(i % 251)
		}
		for size > 0 {
			n := min(int64(len(buf)), size)
			if _, err := w.Write(buf[:n]); err != nil {
				return
			}
			size -= n
		}
	})
	mux.HandleFunc("GET /sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		f := w.(http.Flusher)
		for i := 1; i <= 3; i++ {
			fmt.Fprintf(w, "data: event %d\n\n", i)
			f.Flush()
			// Wait for the test to say it saw the event, so "arrives before the end"
			// is shown by the protocol itself rather than by timing.
			if i < 3 {
				select {
				case <-r.Context().Done():
					return
				case <-st.gate(r.URL.Query().Get("gate"), i):
				}
			}
		}
	})
	mux.HandleFunc("POST /sse-gate", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		st.open(r.URL.Query().Get("gate"), n)
	})
	// A long-poll: the status at once (X-Answered says when, as UnixNano), the body
	// after wait.
	mux.HandleFunc("GET /longpoll", func(w http.ResponseWriter, r *http.Request) {
		wait, _ := time.ParseDuration(r.URL.Query().Get("wait"))
		w.Header().Set("X-Answered", strconv.FormatInt(time.Now().UnixNano(), 10))
		w.WriteHeader(http.StatusAccepted)
		select {
		case <-time.After(wait):
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "done")
	})
	mux.HandleFunc("GET /headers", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "a", Value: "1", Path: "/"})
		http.SetCookie(w, &http.Cookie{Name: "b", Value: "2", Path: "/"})
		w.Header().Add("X-Multi", "one")
		w.Header().Add("X-Multi", "two")
		w.WriteHeader(http.StatusCreated)
		writeJSON(w, map[string]any{"header": r.Header, "caller": sdk.CallerFrom(r.Context()), "remote": r.RemoteAddr})
	})
	mux.HandleFunc("GET /status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(sdk.Param(r, "code"))
		w.WriteHeader(code)
		io.WriteString(w, "status "+sdk.Param(r, "code"))
	})
	mux.HandleFunc("GET /panic", func(w http.ResponseWriter, r *http.Request) { panic("boom") })
	mux.HandleFunc("GET /settings", func(w http.ResponseWriter, r *http.Request) {
		st.mu.Lock()
		defer st.mu.Unlock()
		writeJSON(w, map[string]any{"revision": st.revision, "settings": st.settings})
	})
	mux.HandleFunc("GET /lastclose", func(w http.ResponseWriter, r *http.Request) {
		st.mu.Lock()
		defer st.mu.Unlock()
		io.WriteString(w, st.lastClose)
	})
	mux.HandleFunc("GET /flood", func(w http.ResponseWriter, r *http.Request) {
		end := st.floodEnd.Load()
		writeJSON(w, map[string]any{"sent": st.floodSent.Load(), "ended": end != nil, "end": end})
	})
	// An admin form that changes the module's settings through the host: a forged
	// POST must never get here.
	mux.HandleFunc("POST /admin-set", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		changes := map[string]string{}
		for k, v := range r.PostForm {
			if k != "_csrf" {
				changes[k] = v[0]
			}
		}
		if err := st.getHost().SetSettings(r.Context(), changes); err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		writeJSON(w, map[string]any{"saved": len(changes)})
	})
	mux.HandleFunc("GET /admin-page", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"caller": sdk.CallerFrom(r.Context()), "csrf": r.Header.Get("X-Csrf-Token")})
	})

	sdk.Serve(sdk.Module{
		HTTP: mux,
		WebSockets: map[string]sdk.WebSocketHandler{
			"/ws":        st.echo,
			"/ws-public": st.echo,
			"/ws-reject": func(ctx context.Context, c *sdk.Conn) error {
				return c.Reject(http.StatusForbidden, "no entry: "+c.Query().Get("why"))
			},
		},
		Operations: sdk.Operations{
			"whoami": sdk.Op(func(ctx context.Context, _ struct{}) (sdk.Caller, error) { return sdk.CallerFrom(ctx), nil }),
			// whoami-guarded is whoami behind a callers list in the manifest.
			"whoami-guarded": sdk.Op(func(ctx context.Context, _ struct{}) (sdk.Caller, error) { return sdk.CallerFrom(ctx), nil }),
			"call": sdk.Op(func(ctx context.Context, in struct{ Target, Op string }) (json.RawMessage, error) {
				var out json.RawMessage
				err := st.getHost().Call(ctx, in.Target, in.Op, struct{}{}, &out)
				return out, err
			}),
			"set": sdk.Op(func(ctx context.Context, in map[string]string) (bool, error) {
				return true, st.getHost().SetSettings(ctx, in)
			}),
			// echo returns its input: large payloads test the message size limits.
			"echo": sdk.Op(func(ctx context.Context, in string) (string, error) { return in, nil }),
			// bigcall sends a payload of Size bytes to Target's echo through the host.
			"bigcall": sdk.Op(func(ctx context.Context, in struct {
				Target string
				Size   int
			}) (int, error) {
				var out string
				err := st.getHost().Call(ctx, in.Target, "echo", strings.Repeat("x", in.Size), &out)
				return len(out), err
			}),
			// env reports the process environment, to check what the host passes on.
			"env": sdk.Op(func(ctx context.Context, _ struct{}) ([]string, error) { return os.Environ(), nil }),
			// count adds N to testmodule_counted_total{module=Label}.
			"count": sdk.Op(func(ctx context.Context, in struct {
				N     int
				Label string
			}) (bool, error) {
				counted.WithLabelValues(in.Label).Add(float64(in.N))
				return true, nil
			}),
			"stream_stats": sdk.Op(func(ctx context.Context, _ struct{}) (map[string]int64, error) {
				return map[string]int64{
					"numbers_sent": st.numbersSent.Load(), "ticks_started": st.ticksStarted.Load(), "ticks_cancelled": st.ticksCancelled.Load(),
				}, nil
			}),
			// relay opens Target's streaming operation Op with input In through the
			// host and returns the values it received: all of them, or the first Max
			// (then it closes the stream).
			"relay": sdk.Op(func(ctx context.Context, in struct {
				Target, Op string
				In         json.RawMessage
				Max        int
			}) ([]json.RawMessage, error) {
				s, err := st.getHost().CallStream(ctx, in.Target, in.Op, in.In)
				if err != nil {
					return nil, err
				}
				defer s.Close()
				got := []json.RawMessage{}
				for in.Max == 0 || len(got) < in.Max {
					var v json.RawMessage
					if err := s.Recv(&v); err == io.EOF {
						break
					} else if err != nil {
						return nil, err
					}
					got = append(got, v)
				}
				return got, nil
			}),
			"audit": sdk.Op(func(ctx context.Context, in struct{ Action, Actor string }) (bool, error) {
				return true, st.getHost().Audit(ctx, in.Action, in.Actor, map[string]any{"via": "testmodule"})
			}),
		},
		Streams: sdk.Streams{
			// numbers sends N numbered values (each padded with Size bytes), then
			// ends, with an error of code Code if one is given.
			"numbers": sdk.StreamOp(st.numbers),
			// caller sends who is calling, once.
			"caller": sdk.StreamOp(func(ctx context.Context, _ struct{}, send func(sdk.Caller) error) error {
				return send(sdk.CallerFrom(ctx))
			}),
			// caller-guarded is caller behind a callers list in the manifest.
			"caller-guarded": sdk.StreamOp(func(ctx context.Context, _ struct{}, send func(sdk.Caller) error) error {
				return send(sdk.CallerFrom(ctx))
			}),
			// tick sends a value every 5 ms until its context is cancelled, which
			// stream_stats then counts.
			"tick": sdk.StreamOp(st.tick),
		},
		Metrics: reg,
		Configure: func(ctx context.Context, env *sdk.Env) error {
			// greeting "sleep:DURATION" makes Configure slow, for the supervisor tests.
			if d, err := time.ParseDuration(strings.TrimPrefix(env.Settings["greeting"], "sleep:")); err == nil {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			st.mu.Lock()
			defer st.mu.Unlock()
			st.settings, st.revision, st.host = env.Settings, env.Revision, env.Host
			return nil
		},
	})
}

type number struct {
	I   int
	Pad string `json:",omitempty"`
}

func (st *state) numbers(ctx context.Context, in struct {
	N, Size int
	Code    string
}, send func(number) error) error {
	st.numbersSent.Store(0)
	pad := strings.Repeat("x", in.Size)
	for i := range in.N {
		if err := send(number{I: i, Pad: pad}); err != nil {
			return err
		}
		st.numbersSent.Add(1)
	}
	if in.Code != "" {
		return sdk.Errorf(in.Code, "stopped after %d", in.N)
	}
	return nil
}

func (st *state) tick(ctx context.Context, _ struct{}, send func(number) error) error {
	st.ticksStarted.Add(1)
	defer func() {
		if ctx.Err() != nil {
			st.ticksCancelled.Add(1)
		}
	}()
	for i := 0; ; i++ {
		if err := send(number{I: i}); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (st *state) getHost() *sdk.Host {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.host
}

// echo echoes messages; a few text commands drive the tests.
func (st *state) echo(ctx context.Context, c *sdk.Conn) error {
	for {
		t, data, err := c.ReadMessage()
		if err != nil {
			if ce, ok := err.(*sdk.CloseError); ok {
				st.mu.Lock()
				st.lastClose = fmt.Sprintf("%d %s", ce.Code, ce.Reason)
				st.mu.Unlock()
			}
			return nil
		}
		msg := string(data)
		switch {
		case t == sdk.TextMessage && strings.HasPrefix(msg, "close:"):
			// close:CODE:REASON
			parts := strings.SplitN(msg, ":", 3)
			code, _ := strconv.Atoi(parts[1])
			return c.Close(code, parts[2])
		case t == sdk.TextMessage && strings.HasPrefix(msg, "seq:"):
			n, _ := strconv.Atoi(msg[4:])
			for i := 0; i < n; i++ {
				if err := c.WriteText(strconv.Itoa(i)); err != nil {
					return nil
				}
			}
		case t == sdk.TextMessage && strings.HasPrefix(msg, "concurrent:"):
			// Several goroutines writing at once must be safe. They start together, and
			// the reply says how many were inside a write at the same time at most, so
			// the test knows the writes did overlap.
			n, _ := strconv.Atoi(msg[len("concurrent:"):])
			const writers = 8
			var ready, wg sync.WaitGroup
			var inFlight, maxInFlight atomic.Int64
			start := make(chan struct{})
			for g := 0; g < writers; g++ {
				ready.Add(1)
				wg.Add(1)
				go func() {
					defer wg.Done()
					ready.Done()
					<-start
					for i := 0; i < n; i++ {
						cur := inFlight.Add(1)
						for m := maxInFlight.Load(); cur > m && !maxInFlight.CompareAndSwap(m, cur); m = maxInFlight.Load() {
						}
						_ = c.WriteText(fmt.Sprintf("g%d-%d", g, i))
						inFlight.Add(-1)
					}
				}()
			}
			ready.Wait()
			close(start)
			wg.Wait()
			_ = c.WriteText(fmt.Sprintf("concurrent-done:%d", maxInFlight.Load()))
		case t == sdk.TextMessage && strings.HasPrefix(msg, "burst:"):
			// burst:N:SIZE sends N binary messages of SIZE bytes, each filled with
			// byte(i), as fast as the host takes them.
			parts := strings.SplitN(msg, ":", 3)
			n, _ := strconv.Atoi(parts[1])
			size, _ := strconv.Atoi(parts[2])
			buf := make([]byte, size)
			for i := 0; i < n; i++ {
				for j := range buf {
					buf[j] = byte(i)
				}
				if err := c.WriteMessage(sdk.BinaryMessage, buf); err != nil {
					return nil
				}
			}
		case t == sdk.TextMessage && strings.HasPrefix(msg, "flood:"):
			// Send until the host stops taking messages. GET /flood reports how many it
			// took and how the flood ended; the test watches the host's memory.
			n, _ := strconv.Atoi(msg[len("flood:"):])
			payload := strings.Repeat("x", 64<<10)
			st.floodSent.Store(0)
			st.floodEnd.Store(nil)
			end := "all sent"
			for i := 0; i < n; i++ {
				if err := c.WriteText(payload); err != nil {
					end = "write failed: " + err.Error()
					break
				}
				st.floodSent.Add(1)
			}
			st.floodEnd.Store(&end)
			if end != "all sent" {
				return nil
			}
		default:
			if err := c.WriteMessage(t, data); err != nil {
				return nil
			}
		}
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (st *state) gate(name string, n int) chan struct{} {
	ch, _ := st.gates.LoadOrStore(fmt.Sprintf("%s/%d", name, n), make(chan struct{}))
	return ch.(chan struct{})
}

func (st *state) open(name string, n int) {
	ch := st.gate(name, n)
	select {
	case <-ch:
	default:
		close(ch)
	}
}
