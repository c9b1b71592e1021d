package host_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/internal/testsupport"
)

// scrape is one parsed answer of the kit's metrics handler.
type scrape map[string]*dto.MetricFamily

// scrapeKit reads the kit's metrics through MetricsHTTPHandler, as Prometheus would.
func scrapeKit(t *testing.T, kit *host.Kit) scrape {
	t.Helper()
	rec := httptest.NewRecorder()
	kit.MetricsHTTPHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("metrics: status %d: %s", rec.Code, rec.Body)
	}
	return parseMetrics(t, rec.Body.String())
}

func parseMetrics(t *testing.T, text string) scrape {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse metrics: %v\n%s", err, text)
	}
	return fams
}

// series finds the series of family name whose labels include want ("k=v" pairs);
// nil if there is none.
func (s scrape) series(name string, want ...string) *dto.Metric {
	for _, m := range s[name].GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for _, w := range want {
			k, v, _ := strings.Cut(w, "=")
			if got, ok := have[k]; !ok || got != v {
				match = false
			}
		}
		if match {
			return m
		}
	}
	return nil
}

// value is a counter's, gauge's or untyped series' value, or a histogram's count; 0
// when the series does not exist.
func (s scrape) value(name string, want ...string) float64 {
	m := s.series(name, want...)
	switch {
	case m == nil:
		return 0
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}

// moved reports the difference of a series between two scrapes.
func moved(before, after scrape, name string, want ...string) float64 {
	return after.value(name, want...) - before.value(name, want...)
}

func expectMoved(t *testing.T, before, after scrape, by float64, name string, want ...string) {
	t.Helper()
	if got := moved(before, after, name, want...); got != by {
		t.Errorf("%s%v moved by %v, want %v", name, want, got, by)
	}
}

func TestMetricsCountRequestsOperationsAndWebSockets(t *testing.T) {
	s := startSite(t, kitOptions{ids: []string{"tm", "tm2"}, enabled: []string{"tm", "tm2"}})
	ctx := context.Background()
	before := scrapeKit(t, s.kit)

	for range 3 {
		if code, _ := testsupport.Get(t, s.url+"/fiberkit/tm/ping"); code != 200 {
			t.Fatalf("ping: %d", code)
		}
	}
	for _, code := range []int{404, 404, 503} {
		if got, _ := testsupport.Get(t, fmt.Sprintf("%s/fiberkit/tm/status/%d", s.url, code)); got != code {
			t.Fatalf("status/%d answered %d", code, got)
		}
	}
	// A path no route declares is the kit's 404, not a module request.
	testsupport.Get(t, s.url+"/fiberkit/tm/nowhere")

	for range 2 {
		if _, err := s.kit.Call(ctx, "alice", "tm", "whoami", []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.kit.Call(ctx, "alice", "tm", "no-such-op", []byte("{}")); err == nil {
		t.Fatal("unknown operation did not fail")
	}
	// tm calls tm2's whoami through the host: tm2 counts a call from tm.
	if _, err := s.kit.Call(ctx, "alice", "tm", "call", []byte(`{"Target":"tm2","Op":"whoami"}`)); err != nil {
		t.Fatal(err)
	}
	// The module's own metric, with a label it called "module".
	if _, err := s.kit.Call(ctx, "alice", "tm", "count", []byte(`{"N":5,"Label":"mine"}`)); err != nil {
		t.Fatal(err)
	}

	c := dialWS(t, wsURL(s, "/fiberkit/tm/ws"), nil)
	for i := range 4 {
		msg := fmt.Sprint("m", i)
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.ReadMessage(); err != nil || string(got) != msg {
			t.Fatalf("echo %q: %q %v", msg, got, err)
		}
	}
	during := scrapeKit(t, s.kit)
	expectMoved(t, before, during, 1, "fiberkit_websockets_open", "module=tm")
	expectMoved(t, before, during, 1, "fiberkit_websocket_connections_total", "module=tm")

	const ping = "route=/ping"
	expectMoved(t, before, during, 3, "fiberkit_http_requests_total", "module=tm", ping, "side=public", "code=2xx")
	expectMoved(t, before, during, 3, "fiberkit_http_request_duration_seconds", "module=tm", ping, "side=public")
	expectMoved(t, before, during, 2, "fiberkit_http_requests_total", "module=tm", "route=/status/:code", "code=4xx")
	expectMoved(t, before, during, 1, "fiberkit_http_requests_total", "module=tm", "route=/status/:code", "code=5xx")
	if n := len(during["fiberkit_http_requests_total"].GetMetric()); n != 3 {
		t.Errorf("%d request series, want 3 (routes never used add none): %v", n, during["fiberkit_http_requests_total"])
	}

	expectMoved(t, before, during, 2, "fiberkit_operation_calls_total", "module=tm", "caller=host", "op=whoami")
	expectMoved(t, before, during, 2, "fiberkit_operation_duration_seconds", "module=tm", "caller=host", "op=whoami")
	expectMoved(t, before, during, 1, "fiberkit_operation_calls_total", "module=tm", "caller=host", "op=unknown")
	expectMoved(t, before, during, 1, "fiberkit_operation_errors_total", "module=tm", "caller=host", "op=unknown", "code=unknown_operation")
	expectMoved(t, before, during, 1, "fiberkit_operation_calls_total", "module=tm2", "caller=tm", "op=whoami")
	expectMoved(t, before, during, 0, "fiberkit_operation_errors_total", "module=tm", "op=whoami")
	// count is not in the manifest, but the module described it when it started.
	expectMoved(t, before, during, 1, "fiberkit_operation_calls_total", "module=tm", "caller=host", "op=count")

	// The module's own metrics carry its id; its own "module" label is kept apart.
	expectMoved(t, before, during, 5, "testmodule_counted_total", "module=tm", "exported_module=mine")
	if during.series("testmodule_counted_total", "module=tm2") != nil {
		t.Error("tm2 reports tm's counter")
	}
	if v := during.value("fiberkit_module_metrics_up", "module=tm"); v != 1 {
		t.Errorf("fiberkit_module_metrics_up{module=tm} = %v, want 1", v)
	}
	// Its process's runtime metrics come along; a name of the kit's is not taken over.
	if during.series("go_goroutines", "module=tm") == nil || during.series("process_resident_memory_bytes", "module=tm2") == nil {
		t.Error("no runtime metrics of the plugin processes")
	}
	if v := during.value("fiberkit_module_restarts_total", "module=tm"); v != 0 || !strings.Contains(s.logs.String(), "module metric dropped") {
		t.Errorf("fiberkit_module_restarts_total{module=tm} = %v: the module's own metric of that name was not dropped and logged", v)
	}
	if during.value("fiberkit_module_state", "module=tm", "state=running") != 1 || during.value("fiberkit_module_state", "module=tm", "state=crashed") != 0 {
		t.Error("fiberkit_module_state does not say tm is running")
	}

	c.Close()
	eventually(t, "the WebSocket gauge to come down", func() bool {
		return scrapeKit(t, s.kit).value("fiberkit_websockets_open", "module=tm") == 0
	})
}

// The Fiber handler serves the same, mounted behind the app's own auth.
func TestMetricsHandlerMountedBehindAuth(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	app := fiber.New()
	app.Get("/metrics", basicAuth("ops", "ops-pw"), s.kit.MetricsHandler())
	resp, err := app.Test(httptest.NewRequest("GET", "/metrics", nil), 10_000)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without credentials: %d", resp.StatusCode)
	}
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.SetBasicAuth("ops", "ops-pw")
	resp, err = app.Test(req, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("with credentials: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got := parseMetrics(t, string(body)).value("fiberkit_module_state", "module=tm", "state=running"); got != 1 {
		t.Fatalf("fiberkit_module_state{module=tm,state=running} = %v", got)
	}
}

// A plugin killed with SIGKILL shows in the restart counter and the last-crash gauge.
func TestMetricsCountARestartAfterKill(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	before := scrapeKit(t, s.kit)
	if v := before.value("fiberkit_module_last_crash_timestamp_seconds", "module=tm"); v != 0 {
		t.Fatalf("last crash %v before any crash", v)
	}
	pid := s.waitState(t, "tm", host.StateRunning).PID
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a restarted process", func() bool {
		st, _ := s.kit.Module("tm")
		return st.State == host.StateRunning && st.PID != pid
	})
	after := scrapeKit(t, s.kit)
	expectMoved(t, before, after, 1, "fiberkit_module_restarts_total", "module=tm")
	crash := after.value("fiberkit_module_last_crash_timestamp_seconds", "module=tm")
	if at := time.Unix(0, int64(crash*1e9)); at.Before(killed.Add(-time.Second)) || at.After(time.Now()) {
		t.Errorf("last crash at %s, killed at %s", at, killed)
	}
	if after.value("fiberkit_module_state", "module=tm", "state=running") != 1 {
		t.Error("not running again according to fiberkit_module_state")
	}
	// The new process reports its own metrics again.
	if after.value("fiberkit_module_metrics_up", "module=tm") != 1 || after.series("go_goroutines", "module=tm") == nil {
		t.Error("the restarted module's own metrics are missing")
	}
}

// A module that reports no metrics of its own (the raw module implements
// transport.Module without them, as a plugin built before the Metrics call) and a
// disabled one are left out; the scrape still answers with everything else.
func TestMetricsSkipModulesWithoutMetrics(t *testing.T) {
	s := startRawSite(t, false)
	got := scrapeKit(t, s.kit)
	if v := got.value("fiberkit_module_state", "module=rm", "state=running"); v != 1 {
		t.Fatalf("fiberkit_module_state{module=rm,state=running} = %v", v)
	}
	if v := got.series("fiberkit_module_metrics_up", "module=rm"); v == nil || v.GetGauge().GetValue() != 0 {
		t.Errorf("fiberkit_module_metrics_up{module=rm} = %v, want 0", v)
	}
	if got.series("go_goroutines", "module=rm") != nil {
		t.Error("the raw module reported runtime metrics it does not have")
	}
	if got.series("go_goroutines") == nil {
		t.Error("the host's own runtime metrics are missing")
	}
	if strings.Contains(s.logs.String(), "module metrics not gathered") {
		t.Error("a module without metrics was logged as a failure")
	}

	d := startSite(t, kitOptions{ids: []string{"tm", "off"}, enabled: []string{"tm"}})
	got = scrapeKit(t, d.kit)
	if got.value("fiberkit_module_state", "module=off", "state=disabled") != 1 || got.value("fiberkit_module_metrics_up", "module=off") != 0 {
		t.Error("the disabled module is not shown as disabled without metrics")
	}
	if got.value("fiberkit_module_metrics_up", "module=tm") != 1 {
		t.Error("the enabled module's metrics are missing")
	}
}
