package prommetrics

import "github.com/prometheus/client_golang/prometheus"

// WarmupProgress reports a warm-up's keys requested and done so far, and
// whether it is over; with package warmup:
//
//	func() (int, int, bool) { p := w.Progress(); return p.Requested, p.Found + p.Loaded + p.Failed, w.IsReady() }
type WarmupProgress func() (requested, done int, ready bool)

type warmupCollector struct {
	progress    WarmupProgress
	keys, ready *prometheus.Desc
}

// RegisterWarmup exposes a warm-up's progress on reg:
// tiercache_warmup_keys{state="requested"|"done"} and tiercache_warmup_ready.
func RegisterWarmup(reg prometheus.Registerer, name string, progress WarmupProgress) error {
	l := prometheus.Labels{"cache": name}
	return reg.Register(&warmupCollector{
		progress: progress,
		keys:     prometheus.NewDesc("tiercache_warmup_keys", "Warm-up keys requested and done so far.", []string{"state"}, l),
		ready:    prometheus.NewDesc("tiercache_warmup_ready", "1 once the warm-up is over (finished or out of budget).", nil, l),
	})
}

func (c *warmupCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.keys; ch <- c.ready }

func (c *warmupCollector) Collect(ch chan<- prometheus.Metric) {
	requested, done, ready := c.progress()
	ch <- prometheus.MustNewConstMetric(c.keys, prometheus.GaugeValue, float64(requested), "requested")
	ch <- prometheus.MustNewConstMetric(c.keys, prometheus.GaugeValue, float64(done), "done")
	r := 0.0
	if ready {
		r = 1
	}
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, r)
}
