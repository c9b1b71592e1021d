package sdk

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"

	"github.com/fiberkit/fiberkit/sdk/transport"
)

// runtimeMetrics is a registry of the process's Go runtime and process collectors,
// reported for every module.
func runtimeMetrics() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Metrics gathers the process's runtime metrics and the module's own (Module.Metrics)
// for the host's scrape. Metrics that fail to gather (a collector's error, a name
// registered twice) are left out and logged once per distinct error; the rest are
// reported.
func (a *adapter) Metrics(context.Context) (fams []*dto.MetricFamily, err error) {
	defer a.recoverInto(&err, "metrics")
	gs := prometheus.Gatherers{a.runtime}
	if a.m.Metrics != nil {
		gs = append(gs, a.m.Metrics)
	}
	fams, gerr := gs.Gather()
	if gerr == nil {
		return fams, nil
	}
	msg := gerr.Error()
	if last := a.gatherErr.Swap(&msg); last == nil || *last != msg {
		a.log.Warn("some metrics were not gathered", "err", msg)
	}
	if len(fams) == 0 {
		return nil, fmt.Errorf("gather metrics: %w", gerr)
	}
	return fams, nil
}

var _ transport.MetricsModule = (*adapter)(nil)
