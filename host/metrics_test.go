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

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/internal/testsupport"
)

// scrape is one parsed answer of the kit's metrics handler.
type scrape = testsupport.Metrics

// scrapeKit reads the kit's metrics through MetricsHTTPHandler, as Prometheus would.
func scrapeKit(t *testing.T, kit *host.Kit) scrape {
	t.Helper()
	return testsupport.Scrape(t, kit.MetricsHTTPHandler())
}

func expectMoved(t *testing.T, before, after scrape, by float64, name string, want ...string) {
	t.Helper()
	if got := after.Moved(before, name, want...); got != by {
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
	if len(during.Series("testmodule_counted_total", "module=tm2")) != 0 {
		t.Error("tm2 reports tm's counter")
	}
	if v := during.Value("fiberkit_module_metrics_up", "module=tm"); v != 1 {
		t.Errorf("fiberkit_module_metrics_up{module=tm} = %v, want 1", v)
	}
	// Its process's runtime metrics come along; a name of the kit's is not taken over.
	if len(during.Series("go_goroutines", "module=tm")) == 0 || len(during.Series("process_resident_memory_bytes", "module=tm2")) == 0 {
		t.Error("no runtime metrics of the plugin processes")
	}
	if v := during.Value("fiberkit_module_restarts_total", "module=tm"); v != 0 || !strings.Contains(s.logs.String(), "module metric dropped") {
		t.Errorf("fiberkit_module_restarts_total{module=tm} = %v: the module's own metric of that name was not dropped and logged", v)
	}
	if during.Value("fiberkit_module_state", "module=tm", "state=running") != 1 || during.Value("fiberkit_module_state", "module=tm", "state=crashed") != 0 {
		t.Error("fiberkit_module_state does not say tm is running")
	}

	c.Close()
	testsupport.Eventually(t, "the WebSocket gauge to come down", func() bool {
		return scrapeKit(t, s.kit).Value("fiberkit_websockets_open", "module=tm") == 0
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
	if got := testsupport.ParseMetrics(t, string(body)).Value("fiberkit_module_state", "module=tm", "state=running"); got != 1 {
		t.Fatalf("fiberkit_module_state{module=tm,state=running} = %v", got)
	}
}

// A plugin killed with SIGKILL shows in the restart counter and the last-crash gauge.
func TestMetricsCountARestartAfterKill(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	before := scrapeKit(t, s.kit)
	if v := before.Value("fiberkit_module_last_crash_timestamp_seconds", "module=tm"); v != 0 {
		t.Fatalf("last crash %v before any crash", v)
	}
	pid := s.waitState(t, "tm", host.StateRunning).PID
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, "a restarted process", func() bool {
		st, _ := s.kit.Module("tm")
		return st.State == host.StateRunning && st.PID != pid
	})
	after := scrapeKit(t, s.kit)
	expectMoved(t, before, after, 1, "fiberkit_module_restarts_total", "module=tm")
	crash := after.Value("fiberkit_module_last_crash_timestamp_seconds", "module=tm")
	if at := time.Unix(0, int64(crash*1e9)); at.Before(killed.Add(-time.Second)) || at.After(time.Now()) {
		t.Errorf("last crash at %s, killed at %s", at, killed)
	}
	if after.Value("fiberkit_module_state", "module=tm", "state=running") != 1 {
		t.Error("not running again according to fiberkit_module_state")
	}
	// The new process reports its own metrics again.
	if after.Value("fiberkit_module_metrics_up", "module=tm") != 1 || len(after.Series("go_goroutines", "module=tm")) == 0 {
		t.Error("the restarted module's own metrics are missing")
	}
}

// A module that reports no metrics of its own (the raw module implements
// transport.Module without them, as a plugin built before the Metrics call) and a
// disabled one are left out; the scrape still answers with everything else.
func TestMetricsSkipModulesWithoutMetrics(t *testing.T) {
	s := startRawSite(t, false)
	got := scrapeKit(t, s.kit)
	if v := got.Value("fiberkit_module_state", "module=rm", "state=running"); v != 1 {
		t.Fatalf("fiberkit_module_state{module=rm,state=running} = %v", v)
	}
	if v := got.Series("fiberkit_module_metrics_up", "module=rm"); len(v) != 1 || v[0].GetGauge().GetValue() != 0 {
		t.Errorf("fiberkit_module_metrics_up{module=rm} = %v, want 0", v)
	}
	if len(got.Series("go_goroutines", "module=rm")) != 0 {
		t.Error("the raw module reported runtime metrics it does not have")
	}
	if len(got.Series("go_goroutines")) == 0 {
		t.Error("the host's own runtime metrics are missing")
	}
	if strings.Contains(s.logs.String(), "module metrics not gathered") {
		t.Error("a module without metrics was logged as a failure")
	}

	d := startSite(t, kitOptions{ids: []string{"tm", "off"}, enabled: []string{"tm"}})
	got = scrapeKit(t, d.kit)
	if got.Value("fiberkit_module_state", "module=off", "state=disabled") != 1 || got.Value("fiberkit_module_metrics_up", "module=off") != 0 {
		t.Error("the disabled module is not shown as disabled without metrics")
	}
	if got.Value("fiberkit_module_metrics_up", "module=tm") != 1 {
		t.Error("the enabled module's metrics are missing")
	}
}
