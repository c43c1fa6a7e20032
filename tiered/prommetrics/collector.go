package prommetrics

import (
	"math"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// CacheSource is what a cache collector reads: any *tiered.Cache[V].
type CacheSource interface {
	Stats() tiered.Stats
}

// cacheCollector is a prometheus.Collector over one cache's Stats.
type cacheCollector struct {
	src   CacheSource
	descs descs
}

type descs struct {
	requests, loads, loadErrors, loadDuration, leaseWaits,
	published, received, lag, flushes,
	remoteCalls, remoteErrors, remoteTimeouts, remoteRejected,
	breakerState, breakerOpens,
	evictions, rejections, droppedSets, fenced, cost,
	corrupt, typeClashes, fillsVoided, refreshes, earlyRefreshes, refreshesDeferred, secondDeletes,
	repairs, replayed, lost, tooLarge *prometheus.Desc
}

// NewCacheCollector returns a collector of a cache's statistics, with the
// constant label cache=name; register it on a registry you own.
func NewCacheCollector(name string, src CacheSource) prometheus.Collector {
	l := prometheus.Labels{"cache": name}
	d := func(metric, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("tiercache_"+metric, help, labels, l)
	}
	return &cacheCollector{src: src, descs: descs{
		requests:          d("requests_total", "Reads by the tier that answered and the result: local hit/miss/stale/negative, remote hit/miss.", "tier", "result"),
		loads:             d("loads_total", "Loader calls (single and batch)."),
		loadErrors:        d("load_errors_total", "Loader calls that failed or panicked (not-found excluded)."),
		loadDuration:      d("load_duration_seconds", "Loader call durations."),
		leaseWaits:        d("lease_waits_total", "Rounds spent waiting for another replica's load of a key."),
		published:         d("invalidations_published_total", "Invalidation messages published with writes."),
		received:          d("invalidations_received_total", "Peers' invalidation messages applied."),
		lag:               d("invalidation_lag_seconds", "Invalidation lag, publish to applied."),
		flushes:           d("epoch_flushes_total", "Local tier flushes (epoch bumps) by reason.", "reason"),
		remoteCalls:       d("remote_calls_total", "Redis calls by operation.", "op"),
		remoteErrors:      d("remote_errors_total", "Failed Redis calls by operation, timeouts included.", "op"),
		remoteTimeouts:    d("remote_timeouts_total", "Redis calls that timed out, by operation.", "op"),
		remoteRejected:    d("remote_rejected_total", "Redis calls not sent because the circuit breaker was open, by operation.", "op"),
		breakerState:      d("breaker_state", "Redis circuit breaker: 0 closed, 1 half-open, 2 open."),
		breakerOpens:      d("breaker_opens_total", "Times the Redis circuit breaker opened."),
		evictions:         d("local_evictions_total", "Local entries evicted by the cost bound."),
		rejections:        d("local_rejections_total", "Local inserts the admission policy refused."),
		droppedSets:       d("local_dropped_sets_total", "Local inserts dropped because ristretto's buffer was full."),
		fenced:            d("local_fenced_fills_total", "Local fills refused by their fence (an invalidation landed meanwhile)."),
		cost:              d("local_cost_bytes", "Cost held by the local tier, in bytes."),
		corrupt:           d("corrupt_values_total", "Unreadable values found in Redis, treated as misses."),
		typeClashes:       d("type_clashes_total", "Values in Redis written by a cache of another value type or codec (ErrTypeClash)."),
		fillsVoided:       d("fills_voided_total", "Loads cached nowhere because a write landed while they ran."),
		refreshes:         d("refreshes_total", "Background refreshes that landed (stale-while-revalidate, early refresh)."),
		earlyRefreshes:    d("early_refreshes_total", "Early refreshes started by XFetch."),
		refreshesDeferred: d("refreshes_deferred_total", "Refreshes due but not started: MaxRefreshes were running."),
		secondDeletes:     d("second_deletes_total", "Delayed second deletes done."),
		repairs:           d("invalidation_repairs_total", "Invalidation gaps handled by the resumable transport: repaired from the log, or flushed.", "outcome"),
		replayed:          d("invalidations_replayed_total", "Invalidations applied by replays of the invalidation log."),
		lost:              d("redis_lost_total", "State this cache found Redis had forgotten, each answered safely: the generation key missing, behind, or set before a Redis restart (a new generation, every replica flushed).", "what"),
		tooLarge:          d("too_large_total", "Loaded values over MaxValueBytes, returned to their callers but not cached."),
	}}
}

// Describe sends every metric's description.
func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	d := &c.descs
	for _, x := range []*prometheus.Desc{d.requests, d.loads, d.loadErrors, d.loadDuration, d.leaseWaits,
		d.published, d.received, d.lag, d.flushes, d.remoteCalls, d.remoteErrors, d.remoteTimeouts, d.remoteRejected,
		d.breakerState, d.breakerOpens, d.evictions, d.rejections, d.droppedSets, d.fenced, d.cost,
		d.corrupt, d.typeClashes, d.fillsVoided, d.refreshes, d.earlyRefreshes, d.refreshesDeferred, d.secondDeletes, d.repairs, d.replayed, d.lost, d.tooLarge} {
		ch <- x
	}
}

// Collect reads one Stats snapshot and sends every metric.
func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	d := &c.descs
	counter := func(desc *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
	}
	counter(d.requests, s.LocalHits, "local", "hit")
	counter(d.requests, s.LocalMisses, "local", "miss")
	counter(d.requests, s.StaleHits, "local", "stale")
	counter(d.requests, s.NegativeHits, "local", "negative")
	counter(d.requests, s.RemoteHits, "remote", "hit")
	counter(d.requests, s.RemoteMisses, "remote", "miss")
	counter(d.loads, s.Loads)
	counter(d.loadErrors, s.LoadErrors)
	ch <- histogram(d.loadDuration, s.LoadDuration)
	counter(d.leaseWaits, s.LeaseWaits)
	counter(d.published, s.InvalidationsPublished)
	counter(d.received, s.InvalidationsReceived)
	ch <- histogram(d.lag, s.Lag)
	for _, r := range tiered.LocalResetReasons() {
		counter(d.flushes, s.LocalResets[r], r)
	}
	for _, op := range remote.Ops() {
		o := s.Remote.Ops[op]
		counter(d.remoteCalls, o.Calls, op.String())
		counter(d.remoteErrors, o.Errors, op.String())
		counter(d.remoteTimeouts, o.Timeouts, op.String())
		counter(d.remoteRejected, o.Rejected, op.String())
	}
	ch <- prometheus.MustNewConstMetric(d.breakerState, prometheus.GaugeValue, breakerValue(s.Remote.BreakerState))
	counter(d.breakerOpens, s.Remote.BreakerOpens)
	counter(d.evictions, s.Local.Evictions)
	counter(d.rejections, s.Local.Rejections)
	counter(d.droppedSets, s.Local.DroppedSets)
	counter(d.fenced, s.Local.Fenced)
	ch <- prometheus.MustNewConstMetric(d.cost, prometheus.GaugeValue, float64(s.LocalCost))
	counter(d.corrupt, s.Corrupt)
	counter(d.typeClashes, s.TypeClashes)
	counter(d.fillsVoided, s.FillsVoided)
	counter(d.refreshes, s.Refreshes)
	counter(d.earlyRefreshes, s.EarlyRefresh)
	counter(d.refreshesDeferred, s.RefreshesDeferred)
	counter(d.secondDeletes, s.SecondDeletes)
	counter(d.repairs, s.Bus.Repairs, "repaired")
	counter(d.repairs, s.Bus.Unrepaired, "flushed")
	counter(d.replayed, s.Bus.Replayed)
	lost := s.Remote.Lost
	counter(d.lost, lost.GenerationMissing, remote.LostGenerationKey)
	counter(d.lost, lost.GenerationBehind, remote.LostGenerationBehind)
	counter(d.lost, lost.Restarts, remote.LostRestart)
	counter(d.tooLarge, s.TooLarge)
}

func breakerValue(state string) float64 {
	switch state {
	case "closed":
		return 0
	case "half-open":
		return 1
	case "open":
		return 2
	}
	return math.NaN()
}

// histogram converts the cache's power-of-two microsecond buckets into a
// Prometheus histogram in seconds (cumulative counts).
func histogram(desc *prometheus.Desc, h tiered.Histogram) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Buckets)-1)
	var cum uint64
	for i, n := range h.Buckets[:len(h.Buckets)-1] { // the last bucket is +Inf
		cum += n
		buckets[h.BucketUpperBound(i).Seconds()] = cum
	}
	return prometheus.MustNewConstHistogram(desc, h.Count, float64(h.SumNs)/1e9, buckets)
}
