package syncmetrics_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/fiberkit/fiberkit/plugins/sync/syncmetrics"
)

func newMetrics(t *testing.T) (*syncmetrics.Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := syncmetrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

func TestTransfersRowsAndDurations(t *testing.T) {
	m, reg := newMetrics(t)
	m.TransferStarted(syncmetrics.Receive, "overwrite")
	m.TransferStarted(syncmetrics.Receive, "overwrite")
	m.TransferStarted(syncmetrics.Receive, "merge")
	m.TransferStarted(syncmetrics.Send, "")
	m.Moved(syncmetrics.Receive, 1500, 64<<10)
	m.Moved(syncmetrics.Receive, 500, 16<<10)
	m.Moved(syncmetrics.Send, 2000, 80<<10)
	m.TransferFinished(syncmetrics.Receive, "overwrite", 1500*time.Millisecond)
	m.TransferFailed(syncmetrics.Receive, "overwrite", 20*time.Millisecond)
	m.TransferCancelled(syncmetrics.Receive, "merge", 3*time.Second)
	m.TransferFinished(syncmetrics.Send, "", 2*time.Second)

	err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP fiberkit_sync_transfers_started_total Table transfers started, by direction (send, receive) and conflict strategy.
# TYPE fiberkit_sync_transfers_started_total counter
fiberkit_sync_transfers_started_total{direction="receive",strategy="merge"} 1
fiberkit_sync_transfers_started_total{direction="receive",strategy="overwrite"} 2
fiberkit_sync_transfers_started_total{direction="send",strategy=""} 1
# HELP fiberkit_sync_transfers_ended_total Table transfers ended, by direction, strategy and status (done, failed, cancelled).
# TYPE fiberkit_sync_transfers_ended_total counter
fiberkit_sync_transfers_ended_total{direction="receive",status="cancelled",strategy="merge"} 1
fiberkit_sync_transfers_ended_total{direction="receive",status="done",strategy="overwrite"} 1
fiberkit_sync_transfers_ended_total{direction="receive",status="failed",strategy="overwrite"} 1
fiberkit_sync_transfers_ended_total{direction="send",status="done",strategy=""} 1
# HELP fiberkit_sync_rows_total Rows moved, by direction (sent, or received and written).
# TYPE fiberkit_sync_rows_total counter
fiberkit_sync_rows_total{direction="receive"} 2000
fiberkit_sync_rows_total{direction="send"} 2000
# HELP fiberkit_sync_bytes_total Bytes of table data moved, by direction.
# TYPE fiberkit_sync_bytes_total counter
fiberkit_sync_bytes_total{direction="receive"} 81920
fiberkit_sync_bytes_total{direction="send"} 81920
`), "fiberkit_sync_transfers_started_total", "fiberkit_sync_transfers_ended_total", "fiberkit_sync_rows_total", "fiberkit_sync_bytes_total")
	if err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(reg, "fiberkit_sync_transfer_duration_seconds"); n != 4 {
		t.Fatalf("%d duration series, want 4 (receive done/failed/cancelled, send done)", n)
	}
	// The 1.5 s transfer falls in the 2.5 s bucket, not the 1 s one.
	h := histogram(t, reg, "fiberkit_sync_transfer_duration_seconds", "receive", "done")
	if h.GetSampleCount() != 1 || h.GetSampleSum() != 1.5 {
		t.Fatalf("receive/done: count %d sum %v", h.GetSampleCount(), h.GetSampleSum())
	}
	for _, b := range h.GetBucket() {
		want := uint64(0)
		if b.GetUpperBound() >= 2.5 {
			want = 1
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v holds %d", b.GetUpperBound(), b.GetCumulativeCount())
		}
	}
}

// histogram is the series of histogram name with the given direction and status.
func histogram(t *testing.T, reg *prometheus.Registry, name, direction, status string) *dto.Histogram {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["direction"] == direction && labels["status"] == status {
				return m.GetHistogram()
			}
		}
	}
	t.Fatalf("no %s{direction=%q,status=%q}", name, direction, status)
	return nil
}

func TestSessionsApprovalsRefusalsAndLockouts(t *testing.T) {
	m, reg := newMetrics(t)
	m.SessionOpened(syncmetrics.Send)
	m.SessionOpened(syncmetrics.Send)
	m.SessionOpened(syncmetrics.Receive)
	m.SessionClosed(syncmetrics.Send)
	m.SetPendingApprovals(3)
	m.SetPendingApprovals(2)
	for range 4 {
		m.AttemptRefused("wrong_password")
	}
	m.AttemptRefused("invalid_code")
	m.LockedOut()

	err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP fiberkit_sync_sessions_active Sessions with a live connection to the other site, by direction.
# TYPE fiberkit_sync_sessions_active gauge
fiberkit_sync_sessions_active{direction="receive"} 1
fiberkit_sync_sessions_active{direction="send"} 1
# HELP fiberkit_sync_approvals_pending Receivers' requests waiting for an admin's decision on this (sending) site.
# TYPE fiberkit_sync_approvals_pending gauge
fiberkit_sync_approvals_pending 2
# HELP fiberkit_sync_attempts_refused_total Attempts to redeem a code that were refused, by reason (invalid_code, wrong_password, rate_limited…).
# TYPE fiberkit_sync_attempts_refused_total counter
fiberkit_sync_attempts_refused_total{reason="invalid_code"} 1
fiberkit_sync_attempts_refused_total{reason="wrong_password"} 4
# HELP fiberkit_sync_lockouts_total Addresses locked out after too many failed attempts.
# TYPE fiberkit_sync_lockouts_total counter
fiberkit_sync_lockouts_total 1
`), "fiberkit_sync_sessions_active", "fiberkit_sync_approvals_pending", "fiberkit_sync_attempts_refused_total", "fiberkit_sync_lockouts_total")
	if err != nil {
		t.Fatal(err)
	}
}

func TestConnectionRequestsRefusalsAndForget(t *testing.T) {
	m, reg := newMetrics(t)
	for range 5 {
		m.ConnectionRequest("c1")
	}
	m.ConnectionRequest("c2")
	m.ConnectionRefused("c1", "rate_limited")
	m.ConnectionRefused("c1", "rate_limited")
	m.ConnectionRefused("c2", "record_limit")
	const want = `
# HELP fiberkit_sync_connection_refusals_total Requests over a permanent connection refused by its limits or status, by connection id and reason (rate_limited, record_limit…).
# TYPE fiberkit_sync_connection_refusals_total counter
fiberkit_sync_connection_refusals_total{connection="c1",reason="rate_limited"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want+`fiberkit_sync_connection_refusals_total{connection="c2",reason="record_limit"} 1
# HELP fiberkit_sync_connection_requests_total Requests made over a permanent connection, by connection id.
# TYPE fiberkit_sync_connection_requests_total counter
fiberkit_sync_connection_requests_total{connection="c1"} 5
fiberkit_sync_connection_requests_total{connection="c2"} 1
`), "fiberkit_sync_connection_requests_total", "fiberkit_sync_connection_refusals_total"); err != nil {
		t.Fatal(err)
	}
	m.ForgetConnection("c2")
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want+`# HELP fiberkit_sync_connection_requests_total Requests made over a permanent connection, by connection id.
# TYPE fiberkit_sync_connection_requests_total counter
fiberkit_sync_connection_requests_total{connection="c1"} 5
`), "fiberkit_sync_connection_requests_total", "fiberkit_sync_connection_refusals_total"); err != nil {
		t.Fatal(err)
	}
}

// Registering twice on one registry fails with an error saying what was being done;
// a nil registry and a nil *Metrics are both usable.
func TestRegistrationAndNil(t *testing.T) {
	_, reg := newMetrics(t)
	_, err := syncmetrics.New(reg)
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) || !strings.Contains(err.Error(), "register sync metrics") {
		t.Fatalf("second registration: %v", err)
	}
	unregistered, err := syncmetrics.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	unregistered.TransferStarted(syncmetrics.Send, "")
	var none *syncmetrics.Metrics
	none.TransferStarted(syncmetrics.Send, "skip")
	none.TransferFinished(syncmetrics.Send, "skip", time.Second)
	none.Moved(syncmetrics.Send, 1, 1)
	none.SessionOpened(syncmetrics.Send)
	none.SessionClosed(syncmetrics.Send)
	none.SetPendingApprovals(1)
	none.AttemptRefused("invalid_code")
	none.LockedOut()
	none.ConnectionRequest("c")
	none.ConnectionRefused("c", "rate_limited")
	none.ForgetConnection("c")
}
