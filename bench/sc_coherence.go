package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

var coherenceScenario = Scenario{
	Name:        "coherence",
	Description: "Every replica holds a key; Set on one; time until every other replica reads the new value (p50/p99/max) and how many never did within 500 ms.",
	Run: func(ctx context.Context, run *Run, c Candidate) (Result, error) {
		var res Result
		reps, closeAll, err := run.replicas(ctx, "coherence", c, run.Replicas)
		if err != nil {
			return res, err
		}
		defer closeAll()
		rounds := run.scale(50, 10)
		var delays []float64
		never := 0
		for round := 1; round <= rounds; round++ {
			for range 2 {
				for _, r := range reps {
					r.Get(ctx, "k")
				}
				time.Sleep(5 * time.Millisecond) // let local inserts apply, so the replicas really hold the key
			}
			want := fmt.Sprint("v", round)
			if err := reps[0].Set(ctx, "k", want); err != nil {
				return res, err
			}
			written := time.Now()
			var mu sync.Mutex
			var wg sync.WaitGroup
			for _, r := range reps[1:] {
				wg.Go(func() {
					for time.Since(written) < 500*time.Millisecond {
						if v, err := r.Get(ctx, "k"); err == nil && v == want {
							mu.Lock()
							delays = append(delays, ms(time.Since(written)))
							mu.Unlock()
							return
						}
						time.Sleep(20 * time.Microsecond)
					}
					mu.Lock()
					never++
					mu.Unlock()
				})
			}
			wg.Wait()
		}
		slices.Sort(delays)
		res.add("p50", "ms", quantile(delays, 0.5), "lower")
		res.add("p99", "ms", quantile(delays, 0.99), "lower")
		res.add("max", "ms", quantile(delays, 1), "lower")
		res.add("never-converged", "reads", float64(never), "lower")
		res.add("converged", "%", 100*float64(len(delays))/float64(len(delays)+never), "higher")
		res.Samples = map[string][]float64{"convergence delay (ms)": delays}
		return res, nil
	},
}
