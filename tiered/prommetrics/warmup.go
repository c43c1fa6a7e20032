package prommetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiercache/tiercache/warmup"
)

// WarmupSource is what a warm-up collector reads: a *warmup.Warmup.
type WarmupSource interface {
	Progress() warmup.Report
	IsReady() bool
}

type warmupCollector struct {
	src         WarmupSource
	keys, ready *prometheus.Desc
}

// NewWarmupCollector returns a collector of a warm-up's progress, with the
// constant label cache=name: tiercache_warmup_keys{state="requested"|"done"}
// and tiercache_warmup_ready.
func NewWarmupCollector(name string, src WarmupSource) prometheus.Collector {
	l := prometheus.Labels{"cache": name}
	return &warmupCollector{
		src:   src,
		keys:  prometheus.NewDesc("tiercache_warmup_keys", "Warm-up keys requested and done so far.", []string{"state"}, l),
		ready: prometheus.NewDesc("tiercache_warmup_ready", "1 once the warm-up is over (finished or out of budget).", nil, l),
	}
}

func (c *warmupCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.keys; ch <- c.ready }

func (c *warmupCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.src.Progress()
	ch <- prometheus.MustNewConstMetric(c.keys, prometheus.GaugeValue, float64(p.Requested), "requested")
	ch <- prometheus.MustNewConstMetric(c.keys, prometheus.GaugeValue, float64(p.Found+p.Loaded+p.Failed), "done")
	r := 0.0
	if c.src.IsReady() {
		r = 1
	}
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, r)
}
