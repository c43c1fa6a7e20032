package bench

import (
	"math/bits"
	"time"
)

// latencies is a log-linear histogram of durations: exact below 64 ns, then
// 32 buckets per power of two (at most 1/64 ≈ 1.6 % off). Each load
// goroutine keeps its own and they merge afterwards, so recording costs no
// atomics and no allocation, and replicas in other processes can send theirs
// back whole: a latency quantile over a whole fleet needs every op, not
// samples of each replica's.
type latencies struct {
	Counts []uint64 // by bucket; grows on demand
	N      uint64
}

const histSub = 32 // buckets per power of two

func bucketOf(ns uint64) int {
	if ns < 2*histSub {
		return int(ns)
	}
	shift := bits.Len64(ns) - 6 // ns>>shift is in [32, 64)
	return 2*histSub + (shift-1)*histSub + int(ns>>shift) - histSub
}

// bucketMid is the middle of a bucket, the value a quantile reports.
func bucketMid(i int) float64 {
	if i < 2*histSub {
		return float64(i)
	}
	shift := (i-2*histSub)/histSub + 1
	low := uint64((i-2*histSub)%histSub+histSub) << shift
	return float64(low) + float64(uint64(1)<<shift)/2
}

func (h *latencies) record(d time.Duration) {
	ns := uint64(max(d, 0))
	i := bucketOf(ns)
	if i >= len(h.Counts) {
		h.Counts = append(h.Counts, make([]uint64, i+1-len(h.Counts))...)
	}
	h.Counts[i]++
	h.N++
}

func (h *latencies) merge(o latencies) {
	if len(o.Counts) > len(h.Counts) {
		h.Counts = append(h.Counts, make([]uint64, len(o.Counts)-len(h.Counts))...)
	}
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	h.N += o.N
}

// quantile in nanoseconds; NaN-free: 0 for an empty histogram.
func (h *latencies) quantile(q float64) float64 {
	if h.N == 0 {
		return 0
	}
	rank := uint64(q*float64(h.N-1)+0.5) + 1 // 1-based, as quantile() on sorted values
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank {
			return bucketMid(i)
		}
	}
	return bucketMid(len(h.Counts) - 1)
}

// points are n evenly spaced quantiles (the first and the last included),
// divided by unit: a sorted sample the CDF charts draw as they would raw
// values.
func (h *latencies) points(n int, unit time.Duration) []float64 {
	if h.N == 0 || n < 2 {
		return nil
	}
	out := make([]float64, n)
	for i := range out {
		out[i] = h.quantile(float64(i)/float64(n-1)) / float64(unit)
	}
	return out
}
