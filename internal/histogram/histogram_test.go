package histogram

import (
	"math"
	"testing"
	"time"
)

func TestQuantiles(t *testing.T) {
	var r Recorder
	for range 90 {
		r.Observe(3 * time.Microsecond) // bucket [2, 4) µs
	}
	for range 10 {
		r.Observe(300 * time.Millisecond)
	}
	r.Observe(-time.Second) // another host's clock: counted as 0
	s := r.Snapshot()
	if s.Count != 101 {
		t.Fatalf("count %d, want 101", s.Count)
	}
	if q := s.Quantile(0.5); q != 4*time.Microsecond {
		t.Errorf("p50 %v, want the bound of [2, 4) µs", q)
	}
	if q := s.Quantile(0.99); q < 300*time.Millisecond || q > 600*time.Millisecond {
		t.Errorf("p99 %v, want the bound of the bucket holding 300 ms", q)
	}
	if (Snapshot{}).Quantile(0.5) != 0 {
		t.Error("an empty histogram has no quantile")
	}
}

// A duration measured against another host's clock may be anything: the
// sum saturates instead of wrapping round to a small figure.
func TestTheSumSaturates(t *testing.T) {
	var r Recorder
	for range 10 {
		r.Observe(time.Duration(1<<62) + 5) // a PublishedAt far in the past
	}
	if s := r.Snapshot(); s.SumNs != math.MaxUint64 || s.Count != 10 {
		t.Fatalf("sum %d, count %d: want the sum saturated, 10 counted", s.SumNs, s.Count)
	}
}
