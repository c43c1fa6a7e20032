package prommetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiercache/tiercache/writebehind"
)

// FlusherSource is what a flusher collector reads: any
// *writebehind.Flusher[V].
type FlusherSource interface {
	Stats() writebehind.Stats
}

type flusherCollector struct {
	src FlusherSource
	queueDepth, deadDepth, leader, batches, written, coalesced,
	retries, deadLetters, claimed, redisErrors, queueLost, duration *prometheus.Desc
}

// NewFlusherCollector returns a collector of a write-behind flusher's
// statistics, with the constant label cache=name: tiercache_writebehind_*
// (queue and dead-letter depth, lease, batches, writes, coalesced writes,
// retries, dead letters, claimed entries, Redis errors, queues lost, and
// the flush duration histogram).
func NewFlusherCollector(name string, src FlusherSource) prometheus.Collector {
	l := prometheus.Labels{"cache": name}
	d := func(metric, help string) *prometheus.Desc {
		return prometheus.NewDesc("tiercache_writebehind_"+metric, help, nil, l)
	}
	return &flusherCollector{
		src:         src,
		queueDepth:  d("queue_depth", "Writes queued and not yet flushed, as last read by the lease holder."),
		deadDepth:   d("dead_letter_depth", "Entries in the dead-letter stream, as last read by the lease holder."),
		leader:      d("leader", "1 while this flusher holds the flusher lease."),
		batches:     d("batches_total", "Writer calls."),
		written:     d("writes_total", "Coalesced writes the writer accepted."),
		coalesced:   d("coalesced_total", "Queued writes replaced by a later write to the same key."),
		retries:     d("retries_total", "Writes not accepted and kept for another attempt."),
		deadLetters: d("dead_letters_total", "Queue entries moved to the dead-letter stream."),
		claimed:     d("claimed_total", "Entries claimed from a flusher that died or lost its lease."),
		redisErrors: d("redis_errors_total", "Flusher rounds cut short by a Redis failure."),
		queueLost:   d("queue_lost_total", "Times Redis lost the queue (evicted, or restarted without persistence) with the writes it held."),
		duration:    d("flush_duration_seconds", "Writer call durations."),
	}
}

func (c *flusherCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.queueDepth, c.deadDepth, c.leader, c.batches, c.written,
		c.coalesced, c.retries, c.deadLetters, c.claimed, c.redisErrors, c.queueLost, c.duration} {
		ch <- d
	}
}

func (c *flusherCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge(c.queueDepth, float64(s.QueueDepth))
	gauge(c.deadDepth, float64(s.DeadLetterDepth))
	leader := 0.0
	if s.Leader {
		leader = 1
	}
	gauge(c.leader, leader)
	counter(c.batches, s.Batches)
	counter(c.written, s.Written)
	counter(c.coalesced, s.Coalesced)
	counter(c.retries, s.Retries)
	counter(c.deadLetters, s.DeadLetters)
	counter(c.claimed, s.Claimed)
	counter(c.redisErrors, s.RedisErrors)
	counter(c.queueLost, s.QueueLost)
	ch <- histogram(c.duration, s.FlushDuration)
}
