package sdk

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	dto "github.com/prometheus/client_model/go"
)

func familyNames(fams []*dto.MetricFamily) map[string]*dto.MetricFamily {
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// A module without metrics of its own still reports its process's runtime metrics;
// one with a registry reports both.
func TestAdapterMetricsRuntimeAndOwn(t *testing.T) {
	fams, err := newAdapter(Module{Logger: slog.New(slog.DiscardHandler)}).Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := familyNames(fams); got["go_goroutines"] == nil || got["process_cpu_seconds_total"] == nil {
		t.Fatalf("no runtime metrics without Module.Metrics: %d families", len(fams))
	}

	reg := prometheus.NewRegistry()
	promauto.With(reg).NewCounter(prometheus.CounterOpts{Name: "greetings_total", Help: "Greetings."}).Add(3)
	fams, err = newAdapter(Module{Metrics: reg, Logger: slog.New(slog.DiscardHandler)}).Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := familyNames(fams)
	if f := got["greetings_total"]; f == nil || f.GetMetric()[0].GetCounter().GetValue() != 3 {
		t.Fatalf("greetings_total: %v", f)
	}
	if got["go_goroutines"] == nil {
		t.Fatal("runtime metrics missing next to the module's own")
	}
}

// A module that registers the Go collector itself, or has a failing collector, still
// reports what gathered, and the error is logged once, not on every scrape.
func TestAdapterMetricsPartialFailureLoggedOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	promauto.With(reg).NewGauge(prometheus.GaugeOpts{Name: "go_goroutines", Help: "Mine."}).Set(1)
	promauto.With(reg).NewGauge(prometheus.GaugeOpts{Name: "queue_length", Help: "Queue."}).Set(7)
	var logs bytes.Buffer
	a := newAdapter(Module{Metrics: reg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for range 3 {
		fams, err := a.Metrics(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if familyNames(fams)["queue_length"] == nil {
			t.Fatal("the module's other metrics were lost")
		}
	}
	if n := strings.Count(logs.String(), "some metrics were not gathered"); n != 1 {
		t.Fatalf("logged %d times:\n%s", n, logs.String())
	}
}
