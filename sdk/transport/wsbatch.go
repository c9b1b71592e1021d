package transport

import (
	"context"
	"errors"
	"sync"

	pb "github.com/fiberkit/fiberkit/sdk/transport/pluginv1"
)

// A WebSocket carried over the transport pays a gRPC message per frame: framing, a
// wake-up of gRPC's writer and of the peer's reader each. When small data messages
// come faster than they are sent, a socket's sender puts those ready at once into
// one WebSocketBatch frame; the receiver hands them out one by one, in order.

const (
	// batchMessageMax is the largest data message that is batched: a larger one is
	// sent on its own, and its Send waits until it is sent, as before batching.
	batchMessageMax = 16 << 10
	// batchBytesMax and batchCountMax bound one batch.
	batchBytesMax = 64 << 10
	batchCountMax = 256
	// sendQueue is how many small messages may wait to be sent: then Send blocks, so
	// a stream that does not drain back-pressures the writer as before.
	sendQueue = 64
)

// wsItem is one message queued on a wsSender; a caller that waits for the send gets
// its result on sent.
type wsItem struct {
	m    Message
	sent chan error
	// last, when set, ends the sender: run calls it (the stream's CloseSend, say)
	// after everything before it, then stops.
	last func() error
}

// wsSender sends a socket's messages in order from one goroutine. Small data
// messages are queued (their data copied) and Send returns at once; anything else
// waits until it and everything queued before it are sent. A failed send fails every
// later Send.
type wsSender struct {
	send func(*pb.WebSocketFrame) error
	ctx  context.Context // the stream's: its end stops the sender
	q    chan wsItem
	done chan struct{} // closed when run returns: nothing is sent after

	mu  sync.Mutex
	err error
}

func newWSSender(ctx context.Context, send func(*pb.WebSocketFrame) error) *wsSender {
	s := &wsSender{send: send, ctx: ctx, q: make(chan wsItem, sendQueue), done: make(chan struct{})}
	go s.run()
	return s
}

// errSenderFinished fails a Send after finish.
var errSenderFinished = errors.New("websocket closed for sending")

// finish sends what is queued, then calls last (when set) on the sender's
// goroutine — a stream's CloseSend must not run while a Send does — and stops the
// sender: a later Send fails. When the stream ended first, it waits for the
// sender to stop before calling last.
func (s *wsSender) finish(last func() error) error {
	if last == nil {
		last = func() error { return nil }
	}
	it := wsItem{sent: make(chan error, 1), last: last}
	select {
	case s.q <- it:
		select {
		case err := <-it.sent:
			return err
		case <-s.done:
			select {
			case err := <-it.sent:
				return err
			default:
			}
		}
	case <-s.done:
	}
	<-s.done
	s.fail(errSenderFinished)
	return last()
}

func (s *wsSender) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *wsSender) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

func batchable(m Message) bool {
	return (m.Kind == Text || m.Kind == Binary) && len(m.Data) <= batchMessageMax
}

// Send queues m; see wsSender.
func (s *wsSender) Send(m Message) error {
	if err := s.failed(); err != nil {
		return err
	}
	it := wsItem{m: m}
	if batchable(m) {
		it.m.Data = append([]byte(nil), m.Data...) // the caller may reuse its buffer
	} else {
		it.sent = make(chan error, 1)
	}
	select {
	case s.q <- it:
	case <-s.ctx.Done():
		return s.stopped()
	}
	if it.sent == nil {
		return nil
	}
	select {
	case err := <-it.sent:
		return err
	case <-s.ctx.Done():
		return s.stopped()
	}
}

// stopped is the error of a Send on a stream that ended.
func (s *wsSender) stopped() error {
	if err := s.failed(); err != nil {
		return err
	}
	return s.ctx.Err()
}

func (s *wsSender) run() {
	defer close(s.done)
	var next *wsItem
	for {
		var it wsItem
		if next != nil {
			it, next = *next, nil
		} else {
			select {
			case it = <-s.q:
			case <-s.ctx.Done():
				return
			}
		}
		if s.ctx.Err() != nil && it.last == nil {
			if it.sent != nil {
				it.sent <- s.stopped()
			}
			return
		}
		if it.last != nil {
			err := s.failed()
			s.fail(errSenderFinished)
			if lerr := it.last(); err == nil {
				err = lerr
			}
			it.sent <- err
			return
		}
		if it.sent != nil {
			err := s.failed()
			if err == nil {
				f := messageToPB(it.m)
				if f == nil {
					err = Errorf(CodeInvalidInput, "unknown message kind %d", it.m.Kind)
				} else if err = s.send(f); err != nil {
					s.fail(err)
				}
			}
			it.sent <- err
			continue
		}
		batch := []*pb.WebSocketData{{Binary: it.m.Kind == Binary, Payload: it.m.Data}}
		size := len(it.m.Data)
	gather:
		for len(batch) < batchCountMax && size < batchBytesMax {
			select {
			case more := <-s.q:
				if !batchable(more.m) || more.sent != nil {
					next = &more
					break gather
				}
				batch = append(batch, &pb.WebSocketData{Binary: more.m.Kind == Binary, Payload: more.m.Data})
				size += len(more.m.Data)
			default:
				break gather
			}
		}
		if s.failed() != nil {
			continue // dropped: the stream is broken, as the next Send reports
		}
		f := &pb.WebSocketFrame{Frame: &pb.WebSocketFrame_Data{Data: batch[0]}}
		if len(batch) > 1 {
			f = &pb.WebSocketFrame{Frame: &pb.WebSocketFrame_Batch{Batch: &pb.WebSocketBatch{Data: batch}}}
		}
		if err := s.send(f); err != nil {
			s.fail(err)
		}
	}
}

// wsReceiver hands out the messages of received frames one at a time.
type wsReceiver struct {
	recv    func() (*pb.WebSocketFrame, error)
	pending []Message
}

// next returns the next message, unpacking batches, and skips unknown frames.
func (r *wsReceiver) next() (Message, error) {
	for len(r.pending) == 0 {
		f, err := r.recv()
		if err != nil {
			return Message{}, err
		}
		if b := f.GetBatch(); b != nil {
			for _, d := range b.GetData() {
				k := Text
				if d.GetBinary() {
					k = Binary
				}
				r.pending = append(r.pending, Message{Kind: k, Data: d.GetPayload()})
			}
			continue
		}
		if m, ok := messageFromPB(f); ok {
			return m, nil
		}
	}
	m := r.pending[0]
	r.pending[0] = Message{}
	r.pending = r.pending[1:]
	return m, nil
}
