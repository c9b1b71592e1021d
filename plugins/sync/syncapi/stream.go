package syncapi

import (
	"context"
	"errors"

	"github.com/fiberkit/fiberkit/sdk"
)

// Streamer opens streaming operations through the host; *sdk.Host is one.
type Streamer interface {
	CallStream(ctx context.Context, target, op string, in any) (*sdk.Stream, error)
}

// ErrNoStreams is returned by Stream when the handle's host cannot open streams.
var ErrNoStreams = errors.New("syncapi: the host handle cannot open streams (want an *sdk.Host)")

// ShapeStream is an open shape stream (Phoenix.Sync's Client.stream): the snapshot
// rows, an up-to-date message, then changes as they commit.
type ShapeStream struct {
	s *sdk.Stream
}

// Stream opens a shape stream through the host. Read it with Next; Close it (or
// cancel ctx) when done. Errors keep their codes: invalid_input for a bad shape,
// live_disabled when live sync is off on this site.
func (m *Module) Stream(ctx context.Context, req StreamRequest) (*ShapeStream, error) {
	st, ok := m.host.(Streamer)
	if !ok {
		return nil, ErrNoStreams
	}
	s, err := st.CallStream(ctx, ModuleID, OpStream, req)
	if err != nil {
		return nil, err
	}
	return &ShapeStream{s: s}, nil
}

// Next returns the next message; io.EOF once a Once stream has sent its
// up-to-date.
func (s *ShapeStream) Next() (StreamMessage, error) {
	var m StreamMessage
	err := s.s.Recv(&m)
	return m, err
}

// Close ends the stream.
func (s *ShapeStream) Close() { s.s.Close() }

// Interrupt ends the streams of every live shape matching the partial definition
// and makes their readers refetch (Phoenix.Sync's interrupt/2); it returns how many
// shapes.
func (m *Module) Interrupt(ctx context.Context, match ShapeMatch) (int, error) {
	var n int
	return n, m.call(ctx, OpInterrupt, match, &n)
}

// ListShapes lists the live shapes.
func (m *Module) ListShapes(ctx context.Context) ([]ShapeInfo, error) {
	var out []ShapeInfo
	return out, m.call(ctx, OpListShapes, nil, &out)
}

// LiveStatus reports live sync on the site.
func (m *Module) LiveStatus(ctx context.Context) (LiveStatus, error) {
	var st LiveStatus
	return st, m.call(ctx, OpLiveStatus, nil, &st)
}
