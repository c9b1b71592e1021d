package admin

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
)

// job is one Receive page's connection and transfer; it outlives a dropped page
// socket so the page can reconnect and pick it up. Its client — and with it the
// sender's open snapshot — is closed as soon as the job has no more use for it: the
// transfer is done, failed or cancelled, the connection dropped, or nobody has
// watched the job for jobs.idle.
type job struct {
	ID string

	mu       sync.Mutex
	version  int
	changed  chan struct{} // closed and replaced on every change
	view     receiveView
	client   *client.Client
	cancel   context.CancelFunc
	finished time.Time
	viewers  int         // page sockets showing the job
	idle     *time.Timer // set while nobody watches
	idleGen  int         // which idle timer is current
}

// release closes c and detaches it from the job if it is still the job's client.
func (j *job) release(c *client.Client) {
	j.mu.Lock()
	if j.client == c {
		j.client = nil
	}
	j.mu.Unlock()
	_ = c.Close() // closing ends the sender's snapshot; nothing more to do on failure
}

// cancelGrace is how long a cancelled transfer's connection stays open, so the
// sender winds the cancelled stream down (and records why) before it goes.
const cancelGrace = 2 * time.Second

// dropClient detaches the job's client and closes it.
func (j *job) dropClient() {
	j.mu.Lock()
	c := j.client
	j.client = nil
	j.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// tableProgress is a table's progress (or the whole transfer's) on the Receive page.
type tableProgress struct {
	Rows  int64   `json:"rows"`
	Total int64   `json:"total"`
	Rate  float64 `json:"rate"`
	ETA   float64 `json:"eta_seconds"`
	Done  bool    `json:"done"`
}

// receiveView is what the Receive page shows of its job.
type receiveView struct {
	Type     string                   `json:"type"`
	Job      string                   `json:"job"`
	State    string                   `json:"state"` // idle connecting waiting_approval ready transferring done failed cancelled
	Error    string                   `json:"error,omitempty"`
	Message  string                   `json:"message,omitempty"`
	Sender   string                   `json:"sender,omitempty"`
	Tables   []client.TableState      `json:"tables"`
	Progress map[string]tableProgress `json:"progress"`
	Results  map[string]client.Result `json:"results"`
	Overall  tableProgress            `json:"overall"`
}

// update changes the job's view and wakes the page sockets showing it.
func (j *job) update(fn func(v *receiveView)) {
	j.mu.Lock()
	fn(&j.view)
	j.version++
	close(j.changed)
	j.changed = make(chan struct{})
	j.mu.Unlock()
}

// snapshot returns a deep copy of the job's view and the channel closed on its
// next change.
func (j *job) snapshot() (receiveView, chan struct{}) {
	j.mu.Lock()
	defer j.mu.Unlock()
	b, _ := json.Marshal(j.view) // plain data: marshals
	var v receiveView
	_ = json.Unmarshal(b, &v)
	return v, j.changed
}

// jobs is the registry of Receive jobs.
type jobs struct {
	// idle: a job nobody has watched for this long is closed and forgotten (one still
	// connecting or transferring once it ends).
	idle time.Duration
	// keep: a finished job is remembered this long for a page that comes back.
	keep time.Duration

	mu sync.Mutex
	m  map[string]*job
}

// newJobs returns an empty registry: idle jobs go after 10 minutes, finished
// ones are remembered for an hour.
// newJobs returns an empty registry: idle jobs go after 10 minutes, finished ones
// are remembered for an hour.
func newJobs() *jobs { return &jobs{m: map[string]*job{}, idle: 10 * time.Minute, keep: time.Hour} }

// attach returns job id (a new one when it is unknown) for a page socket that shows
// it; call detach when the socket closes.
func (js *jobs) attach(id string) *job {
	js.mu.Lock()
	defer js.mu.Unlock()
	for k, j := range js.m { // forget jobs finished long ago (their clients are closed)
		j.mu.Lock()
		old := !j.finished.IsZero() && time.Since(j.finished) > js.keep && j.viewers == 0
		j.mu.Unlock()
		if old {
			delete(js.m, k)
		}
	}
	j, ok := js.m[id]
	if !ok {
		j = &job{ID: randomID(), changed: make(chan struct{}),
			view: receiveView{Type: "receive", State: "idle", Tables: []client.TableState{}, Progress: map[string]tableProgress{}, Results: map[string]client.Result{}}}
		j.view.Job = j.ID
		js.m[j.ID] = j
	}
	j.mu.Lock()
	j.viewers++
	if j.idle != nil {
		j.idle.Stop()
		j.idle = nil
	}
	j.mu.Unlock()
	return j
}

// detach is attach's counterpart: the last viewer leaving starts the idle clock.
func (js *jobs) detach(j *job) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.viewers--
	if j.viewers <= 0 {
		j.viewers = 0
		js.armIdle(j)
	}
}

// armIdle (j.mu held) expires j after js.idle unless a viewer comes back.
func (js *jobs) armIdle(j *job) {
	if j.idle != nil {
		j.idle.Stop()
	}
	j.idleGen++
	gen := j.idleGen
	j.idle = time.AfterFunc(js.idle, func() { js.expire(j, gen) })
}

// expire closes an unwatched job's client and forgets the job; a job still
// connecting or transferring is looked at again after another idle period (those
// end on their own: connecting has a deadline, a transfer closes its client).
func (js *jobs) expire(j *job, gen int) {
	j.mu.Lock()
	if j.idle == nil || j.idleGen != gen || j.viewers > 0 {
		j.mu.Unlock()
		return
	}
	j.idle = nil
	switch j.view.State {
	case "connecting", "waiting_approval", "transferring":
		js.armIdle(j)
		j.mu.Unlock()
		return
	}
	cancel := j.cancel
	j.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	j.dropClient()
	js.mu.Lock()
	if js.m[j.ID] == j {
		delete(js.m, j.ID)
	}
	js.mu.Unlock()
}
