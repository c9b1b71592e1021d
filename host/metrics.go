package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/fiberkit/fiberkit/host/manifest"
	"github.com/fiberkit/fiberkit/sdk/transport"
)

// moduleLabel is the label naming the module every per-module series carries; a
// module's own metrics get it from the host.
const moduleLabel = "module"

// moduleMetricsTimeout bounds how long a scrape waits for one module's own metrics;
// a module that is slower is left out of that scrape.
const moduleMetricsTimeout = 2 * time.Second

// latencyBuckets (seconds) suit both a proxied route (~0.2 ms of kit overhead) and a
// slow page or operation.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// statusClasses are the values of the code label, indexed by statusClass.
var statusClasses = [...]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

func statusClass(status int) int {
	if c := status / 100; c >= 1 && c <= 5 {
		return c
	}
	return 0
}

// kitMetrics is the Kit's own Prometheus registry and the vectors every module's
// metrics are curried from.
type kitMetrics struct {
	reg *prometheus.Registry

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	wsConns      *prometheus.CounterVec
	opCalls      *prometheus.CounterVec
	opDuration   *prometheus.HistogramVec
	opErrors     *prometheus.CounterVec
	metricsUp    *prometheus.GaugeVec
}

func newKitMetrics(k *Kit) *kitMetrics {
	km := &kitMetrics{
		reg: prometheus.NewRegistry(),
		httpRequests: counterVec("fiberkit_http_requests_total",
			"Requests proxied to a module route, by manifest route and status class (code: 2xx, 4xx, 5xx…). 502/503/504 are the kit's own answers for a module that failed, was down or did not answer.",
			moduleLabel, "side", "route", "code"),
		httpDuration: latencyVec("fiberkit_http_request_duration_seconds",
			"Time from a request reaching the kit to the end of the module's response (a streamed response counts until its last byte).",
			moduleLabel, "side", "route"),
		wsConns: counterVec("fiberkit_websocket_connections_total",
			"WebSocket connections a module accepted and the kit bridged.", moduleLabel),
		opCalls: counterVec("fiberkit_operation_calls_total",
			`Operation calls to a module, by caller ("host" for the app's own code, else the calling module), operation ("unknown" for a name the module does not declare) and kind ("unary", or "stream" for a streaming operation, counted when opened).`,
			moduleLabel, "caller", "op", "kind"),
		opDuration: latencyVec("fiberkit_operation_duration_seconds",
			"Time an operation call to a module took, failed ones included; for a stream (kind=stream), from its opening to its end.",
			moduleLabel, "caller", "op", "kind"),
		opErrors: counterVec("fiberkit_operation_errors_total",
			"Operation calls that failed, by error code (module_unavailable, invalid_input, the module's own codes…). A stream its caller closed has not failed.",
			moduleLabel, "caller", "op", "kind", "code"),
		metricsUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fiberkit_module_metrics_up",
			Help: "1 when the last scrape gathered the module's own metrics; 0 when it was skipped (disabled, down, too slow, or a plugin that reports none).",
		}, []string{moduleLabel}),
	}
	km.reg.MustRegister(km.httpRequests, km.httpDuration, km.wsConns, km.opCalls, km.opDuration, km.opErrors, km.metricsUp,
		&moduleCollector{k: k},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return km
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

func latencyVec(name, help string, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: latencyBuckets}, labels)
}

// moduleMetrics are one module's series, curried once so that a request only
// increments what it finds ready.
type moduleMetrics struct {
	routes     []routeMetrics // parallel to the manifest's Routes
	wsConns    prometheus.Counter
	opCalls    *prometheus.CounterVec
	opDuration prometheus.ObserverVec
	opErrors   *prometheus.CounterVec
	up         prometheus.Gauge
}

func (km *kitMetrics) forModule(m *module) *moduleMetrics {
	id := prometheus.Labels{moduleLabel: m.man.ID}
	mm := &moduleMetrics{
		routes:     make([]routeMetrics, len(m.man.Routes)),
		wsConns:    km.wsConns.WithLabelValues(m.man.ID),
		opCalls:    km.opCalls.MustCurryWith(id),
		opDuration: km.opDuration.MustCurryWith(id),
		opErrors:   km.opErrors.MustCurryWith(id),
		up:         km.metricsUp.WithLabelValues(m.man.ID),
	}
	for i, r := range m.man.Routes {
		side := "public"
		if r.Admin {
			side = "admin"
		}
		labels := prometheus.Labels{moduleLabel: m.man.ID, "side": side, "route": r.Path}
		mm.routes[i] = routeMetrics{requests: km.httpRequests.MustCurryWith(labels), duration: km.httpDuration.MustCurryWith(labels)}
	}
	return mm
}

// routeMetrics are one manifest route's series. They are created on the route's first
// request (so routes never used add no series) and cached, so a request costs two
// atomic loads, a counter increment and a histogram observation.
type routeMetrics struct {
	requests *prometheus.CounterVec // curried down to the code label
	duration prometheus.ObserverVec // curried down to no label
	byClass  [len(statusClasses)]atomic.Pointer[prometheus.Counter]
	observer atomic.Pointer[prometheus.Observer]
}

// observe records one request answered with status after d.
func (r *routeMetrics) observe(status int, d time.Duration) {
	class := statusClass(status)
	c := r.byClass[class].Load()
	if c == nil {
		counter := r.requests.WithLabelValues(statusClasses[class])
		c = &counter
		r.byClass[class].Store(c)
	}
	(*c).Inc()
	o := r.observer.Load()
	if o == nil {
		obs := r.duration.WithLabelValues()
		o = &obs
		r.observer.Store(o)
	}
	(*o).Observe(d.Seconds())
}

// The values of the kind label of the operation metrics.
const (
	kindUnary  = "unary"
	kindStream = "stream"
)

// observeCall records one unary operation call.
func (mm *moduleMetrics) observeCall(caller, op string, d time.Duration, err error) {
	mm.countCall(caller, op, kindUnary)
	mm.observeEnd(caller, op, kindUnary, d, err)
}

// countCall counts an operation call as it starts.
func (mm *moduleMetrics) countCall(caller, op, kind string) {
	mm.opCalls.WithLabelValues(caller, op, kind).Inc()
}

// observeEnd records how long an operation call took and how it failed, if it did.
func (mm *moduleMetrics) observeEnd(caller, op, kind string, d time.Duration, err error) {
	mm.opDuration.WithLabelValues(caller, op, kind).Observe(d.Seconds())
	if err != nil {
		mm.opErrors.WithLabelValues(caller, op, kind, errorCode(err)).Inc()
	}
}

// opLabel is op as the op label shows it: a name the module declares in its manifest
// or described when its process started, else "unknown" — callers choose the name,
// and the label must not grow with whatever they send.
func (m *module) opLabel(op string) string {
	m.mu.Lock()
	known := m.ops[op]
	m.mu.Unlock()
	if known || slices.ContainsFunc(m.man.Operations, func(o manifest.Operation) bool { return o.Name == op }) {
		return op
	}
	return "unknown"
}

// callerLabel names who made an operation call: the calling module, or "host" for
// the app's own code.
func callerLabel(c transport.Caller) string {
	if c.Plugin != "" {
		return c.Plugin
	}
	return "host"
}

// errorCode is the code label of a failed operation call.
func errorCode(err error) string {
	var op *transport.OpError
	switch {
	case errors.As(err, &op):
		return op.Code
	case errors.Is(err, transport.ErrUnimplemented):
		return "unimplemented"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	}
	return transport.CodeInternal
}

// moduleCollector reports what the supervisors know at scrape time: each module's
// version, state, restarts, last crash and open WebSockets. Nothing of it is updated
// on the hot path.
type moduleCollector struct {
	k *Kit
}

var (
	descInfo = prometheus.NewDesc("fiberkit_module_info",
		"The module as loaded from its manifest (always 1).", []string{moduleLabel, "version"}, nil)
	descState = prometheus.NewDesc("fiberkit_module_state",
		"1 for the module's current process state, 0 for the others.", []string{moduleLabel, "state"}, nil)
	descRestarts = prometheus.NewDesc("fiberkit_module_restarts_total",
		"Times the module's plugin process died or hung and was restarted.", []string{moduleLabel}, nil)
	descLastCrash = prometheus.NewDesc("fiberkit_module_last_crash_timestamp_seconds",
		"When the module's process last died, hung or failed to start (unix seconds; 0 = never).", []string{moduleLabel}, nil)
	descWSOpen = prometheus.NewDesc("fiberkit_websockets_open",
		"WebSocket connections open to the module.", []string{moduleLabel}, nil)
)

// allStates are the values of fiberkit_module_state's state label.
var allStates = []State{StateDisabled, StateStarting, StateRunning, StateRestarting, StateCrashed}

// Describe implements prometheus.Collector.
func (c *moduleCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInfo, descState, descRestarts, descLastCrash, descWSOpen} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *moduleCollector) Collect(ch chan<- prometheus.Metric) {
	for _, id := range c.k.order {
		m := c.k.modules[id]
		st := m.status()
		ch <- prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1, id, st.Version)
		for _, s := range allStates {
			v := 0.0
			if st.State == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, id, string(s))
		}
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(st.Restarts), id)
		crash := 0.0
		if !st.LastCrash.IsZero() {
			crash = float64(st.LastCrash.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(descLastCrash, prometheus.GaugeValue, crash, id)
		ch <- prometheus.MustNewConstMetric(descWSOpen, prometheus.GaugeValue, float64(m.sock.count()), id)
	}
}

// MetricsRegistry is the Kit's Prometheus registry, for the app to add its own
// collectors to what MetricsHandler serves. It already holds the Go runtime and
// process collectors of the host process.
func (k *Kit) MetricsRegistry() prometheus.Registerer { return k.metrics.reg }

// MetricsHandler serves the kit's metrics in the Prometheus exposition format: the
// kit's own, the host process's, and every running module's own metrics (gathered
// from its process at scrape time, with its id as the module label). Mount it where
// the app wants, behind the app's own auth or on a separate listener:
//
//	app.Get("/metrics", myAdminAuth, kit.MetricsHandler())
func (k *Kit) MetricsHandler() fiber.Handler { return adaptor.HTTPHandler(k.MetricsHTTPHandler()) }

// MetricsHTTPHandler is MetricsHandler as a net/http handler, for a separate plain
// listener:
//
//	go http.ListenAndServe("127.0.0.1:9100", kit.MetricsHTTPHandler())
func (k *Kit) MetricsHTTPHandler() http.Handler {
	return promhttp.HandlerFor(prometheus.GathererFunc(k.gatherMetrics), promhttp.HandlerOpts{
		ErrorLog:      metricsErrorLog{k.log},
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// metricsErrorLog passes promhttp's errors (inconsistent metrics, left out of the
// answer) to the kit's logger.
type metricsErrorLog struct{ log *slog.Logger }

func (l metricsErrorLog) Println(v ...any) {
	l.log.Warn("metrics scrape", "err", strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}

// gatherMetrics is one scrape: every running module's own metrics, asked for all at
// once, then the kit's registry.
func (k *Kit) gatherMetrics() ([]*dto.MetricFamily, error) {
	byModule := make([][]*dto.MetricFamily, len(k.order))
	var wg sync.WaitGroup
	for i, id := range k.order {
		m := k.modules[id]
		wg.Go(func() {
			fams, err := m.gatherOwnMetrics()
			if err != nil {
				m.metrics.up.Set(0)
				if !errors.Is(err, transport.ErrUnimplemented) && !isDownOrDisabled(err) {
					k.log.Warn("module metrics not gathered", "module", m.man.ID, "err", err)
				}
				return
			}
			m.metrics.up.Set(1)
			byModule[i] = fams
		})
	}
	wg.Wait()
	own, err := k.metrics.reg.Gather()
	if err != nil && len(own) == 0 {
		return nil, fmt.Errorf("gather kit metrics: %w", err)
	}
	kitNames := make(map[string]bool, len(own))
	for _, f := range own {
		kitNames[f.GetName()] = true
	}
	gs := prometheus.Gatherers{staticFamilies(own)}
	for i, fams := range byModule {
		if len(fams) > 0 {
			gs = append(gs, staticFamilies(k.withoutKitNames(k.order[i], fams, kitNames)))
		}
	}
	fams, gerr := gs.Gather()
	return fams, errors.Join(err, gerr)
}

func isDownOrDisabled(err error) bool {
	var op *transport.OpError
	return errors.As(err, &op) && (op.Code == transport.CodeModuleDown || op.Code == transport.CodeModuleDisabled)
}

// withoutKitNames drops a module's families named like one of the kit's own
// fiberkit_* metrics, which they would corrupt; families shared on purpose (go_*,
// process_*) are kept.
func (k *Kit) withoutKitNames(id string, fams []*dto.MetricFamily, kitNames map[string]bool) []*dto.MetricFamily {
	return slices.DeleteFunc(fams, func(f *dto.MetricFamily) bool {
		if strings.HasPrefix(f.GetName(), "fiberkit_") && kitNames[f.GetName()] {
			k.log.Warn("module metric dropped: the name belongs to the kit", "module", id, "metric", f.GetName())
			return true
		}
		return false
	})
}

// staticFamilies is a Gatherer of families gathered already.
func staticFamilies(fams []*dto.MetricFamily) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return fams, nil })
}

// gatherOwnMetrics asks the module's process for its own metrics and labels them with
// the module id. A module's own "module" label is kept as "exported_module".
func (m *module) gatherOwnMetrics() ([]*dto.MetricFamily, error) {
	rpc, err := m.client()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), moduleMetricsTimeout)
	defer cancel()
	fams, err := rpc.Metrics(ctx)
	if err != nil {
		return nil, fmt.Errorf("gather metrics: %w", err)
	}
	for _, f := range fams {
		for _, metric := range f.GetMetric() {
			metric.Label = labelWithModule(metric.GetLabel(), m.man.ID)
		}
	}
	return fams, nil
}

// labelWithModule adds module=id to a metric's labels, sorted by name as the
// exposition expects, renaming a label the module called "module" itself.
func labelWithModule(labels []*dto.LabelPair, id string) []*dto.LabelPair {
	for _, l := range labels {
		if l.GetName() == moduleLabel {
			l.Name = new("exported_" + moduleLabel)
		}
	}
	labels = append(labels, &dto.LabelPair{Name: new(moduleLabel), Value: new(id)})
	slices.SortFunc(labels, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
	return labels
}
