// Package histogram records durations in power-of-two microsecond buckets,
// lock-free, for the statistics of package tiered and package writebehind,
// which both expose its Snapshot (as tiered.Histogram).
package histogram

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Buckets is the number of buckets of a Snapshot (1 µs to ~16 s).
const Buckets = 25

// Snapshot counts durations in power-of-two microsecond buckets: bucket i
// holds durations in [2^(i-1), 2^i) µs, bucket 0 those under 1 µs, the last
// everything longer.
type Snapshot struct {
	Buckets [Buckets]uint64
	Count   uint64
	SumNs   uint64
}

// BucketUpperBound is the exclusive upper bound of bucket i.
func (Snapshot) BucketUpperBound(i int) time.Duration {
	return time.Duration(uint64(1)<<i) * time.Microsecond
}

// Quantile estimates the q-quantile (0 < q ≤ 1) as a bucket's upper bound.
func (h Snapshot) Quantile(q float64) time.Duration {
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
	return h.BucketUpperBound(Buckets - 1)
}

// Recorder records durations; its zero value is ready. Safe for concurrent
// use.
type Recorder struct {
	buckets    [Buckets]atomic.Uint64
	count, sum atomic.Uint64
}

// Observe records d (negative counts as 0: clocks of different hosts may
// disagree). The sum saturates rather than wrap: a figure measured against
// another host's clock (a message's publication time) may be anything.
func (r *Recorder) Observe(d time.Duration) {
	d = max(d, 0)
	i := min(bits.Len64(uint64(d/time.Microsecond)), Buckets-1)
	r.buckets[i].Add(1)
	r.count.Add(1)
	for {
		old := r.sum.Load()
		sum := old + uint64(d)
		if sum < old {
			sum = math.MaxUint64
		}
		if r.sum.CompareAndSwap(old, sum) {
			return
		}
	}
}

// Snapshot reads the counts.
func (r *Recorder) Snapshot() Snapshot {
	var h Snapshot
	for i := range r.buckets {
		h.Buckets[i] = r.buckets[i].Load()
	}
	h.Count, h.SumNs = r.count.Load(), r.sum.Load()
	return h
}
