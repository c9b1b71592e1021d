package syncapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Watches are a module's record watches, in EctoFoundationDB.Sync's terms: one
// record by key (One, sync_one), several by keys (Many, sync_many), a whole table
// (All, sync_all), or the records whose indexed column has a value (AllBy,
// sync_all_by). Each has a label; starting a watch delivers its initial records to
// its callback before it returns, then every change with the record's old and new
// values, until Cancel(label) or CancelAll. A watch whose stream is cut (the Sync
// module restarted, say) resumes where it stopped; one whose shape must be
// refetched (truncate, interrupt) delivers its records afresh (WatchRefetch).
type Watches struct {
	m *Module

	mu      sync.Mutex
	byLabel map[string]*watch
}

// Watches returns a new set of watches reached through m.
func (m *Module) Watches() *Watches { return &Watches{m: m, byLabel: map[string]*watch{}} }

// The kinds of WatchEvent.
const (
	WatchInitial = "initial" // Records holds what the watch covers
	WatchInsert  = "insert"
	WatchUpdate  = "update"
	WatchDelete  = "delete"
	WatchRefetch = "refetch" // the shape was refetched: Records holds it anew
)

// Record is a row's values by column (text format; nil for NULL).
type Record = map[string]*string

// WatchEvent is what a watch's callback gets.
type WatchEvent struct {
	Label string
	Kind  string
	// Key identifies the record (a change's); Old and New are its values before
	// and after (Old nil for an insert, New nil for a delete).
	Key      string
	Old, New Record
	// Records are every record the watch covers, by key (initial and refetch).
	Records map[string]Record
}

// WatchFunc receives a watch's events, one at a time, in order.
type WatchFunc func(WatchEvent)

// watch is one running watch.
type watch struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// One watches the record of table whose primary key is id.
func (w *Watches) One(ctx context.Context, label, table, id string, fn WatchFunc) error {
	return w.Many(ctx, label, table, []string{id}, fn)
}

// Many watches the records of table whose primary keys are ids.
func (w *Watches) Many(ctx context.Context, label, table string, ids []string, fn WatchFunc) error {
	if len(ids) == 0 {
		return fmt.Errorf("watch %s: no keys", label)
	}
	sch, err := w.m.GetSchema(ctx, table)
	if err != nil {
		return fmt.Errorf("watch %s: %w", label, err)
	}
	if len(sch.PrimaryKey) != 1 {
		return fmt.Errorf("watch %s: %s has a %d-column primary key; watch it with AllBy", label, table, len(sch.PrimaryKey))
	}
	marks := make([]string, len(ids))
	for i := range ids {
		marks[i] = fmt.Sprintf("$%d", i+1)
	}
	where := quoteIdent(sch.PrimaryKey[0]) + " IN (" + strings.Join(marks, ", ") + ")"
	return w.start(ctx, label, ShapeSpec{Namespace: sch.Schema, Table: sch.Name, Where: where, Params: ids}, fn)
}

// All watches every record of table.
func (w *Watches) All(ctx context.Context, label, table string, fn WatchFunc) error {
	return w.start(ctx, label, ShapeSpec{Table: table}, fn)
}

// AllBy watches the records of table whose column equals value.
func (w *Watches) AllBy(ctx context.Context, label, table, column, value string, fn WatchFunc) error {
	return w.start(ctx, label, ShapeSpec{Table: table, Where: quoteIdent(column) + " = $1", Params: []string{value}}, fn)
}

// Cancel ends the watch labelled label and reports whether there was one. No
// event reaches its callback once Cancel returned.
func (w *Watches) Cancel(label string) bool {
	w.mu.Lock()
	x := w.byLabel[label]
	delete(w.byLabel, label)
	w.mu.Unlock()
	if x == nil {
		return false
	}
	x.cancel()
	<-x.done
	return true
}

// CancelAll ends every watch.
func (w *Watches) CancelAll() {
	w.mu.Lock()
	labels := make([]string, 0, len(w.byLabel))
	for l := range w.byLabel {
		labels = append(labels, l)
	}
	w.mu.Unlock()
	for _, l := range labels {
		w.Cancel(l)
	}
}

// Watching reports whether a watch labelled label runs.
func (w *Watches) Watching(label string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.byLabel[label] != nil
}

// start runs a watch of spec under label, replacing one of the same label, and
// returns once its initial records were delivered (or it failed). The watch runs
// until cancelled: ctx only bounds the start.
func (w *Watches) start(ctx context.Context, label string, spec ShapeSpec, fn WatchFunc) error {
	w.Cancel(label)
	st, err := w.m.Stream(ctx, StreamRequest{Shape: spec})
	if err != nil {
		return fmt.Errorf("watch %s: %w", label, err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	x := &watch{cancel: cancel, done: make(chan struct{})}
	r := &watchRun{w: w, label: label, spec: spec, fn: fn, records: map[string]Record{}, started: make(chan error, 1)}
	go func() {
		defer close(x.done)
		r.run(runCtx, st)
	}()
	select {
	case err := <-r.started:
		if err != nil {
			cancel()
			<-x.done
			return fmt.Errorf("watch %s: %w", label, err)
		}
	case <-ctx.Done():
		cancel()
		<-x.done
		return ctx.Err()
	}
	w.mu.Lock()
	w.byLabel[label] = x
	w.mu.Unlock()
	return nil
}

// watchRun is a watch's state on its goroutine.
type watchRun struct {
	w       *Watches
	label   string
	spec    ShapeSpec
	fn      WatchFunc
	records map[string]Record
	handle  string
	offset  string
	// live is set once the initial records went out; refetching while the
	// records are being read again.
	live, refetching bool
	started          chan error
}

// resumeDelay is how long a cut watch waits before resuming.
const resumeDelay = 500 * time.Millisecond

func (r *watchRun) run(ctx context.Context, st *ShapeStream) {
	for {
		err := r.read(ctx, st)
		st.Close()
		if ctx.Err() != nil {
			return
		}
		if !r.live {
			r.started <- err
			return
		}
		// Cut: resume from the last offset (or refetch, if the shape went).
		for ctx.Err() == nil {
			time.Sleep(resumeDelay)
			st, err = r.w.m.Stream(ctx, StreamRequest{Shape: r.spec, Handle: r.handle, Offset: r.offset})
			if err == nil {
				break
			}
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// read applies a stream's messages until it ends.
func (r *watchRun) read(ctx context.Context, st *ShapeStream) error {
	for {
		m, err := st.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("stream ended")
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.handle, r.offset = m.Handle, m.Offset
		h := m.Message.Headers
		switch {
		case h.Control == ControlMustRefetch:
			r.records = map[string]Record{}
			r.refetching = r.live
		case h.Control == ControlUpToDate:
			if !r.live {
				r.live = true
				r.fn(WatchEvent{Label: r.label, Kind: WatchInitial, Records: copyRecords(r.records)})
				r.started <- nil
			} else if r.refetching {
				r.refetching = false
				r.fn(WatchEvent{Label: r.label, Kind: WatchRefetch, Records: copyRecords(r.records)})
			}
		case h.Operation != "":
			r.apply(m.Message)
		}
	}
}

// apply records a change and, once live, tells the callback.
func (r *watchRun) apply(m Message) {
	old := r.records[m.Key]
	var next Record
	kind := m.Headers.Operation
	switch kind {
	case OperationInsert:
		next = copyRecord(m.Value)
	case OperationUpdate:
		next = copyRecord(old)
		if next == nil {
			next = Record{}
		}
		for k, v := range m.Value {
			next[k] = v
		}
	case OperationDelete:
	default:
		return
	}
	if next == nil {
		delete(r.records, m.Key)
	} else {
		r.records[m.Key] = next
	}
	if r.live && !r.refetching {
		r.fn(WatchEvent{Label: r.label, Kind: kind, Key: m.Key, Old: old, New: copyRecord(next)})
	}
}

func copyRecord(r Record) Record {
	if r == nil {
		return nil
	}
	out := make(Record, len(r))
	for k, v := range r {
		out[k] = v
	}
	return out
}

func copyRecords(rs map[string]Record) map[string]Record {
	out := make(map[string]Record, len(rs))
	for k, r := range rs {
		out[k] = copyRecord(r)
	}
	return out
}

// quoteIdent quotes a column name for a where clause.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
