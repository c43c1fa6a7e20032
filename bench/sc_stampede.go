package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

var stampedeScenario = Scenario{
	Name:        "stampede",
	Description: "N replicas × 100 callers ask for one missing key at once; the loader takes 50 ms: loader calls per key, caller p50/p99.",
	Run: func(ctx context.Context, run *Run, c Candidate) (Result, error) {
		var res Result
		reps, closeAll, err := run.replicas(ctx, "stampede", c, run.Replicas)
		if err != nil {
			return res, err
		}
		defer closeAll()
		rounds := run.scale(5, 2)
		callers := 100
		var calls, errs atomic.Int64
		var lat []float64
		var mu sync.Mutex
		for round := range rounds {
			key := fmt.Sprint("missing-", round)
			load := func(context.Context) (string, error) {
				calls.Add(1)
				time.Sleep(50 * time.Millisecond)
				return value(key, 1), nil
			}
			start := make(chan struct{})
			var wg sync.WaitGroup
			for _, r := range reps {
				for range callers {
					wg.Go(func() {
						<-start
						t0 := time.Now()
						octx, cancel := context.WithTimeout(ctx, 10*time.Second)
						_, err := r.GetOrLoad(octx, key, load)
						cancel()
						d := ms(time.Since(t0))
						if err != nil {
							errs.Add(1)
						}
						mu.Lock()
						lat = append(lat, d)
						mu.Unlock()
					})
				}
			}
			close(start)
			wg.Wait()
		}
		slices.Sort(lat)
		res.add("loader-calls", "per key", float64(calls.Load())/float64(rounds), "lower")
		res.add("p50", "ms", quantile(lat, 0.5), "lower")
		res.add("p99", "ms", quantile(lat, 0.99), "lower")
		res.add("errors", "calls", float64(errs.Load()), "lower")
		res.Samples = map[string][]float64{"caller latency (ms)": thin(lat, 2000)}
		return res, nil
	},
}
