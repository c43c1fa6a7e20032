package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/internal/ledger"
)

var zipfScenario = Scenario{
	Name: "zipf",
	Description: "Zipf-popular keys (s=1.1, 1,000 keys), 95 % reads (GetOrLoad) / 5 % writes (update the source, then Set), " +
		"N replicas, a 2 ms loader: ops/s, read p50/p99, local-hit ratio, loader calls, and stale reads by ledger " +
		"(a read is stale if it returns a version older than one whose write completed more than 100 ms before the read began).",
	Run: func(ctx context.Context, run *Run, c Candidate) (Result, error) {
		var res Result
		reps, closeAll, err := run.replicas(ctx, "zipf", c, run.Replicas)
		if err != nil {
			return res, err
		}
		defer closeAll()
		src := ledger.New()
		const keys = 1000
		var reads, writes, stale, loads, errs atomic.Int64
		var mu sync.Mutex
		var lat []float64
		deadline := time.Now().Add(run.Duration)
		var wg sync.WaitGroup
		for ri, r := range reps {
			for g := range 2 {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(ri), uint64(g)))
					z := rand.NewZipf(rng, 1.1, 1, keys-1)
					var mine []float64
					for time.Now().Before(deadline) {
						k := fmt.Sprint("z", z.Uint64())
						octx, cancel := context.WithTimeout(ctx, time.Second)
						if rng.IntN(100) < 5 {
							m := src.Lock(k)
							m.Lock()
							v := src.Bump(k)
							if err := r.Set(octx, k, value(k, v)); err != nil {
								errs.Add(1)
							} else {
								src.Completed(k, v)
								writes.Add(1)
							}
							m.Unlock()
							cancel()
							continue
						}
						start := time.Now()
						floor := src.Floor(k, start.Add(-staleGrace))
						got, err := r.GetOrLoad(octx, k, func(context.Context) (string, error) {
							loads.Add(1)
							v := src.Read(k)
							time.Sleep(2 * time.Millisecond)
							return value(k, v), nil
						})
						cancel()
						if len(mine) < 50_000 {
							mine = append(mine, us(time.Since(start)))
						}
						reads.Add(1)
						if err != nil {
							errs.Add(1)
							continue
						}
						if v, err := versionOf(got); err != nil || v < floor {
							stale.Add(1)
						}
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				})
			}
		}
		wg.Wait()
		slices.Sort(lat)
		var local uint64
		for _, r := range reps {
			local += r.LocalHits()
		}
		n := float64(reads.Load() + writes.Load())
		res.add("throughput", "ops/s", n/run.Duration.Seconds(), "higher")
		res.add("read-p50", "µs", quantile(lat, 0.5), "lower")
		res.add("read-p99", "µs", quantile(lat, 0.99), "lower")
		res.add("local-hit", "ratio", float64(local)/float64(max(reads.Load(), 1)), "higher")
		res.add("loader-calls", "calls", float64(loads.Load()), "lower")
		res.add("stale-reads", "reads", float64(stale.Load()), "lower")
		res.add("stale-share", "%", 100*float64(stale.Load())/float64(max(reads.Load(), 1)), "lower")
		res.add("errors", "ops", float64(errs.Load()), "lower")
		res.Samples = map[string][]float64{"read latency (µs)": thin(lat, 2000)}
		return res, nil
	},
}

// thin keeps at most n evenly spaced values of a sorted slice, for charts.
func thin(sorted []float64, n int) []float64 {
	if len(sorted) <= n {
		return sorted
	}
	out := make([]float64, n)
	for i := range out {
		out[i] = sorted[i*(len(sorted)-1)/(n-1)]
	}
	return out
}
