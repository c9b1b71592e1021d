package main_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// rawStreamer speaks the fast path's frames by hand: it joins, starts streams and
// reads JSON and binary frames as they come.
type rawStreamer struct {
	t     *testing.T
	conn  *websocket.Conn
	topic string
	codec *wire.Codec
	// batches counts the binary batches read per stream; rows their rows; ends the
	// stream:end and stream:error pushes per stream.
	batches, rows map[uint32]int
	ends          map[uint32]string
	// in carries what the connection reads (a read deadline would break it).
	in chan message
}

type message struct {
	kind int
	data []byte
	err  error
}

// dialStreamer connects with a code, or with a permanent connection's token when
// code is "".
func dialStreamer(t *testing.T, s *site, code, token string) *rawStreamer {
	t.Helper()
	u := "ws" + strings.TrimPrefix(s.url, "http") + "/fiberkit/sync/websocket?vsn=2.0.0"
	h := http.Header{}
	topic := "transfer:token"
	if code != "" {
		u += "&code=" + code
		topic = "transfer:" + code
	} else {
		h.Set("Authorization", "Bearer "+token)
	}
	conn, resp, err := websocket.DefaultDialer.Dial(u, h)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (HTTP %d)", err, status)
	}
	codec := wire.NewCodec()
	t.Cleanup(func() { conn.Close(); codec.Close() })
	r := &rawStreamer{t: t, conn: conn, topic: topic, codec: codec, batches: map[uint32]int{}, rows: map[uint32]int{}, ends: map[uint32]string{},
		in: make(chan message, 1024)}
	go func() {
		for {
			kind, data, err := conn.ReadMessage()
			r.in <- message{kind, data, err}
			if err != nil {
				return
			}
		}
	}()
	r.send("1", wire.EventJoin, map[string]any{"ref": "1"})
	if f := r.answer("1", time.Now().Add(10*time.Second)); f.Event != wire.EventReply {
		t.Fatalf("join: %s %s", f.Event, f.Payload)
	}
	return r
}

func (r *rawStreamer) send(ref, event string, payload any) {
	r.t.Helper()
	var refp *string
	if ref != "" {
		refp = &ref
	}
	if err := r.conn.WriteMessage(websocket.TextMessage, wire.New(nil, refp, r.topic, event, payload).Encode()); err != nil {
		r.t.Fatal(err)
	}
}

// read reads one message before deadline, counting batches and stream ends; it
// returns the JSON frame it read (zero for a batch) and false at the deadline.
func (r *rawStreamer) read(deadline time.Time) (wire.Frame, bool) {
	r.t.Helper()
	var m message
	select {
	case m = <-r.in:
	case <-time.After(time.Until(deadline)):
		return wire.Frame{}, false
	}
	kind, data, err := m.kind, m.data, m.err
	if err != nil {
		r.t.Fatal(err)
	}
	if kind == websocket.BinaryMessage {
		b, err := r.codec.DecodeBatch(data)
		if err != nil {
			r.t.Fatal(err)
		}
		r.batches[b.Stream]++
		r.rows[b.Stream] += int(b.Rows)
		return wire.Frame{}, true
	}
	f, err := wire.Decode(data)
	if err != nil {
		r.t.Fatal(err)
	}
	var sr wire.StreamErr
	_ = json.Unmarshal(f.Payload, &sr)
	switch f.Event {
	case wire.StreamEnd:
		r.ends[sr.Stream] = "end"
	case wire.StreamError:
		r.ends[sr.Stream] = sr.Error
	}
	return f, true
}

// answer reads until the answer to ref (counting whatever else comes).
func (r *rawStreamer) answer(ref string, deadline time.Time) wire.Frame {
	r.t.Helper()
	for {
		f, ok := r.read(deadline)
		if !ok {
			r.t.Fatalf("no answer to %s", ref)
		}
		if f.Ref != nil && *f.Ref == ref {
			return f
		}
	}
}

// drain reads everything that comes for d.
func (r *rawStreamer) drain(d time.Duration) {
	deadline := time.Now().Add(d)
	for {
		if _, ok := r.read(deadline); !ok {
			return
		}
	}
}

// TestStreamsPerConnectionAndCreditAreBounded: issue 11 §7 — a receiver opening
// 60 streams gets 4, and acks for batches never sent, repeated acks and huge
// credits add nothing: each stream sends its first credit's worth and then waits.
func TestStreamsPerConnectionAndCreditAreBounded(t *testing.T) {
	a := bigSender(t)
	r := dialStreamer(t, a, a.newCode(t).Code, "")
	deadline := time.Now().Add(20 * time.Second)
	started, refused := 0, 0
	for i := 1; i <= 60; i++ {
		ref := "s" + string(rune('0'+i/10)) + string(rune('0'+i%10))
		r.send(ref, wire.StreamStart, wire.Start{Stream: uint32(i), Table: "big", BatchRows: 1000, Credit: 1})
		f := r.answer(ref, deadline)
		var e wire.ErrorPayload
		_ = json.Unmarshal(f.Payload, &e)
		switch {
		case f.Event == wire.EventReply:
			started++
		case e.Error == wire.ErrTooManyStreams:
			refused++
		default:
			t.Fatalf("stream %d: %s %s", i, f.Event, f.Payload)
		}
	}
	if started != wire.MaxStreams || refused != 60-wire.MaxStreams {
		t.Fatalf("%d streams started, %d refused", started, refused)
	}
	// Flood: acks of batches not sent, repeats of seq 1, credit far past the cap.
	for round := 0; round < 50; round++ {
		for s := uint32(1); s <= wire.MaxStreams; s++ {
			r.send("", wire.StreamAck, wire.Ack{Stream: s, Seq: 1000 + uint32(round), Credit: 1 << 20})
			r.send("", wire.StreamAck, wire.Ack{Stream: s, Seq: 0, Credit: 1 << 20})
		}
	}
	r.drain(1500 * time.Millisecond)
	for s := uint32(1); s <= wire.MaxStreams; s++ {
		if r.batches[s] != 1 {
			t.Fatalf("stream %d: %d batches sent on a credit of 1 and acks of unsent batches", s, r.batches[s])
		}
	}
	// A real ack of batch 1 with a huge credit: at most MaxCredit batches follow,
	// and a repeat of that ack adds nothing.
	r.send("", wire.StreamAck, wire.Ack{Stream: 1, Seq: 1, Credit: 1 << 20})
	r.send("", wire.StreamAck, wire.Ack{Stream: 1, Seq: 1, Credit: 1 << 20})
	r.drain(2 * time.Second)
	if got := r.batches[1]; got != 1+wire.MaxCredit {
		t.Fatalf("stream 1 after one ack of 2^20 credit: %d batches, want %d (ends %v)", got, 1+wire.MaxCredit, r.ends)
	}
	// Cancelling a stream frees its place.
	r.send("", wire.StreamCancel, wire.StreamRef{Stream: 2})
	time.Sleep(300 * time.Millisecond)
	r.send("again", wire.StreamStart, wire.Start{Stream: 99, Table: "big", BatchRows: 1000, Credit: 1})
	if f := r.answer("again", time.Now().Add(10*time.Second)); f.Event != wire.EventReply {
		t.Fatalf("a stream after one ended: %s %s", f.Event, f.Payload)
	}
}
