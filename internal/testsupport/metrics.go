package testsupport

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics is one parsed scrape of a metrics handler, by family name.
type Metrics map[string]*dto.MetricFamily

// Scrape reads h (a kit's MetricsHTTPHandler) as Prometheus would and parses it.
func Scrape(t testing.TB, h http.Handler) Metrics {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("metrics: status %d: %s", rec.Code, rec.Body)
	}
	return ParseMetrics(t, rec.Body.String())
}

// ParseMetrics parses a scrape in Prometheus's text format.
func ParseMetrics(t testing.TB, text string) Metrics {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse metrics: %v\n%s", err, text)
	}
	return fams
}

// Series returns the series of family name whose labels include every one of want
// ("k=v").
func (m Metrics) Series(name string, want ...string) []*dto.Metric {
	var out []*dto.Metric
	for _, s := range m[name].GetMetric() {
		have := map[string]string{}
		for _, l := range s.GetLabel() {
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
			out = append(out, s)
		}
	}
	return out
}

// Value sums the series Series(name, want...) finds: counters and gauges by value,
// histograms by sample count; 0 when none matches.
func (m Metrics) Value(name string, want ...string) float64 {
	var sum float64
	for _, s := range m.Series(name, want...) {
		switch {
		case s.Counter != nil:
			sum += s.GetCounter().GetValue()
		case s.Gauge != nil:
			sum += s.GetGauge().GetValue()
		case s.Histogram != nil:
			sum += float64(s.GetHistogram().GetSampleCount())
		default:
			sum += s.GetUntyped().GetValue()
		}
	}
	return sum
}

// Moved is how much Value(name, want...) moved from before to m.
func (m Metrics) Moved(before Metrics, name string, want ...string) float64 {
	return m.Value(name, want...) - before.Value(name, want...)
}

// Eventually fails t unless cond holds within 15 s (looked at every 25 ms).
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
