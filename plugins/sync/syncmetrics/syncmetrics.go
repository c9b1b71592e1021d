// Package syncmetrics is Sync's Prometheus metric set: transfers by direction,
// strategy and outcome, rows and bytes moved, sessions, approvals, refused code
// attempts and lockouts, and what each permanent connection asks for and is refused.
// Sync registers it on the registry it hands the SDK (sdk.Module.Metrics); the host
// adds the module label when it scrapes.
//
//	reg := prometheus.NewRegistry()
//	metrics, err := syncmetrics.New(reg)
//	...
//	sdk.Serve(sdk.Module{..., Metrics: reg})
//
// A transfer is one table moved in one direction, as the history records it. Every
// method may be called on a nil *Metrics, which records nothing, so code under test
// needs no metrics of its own.
package syncmetrics

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The directions of a transfer or session.
const (
	Send    = "send"
	Receive = "receive"
)

// The outcomes of a transfer, the status label of fiberkit_sync_transfers_ended_total
// (as the history's Status).
const (
	Done      = "done"
	Failed    = "failed"
	Cancelled = "cancelled"
)

// durationBuckets (seconds) run from a small table to a long pull.
var durationBuckets = []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

// Metrics is Sync's metric set; make it with New.
type Metrics struct {
	started  *prometheus.CounterVec   // direction, strategy
	ended    *prometheus.CounterVec   // direction, strategy, status
	duration *prometheus.HistogramVec // direction, status
	rows     *prometheus.CounterVec   // direction
	bytes    *prometheus.CounterVec   // direction
	sessions *prometheus.GaugeVec     // direction
	pending  prometheus.Gauge
	refused  *prometheus.CounterVec // reason
	lockouts prometheus.Counter
	connReqs *prometheus.CounterVec // connection
	connRefd *prometheus.CounterVec // connection, reason
}

// New makes the metric set and registers it on reg (nil: not registered, for tests).
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		started: counterVec("fiberkit_sync_transfers_started_total",
			"Table transfers started, by direction (send, receive) and conflict strategy.", "direction", "strategy"),
		ended: counterVec("fiberkit_sync_transfers_ended_total",
			"Table transfers ended, by direction, strategy and status (done, failed, cancelled).", "direction", "strategy", "status"),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fiberkit_sync_transfer_duration_seconds",
			Help:    "How long a table transfer took, by direction and status.",
			Buckets: durationBuckets,
		}, []string{"direction", "status"}),
		rows:  counterVec("fiberkit_sync_rows_total", "Rows moved, by direction (sent, or received and written).", "direction"),
		bytes: counterVec("fiberkit_sync_bytes_total", "Bytes of table data moved, by direction.", "direction"),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fiberkit_sync_sessions_active",
			Help: "Sessions with a live connection to the other site, by direction.",
		}, []string{"direction"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fiberkit_sync_approvals_pending",
			Help: "Receivers' requests waiting for an admin's decision on this (sending) site.",
		}),
		refused: counterVec("fiberkit_sync_attempts_refused_total",
			"Attempts to redeem a code that were refused, by reason (invalid_code, wrong_password, rate_limited…).", "reason"),
		lockouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fiberkit_sync_lockouts_total",
			Help: "Addresses locked out after too many failed attempts.",
		}),
		connReqs: counterVec("fiberkit_sync_connection_requests_total",
			"Requests made over a permanent connection, by connection id.", "connection"),
		connRefd: counterVec("fiberkit_sync_connection_refusals_total",
			"Requests over a permanent connection refused by its limits or status, by connection id and reason (rate_limited, record_limit…).",
			"connection", "reason"),
	}
	for _, d := range []string{Send, Receive} {
		m.rows.WithLabelValues(d)
		m.bytes.WithLabelValues(d)
		m.sessions.WithLabelValues(d)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.started, m.ended, m.duration, m.rows, m.bytes, m.sessions, m.pending, m.refused, m.lockouts, m.connReqs, m.connRefd} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register sync metrics: %w", err)
		}
	}
	return m, nil
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

// TransferStarted counts a table transfer beginning. strategy is the conflict
// strategy as the history records it (skip, overwrite, merge, append; "" when this
// side does not know it).
func (m *Metrics) TransferStarted(direction, strategy string) {
	if m == nil {
		return
	}
	m.started.WithLabelValues(direction, strategy).Inc()
}

// TransferFinished counts a table transfer that completed, after d.
func (m *Metrics) TransferFinished(direction, strategy string, d time.Duration) {
	m.transferEnded(direction, strategy, Done, d)
}

// TransferFailed counts a table transfer that failed, after d.
func (m *Metrics) TransferFailed(direction, strategy string, d time.Duration) {
	m.transferEnded(direction, strategy, Failed, d)
}

// TransferCancelled counts a table transfer cancelled by either side, after d.
func (m *Metrics) TransferCancelled(direction, strategy string, d time.Duration) {
	m.transferEnded(direction, strategy, Cancelled, d)
}

func (m *Metrics) transferEnded(direction, strategy, status string, d time.Duration) {
	if m == nil {
		return
	}
	m.ended.WithLabelValues(direction, strategy, status).Inc()
	m.duration.WithLabelValues(direction, status).Observe(d.Seconds())
}

// Moved counts rows and bytes of table data moved in direction. Call it per batch
// as the data goes (the rate then follows a long transfer), or once with a
// transfer's totals — not both.
func (m *Metrics) Moved(direction string, rows, bytes int64) {
	if m == nil {
		return
	}
	m.rows.WithLabelValues(direction).Add(float64(max(rows, 0)))
	m.bytes.WithLabelValues(direction).Add(float64(max(bytes, 0)))
}

// SessionOpened counts a session whose connection to the other site is up; pair it
// with SessionClosed (defer it).
func (m *Metrics) SessionOpened(direction string) {
	if m == nil {
		return
	}
	m.sessions.WithLabelValues(direction).Inc()
}

// SessionClosed counts the end of a session SessionOpened counted.
func (m *Metrics) SessionClosed(direction string) {
	if m == nil {
		return
	}
	m.sessions.WithLabelValues(direction).Dec()
}

// SetPendingApprovals sets how many receivers' requests wait for an admin. Call it
// whenever the pending list changes (a request made, approved, denied or timed out).
func (m *Metrics) SetPendingApprovals(n int) {
	if m == nil {
		return
	}
	m.pending.Set(float64(n))
}

// AttemptRefused counts a refused attempt to redeem a code; reason is the wire code
// the receiver gets (invalid_code, already_used, password_required, wrong_password,
// denied, approval_timeout, rate_limited…), never free text.
func (m *Metrics) AttemptRefused(reason string) {
	if m == nil {
		return
	}
	m.refused.WithLabelValues(reason).Inc()
}

// LockedOut counts an address locked out by its failed attempts: once per lockout,
// not per attempt refused during it (those are AttemptRefused("rate_limited")).
func (m *Metrics) LockedOut() {
	if m == nil {
		return
	}
	m.lockouts.Inc()
}

// ConnectionRequest counts a request made over permanent connection id.
func (m *Metrics) ConnectionRequest(id string) {
	if m == nil {
		return
	}
	m.connReqs.WithLabelValues(id).Inc()
}

// ConnectionRefused counts a request over permanent connection id refused by its
// limits or status; reason is the refusal's wire code (connection.Refusal.Reason).
func (m *Metrics) ConnectionRefused(id, reason string) {
	if m == nil {
		return
	}
	m.connRefd.WithLabelValues(id, reason).Inc()
}

// ForgetConnection drops a deleted connection's series.
func (m *Metrics) ForgetConnection(id string) {
	if m == nil {
		return
	}
	m.connReqs.DeletePartialMatch(prometheus.Labels{"connection": id})
	m.connRefd.DeletePartialMatch(prometheus.Labels{"connection": id})
}
