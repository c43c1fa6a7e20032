package tiered

import (
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/coherence"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
)

// Stats is a snapshot of what a cache did since New. Counters only grow.
type Stats struct {
	// LocalHits counts the reads answered from the local tier.
	LocalHits     uint64
	LocalMisses   uint64 // …that went on to Redis
	RemoteHits    uint64
	RemoteMisses  uint64
	RemoteErrors  uint64 // Redis calls that failed or timed out
	Corrupt       uint64 // unreadable values in Redis, treated as misses
	Loads         uint64 // loader calls
	LoadErrors    uint64 // loader calls that failed or panicked
	FillsVoided   uint64 // loads not cached because a write landed meanwhile
	LeaseWaits    uint64 // rounds spent waiting for another replica's load
	StaleHits     uint64 // values served past fresh-until (a refresh started)
	EarlyRefresh  uint64 // XFetch refreshes started before fresh-until
	Refreshes     uint64 // background refreshes that landed
	SecondDeletes uint64 // delayed second deletes done

	InvalidationsPublished uint64 // Set/Delete messages sent
	InvalidationsReceived  uint64 // peers' messages applied
	// Flushes counts local-epoch bumps by reason (FlushReasons):
	// "resubscribe", "overflow", "undecodable", "ping-timeout", "message"
	// (a peer's InvalidateAll), "breaker" (Redis came back after the
	// breaker had opened), "generation" (this replica found the namespace
	// generation moved, or lost in Redis: Stats.Remote.Lost).
	Flushes map[string]uint64
	// Lag is the distribution of invalidation lag (publish → applied).
	Lag Histogram
	// LoadDuration is the distribution of loader call durations.
	LoadDuration Histogram
	NegativeHits uint64 // reads answered by a tombstone
	// TooLarge counts loaded values returned to their callers but not
	// cached: their encoding was over Options.MaxValueBytes.
	TooLarge  uint64
	LocalCost int64 // the local tier's current cost, in bytes

	Local  local.Stats
	Bus    coherence.Stats
	Remote remote.Stats
}

const (
	flushReasonMessage    = "message"
	flushReasonBreaker    = "breaker"
	flushReasonGeneration = "generation"
)

// FlushReasons lists the reasons Stats.Flushes counts.
var FlushReasons = []string{
	string(coherence.GapResubscribe), string(coherence.GapOverflow),
	string(coherence.GapUndecodable), string(coherence.GapPingTimeout),
	flushReasonMessage, flushReasonBreaker, flushReasonGeneration,
}

// Histogram counts durations in power-of-two microsecond buckets: bucket i
// holds durations in [2^(i-1), 2^i) µs, bucket 0 those under 1 µs, the last
// everything longer.
type Histogram struct {
	Buckets [HistogramBuckets]uint64
	Count   uint64
	SumNs   uint64
}

// HistogramBuckets is the number of buckets of a Histogram (1 µs to ~16 s).
const HistogramBuckets = 25

// BucketUpperBound is the exclusive upper bound of bucket i.
func (Histogram) BucketUpperBound(i int) time.Duration {
	return time.Duration(uint64(1)<<i) * time.Microsecond
}

// Quantile estimates the q-quantile (0 < q ≤ 1) as a bucket's upper bound.
func (h Histogram) Quantile(q float64) time.Duration {
	if h.Count == 0 {
		return 0
	}
	want := uint64(q * float64(h.Count))
	var seen uint64
	for i, n := range h.Buckets {
		seen += n
		if seen >= want && n > 0 {
			return h.BucketUpperBound(i)
		}
	}
	return h.BucketUpperBound(HistogramBuckets - 1)
}

type histogram struct {
	buckets    [HistogramBuckets]atomic.Uint64
	count, sum atomic.Uint64
}

func (l *histogram) observe(d time.Duration) {
	d = max(d, 0) // clocks of different hosts may disagree
	i := min(bits.Len64(uint64(d/time.Microsecond)), HistogramBuckets-1)
	l.buckets[i].Add(1)
	l.count.Add(1)
	l.sum.Add(uint64(d))
}

func (l *histogram) snapshot() Histogram {
	var h Histogram
	for i := range l.buckets {
		h.Buckets[i] = l.buckets[i].Load()
	}
	h.Count, h.SumNs = l.count.Load(), l.sum.Load()
	return h
}

type counters struct {
	localHits                                           hitCounter
	localMisses, remoteHits, remoteMisses, remoteErrors atomic.Uint64
	corrupt, loads, loadErrors, fillsVoided             atomic.Uint64
	leaseWaits, staleHits, earlyRefreshes, refreshes    atomic.Uint64
	secondDeletes                                       atomic.Uint64
	published, received, negativeHits, tooLarge         atomic.Uint64
	flushByReason                                       [7]atomic.Uint64
	lag, loadDuration                                   histogram
}

func (c *counters) flushes(reason string) *atomic.Uint64 {
	for i, r := range FlushReasons {
		if r == reason {
			return &c.flushByReason[i]
		}
	}
	return &c.flushByReason[4] // "message": an unknown kind
}

// Stats returns a snapshot of the cache's counters.
func (c *Cache[V]) Stats() Stats {
	s := &c.stats
	out := Stats{
		LocalHits:              s.localHits.load(),
		LocalMisses:            s.localMisses.Load(),
		RemoteHits:             s.remoteHits.Load(),
		RemoteMisses:           s.remoteMisses.Load(),
		RemoteErrors:           s.remoteErrors.Load(),
		Corrupt:                s.corrupt.Load(),
		Loads:                  s.loads.Load(),
		LoadErrors:             s.loadErrors.Load(),
		FillsVoided:            s.fillsVoided.Load(),
		LeaseWaits:             s.leaseWaits.Load(),
		StaleHits:              s.staleHits.Load(),
		EarlyRefresh:           s.earlyRefreshes.Load(),
		Refreshes:              s.refreshes.Load(),
		SecondDeletes:          s.secondDeletes.Load(),
		InvalidationsPublished: s.published.Load(),
		InvalidationsReceived:  s.received.Load(),
		Flushes:                make(map[string]uint64, len(FlushReasons)),
		Lag:                    s.lag.snapshot(),
		LoadDuration:           s.loadDuration.snapshot(),
		NegativeHits:           s.negativeHits.Load(),
		TooLarge:               s.tooLarge.Load(),
		LocalCost:              c.local.Cost(),
		Local:                  c.local.Stats(),
		Bus:                    c.bus.Stats(),
		Remote:                 c.remote.Stats(),
	}
	for i, r := range FlushReasons {
		out.Flushes[r] = s.flushByReason[i].Load()
	}
	return out
}
