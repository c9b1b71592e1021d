package admin

import (
	"context"
	"errors"
	"net/http"

	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/plugins/sync/live"
	"github.com/fiberkit/fiberkit/plugins/sync/shape"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/sdk"
)

// The shape page (GET /live-shapes/{handle}) shows a live shape's rows and follows
// them over the pages' socket (/live):
//
//	page → {"op":"hello","page":"shape"}, then {"op":"subscribe","handle":h} (again
//	       after a reconnect) and {"op":"unsubscribe"}
//	     ← {"type":"shape","handle":h,"table":"public.t","columns":[…],"key":[…],"refetch":bool}
//	       first, and again after a must-refetch (refetch true, the new handle):
//	       the page empties its table
//	     ← {"type":"rows","changes":[{"op":"insert|update|delete","key":k,"value":{col: text|null}}],
//	       "up_to_date":bool}: an insert's value is the whole row, an update's the
//	       key and the changed columns, a delete's the key
//	     ← {"type":"limit","limit":n}: the page holds n rows and the stream stopped
//	     ← {"type":"error","message":m,"retry":bool}: the stream ended; retry says
//	       subscribing again later may work (live sync restarting)

// shapePageRows bounds the rows a shape page holds: past it the stream stops and
// the page says so.
const shapePageRows = 10000

// shapeBatch is how many changes go out in one message at most; fewer when the
// stream is up to date.
const shapeBatch = 500

// shapePageData is what the shape page renders from.
type shapePageData struct {
	pageData
	Live   liveView
	Handle string
	// Shape is the shape's info; nil when no live shape has Handle.
	Shape *syncapi.ShapeInfo
	Limit int
}

// shapePage renders the shape page of the handle in the path.
func (a *Admin) shapePage(w http.ResponseWriter, r *http.Request, st *site.Site) {
	d := shapePageData{pageData: base(r, st, "Live shape", "shape"), Handle: r.PathValue("handle"), Limit: shapePageRows}
	d.Live = a.liveOf(r.Context(), st)
	status := http.StatusOK
	if st.Live != nil {
		info, err := shapeInfo(r.Context(), st.Live, d.Handle)
		switch {
		case err != nil:
			a.log.Warn("shape page: list shapes", "err", err)
			d.Error = "Could not list the shapes: " + err.Error()
			status = http.StatusInternalServerError
		case info == nil:
			status = http.StatusNotFound
		}
		d.Shape = info
	} else {
		status = http.StatusConflict
	}
	pageHeaders(w)
	w.WriteHeader(status)
	a.render(w, "live_shape.html", d)
}

// shapeInfo finds the live shape with handle (nil when there is none).
func shapeInfo(ctx context.Context, e *live.Engine, handle string) (*syncapi.ShapeInfo, error) {
	shapes, err := e.Shapes(ctx)
	if err != nil {
		return nil, err
	}
	for i := range shapes {
		if shapes[i].Handle == handle {
			return &shapes[i], nil
		}
	}
	return nil, nil
}

// liveShape is the shape page's socket: it streams the shape the page subscribes
// to, one at a time, until the page unsubscribes or goes.
func (a *Admin) liveShape(ctx context.Context, c *sdk.Conn) error {
	ops := readOps(c)
	stop := func() {}
	defer func() { stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-ops:
			if !ok {
				return nil
			}
			switch m.Op {
			case "subscribe":
				stop()
				stop = a.subscribeShape(ctx, c, m.Handle)
			case "unsubscribe":
				stop()
				stop = func() {}
			}
		}
	}
}

// subscribeShape streams the shape with handle to the page until stop is called
// (stop waits for the stream to end: nothing is written after it).
func (a *Admin) subscribeShape(ctx context.Context, c *sdk.Conn, handle string) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if msg, retry := a.streamShape(ctx, c, handle); msg != "" && ctx.Err() == nil {
			_ = writeJSON(c, shapeError{Type: "error", Message: msg, Retry: retry})
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// shapeError ends a page's stream.
type shapeError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
	Retry   bool   `json:"retry"`
}

// errPageFull ends a stream whose page holds shapePageRows rows.
var errPageFull = errors.New("the page is full")

// streamShape streams handle's shape to the page; it returns why it ended (empty
// when the page ended it) and whether subscribing again may work.
func (a *Admin) streamShape(ctx context.Context, c *sdk.Conn, handle string) (msg string, retry bool) {
	st, err := a.current()
	if err != nil {
		return "Sync is starting.", true
	}
	if st.Live == nil {
		return "Live sync is not running on this site.", true
	}
	info, err := shapeInfo(ctx, st.Live, handle)
	if err != nil {
		a.log.Warn("shape page: list shapes", "err", err)
		return "Could not read the shape: " + err.Error(), true
	}
	if info == nil {
		return "Shape " + handle + " is not live (dropped or replaced): go back to the Live page.", false
	}
	v := &shapeStream{c: c, keys: map[string]struct{}{}, handle: handle,
		header: func(h string) (shapeHeader, error) { return shapeHeaderOf(ctx, st, info.Shape, h) }}
	if err := v.start(); err != nil {
		return "Could not read the shape: " + err.Error(), false
	}
	// From the handle's beginning: a handle replaced meanwhile is a must-refetch.
	err = st.Live.Stream(ctx, syncapi.StreamRequest{Shape: info.Shape, Handle: handle, Offset: syncapi.OffsetBeginning}, v.send)
	var inv *live.InvalidError
	switch {
	case err == nil, ctx.Err() != nil, errors.Is(err, errPageFull):
		return "", false
	case errors.As(err, &inv):
		return "The shape cannot be streamed: " + inv.Error(), false
	case errors.Is(err, live.ErrClosed):
		return "Live sync stopped on this site.", true
	}
	a.log.Warn("shape page: stream", "handle", handle, "err", err)
	return "The stream ended: " + err.Error(), true
}

// shapeHeader tells the page which shape it shows and its columns.
type shapeHeader struct {
	Type    string   `json:"type"`
	Handle  string   `json:"handle"`
	Table   string   `json:"table"`
	Columns []string `json:"columns"`
	Key     []string `json:"key"`
	Refetch bool     `json:"refetch"`
}

// shapeHeaderOf is spec's header under handle: its columns as the table has them
// now.
func shapeHeaderOf(ctx context.Context, st *site.Site, spec syncapi.ShapeSpec, handle string) (shapeHeader, error) {
	s, err := shape.Normalize(ctx, st.Pool, spec)
	if err != nil {
		return shapeHeader{}, err
	}
	return shapeHeader{Type: "shape", Handle: handle, Table: s.Table.Schema + "." + s.Table.Name, Columns: s.Columns(), Key: s.Key}, nil
}

// rowChange is one row message as the page gets it.
type rowChange struct {
	Op    string             `json:"op"`
	Key   string             `json:"key"`
	Value map[string]*string `json:"value,omitempty"`
}

// rowsMsg is a batch of row changes.
type rowsMsg struct {
	Type     string      `json:"type"`
	Changes  []rowChange `json:"changes"`
	UpToDate bool        `json:"up_to_date"`
}

// shapeStream turns a shape's stream messages into the page's messages: rows in
// batches, must-refetch as a new header, and the bound on rows held.
type shapeStream struct {
	c      *sdk.Conn
	handle string
	header func(handle string) (shapeHeader, error)
	// keys are the rows the page holds.
	keys    map[string]struct{}
	pending []rowChange
}

// start sends the page the header of the shape it subscribed to.
func (v *shapeStream) start() error {
	h, err := v.header(v.handle)
	if err != nil {
		return err
	}
	return writeJSON(v.c, h)
}

// flush sends the pending changes (or, up to date, says so even with none).
func (v *shapeStream) flush(upToDate bool) error {
	if len(v.pending) == 0 && !upToDate {
		return nil
	}
	m := rowsMsg{Type: "rows", Changes: v.pending, UpToDate: upToDate}
	if m.Changes == nil {
		m.Changes = []rowChange{}
	}
	v.pending = nil
	return writeJSON(v.c, m)
}

// send is the stream's send function.
func (v *shapeStream) send(m syncapi.StreamMessage) error {
	switch h := m.Message.Headers; {
	case h.Control == syncapi.ControlUpToDate:
		return v.flush(true)
	case h.Control == syncapi.ControlMustRefetch:
		// Rows of the old handle are dropped unsent: the page starts over.
		v.pending, v.keys, v.handle = nil, map[string]struct{}{}, m.Handle
		hd, err := v.header(m.Handle)
		if err != nil {
			return err
		}
		hd.Refetch = true
		return writeJSON(v.c, hd)
	case h.Operation == "":
		return nil // another control message (snapshot-end)
	case h.Operation == syncapi.OperationInsert:
		if _, held := v.keys[m.Message.Key]; !held {
			if len(v.keys) >= shapePageRows {
				if err := v.flush(false); err != nil {
					return err
				}
				if err := writeJSON(v.c, map[string]any{"type": "limit", "limit": shapePageRows}); err != nil {
					return err
				}
				return errPageFull
			}
			v.keys[m.Message.Key] = struct{}{}
		}
	case h.Operation == syncapi.OperationDelete:
		delete(v.keys, m.Message.Key)
	}
	v.pending = append(v.pending, rowChange{Op: m.Message.Headers.Operation, Key: m.Message.Key, Value: m.Message.Value})
	if len(v.pending) >= shapeBatch {
		return v.flush(false)
	}
	return nil
}
