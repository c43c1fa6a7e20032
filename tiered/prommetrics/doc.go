// Package prommetrics exposes a tiercache cache's statistics as Prometheus
// metrics. The cache itself imports no Prometheus: it keeps counters, and a
// Collector reads a snapshot of them at scrape time.
//
// Register a collector on a registry you own; nothing is registered on the
// default registry and nothing happens at import:
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(prommetrics.NewCacheCollector("users", users))
//
// Each source has a constructor of that one shape, returning a
// prometheus.Collector: NewCacheCollector (a tiered.Cache),
// NewFlusherCollector (a writebehind.Flusher), NewWarmupCollector (a
// warmup.Warmup) and NewRedisCollector (the Redis under them, from INFO).
//
// Every metric has the constant label cache (the name you give, one per
// cache: a cache is one key pattern), except NewRedisCollector's, which
// have redis (the name you give the Redis) and node. No label ever holds a raw key. The
// metrics, and what to alert on, are listed in docs/metrics.md.
package prommetrics
