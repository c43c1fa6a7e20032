package bench

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// convergeWithin is how long after a Set a replica may take to read the new
// value before it counts as never converged.
const convergeWithin = 500 * time.Millisecond

var coherenceScenario = Scenario{
	Name:  "coherence",
	Fleet: true,
	Description: "Every replica holds a key; Set on one; time from the Set's return until each other replica reads the new value " +
		"(p50/p99/max; 0 when it read it before the Set returned), and how many never did within 500 ms.",
	Run: func(ctx context.Context, run *Run, e Entry) (Result, error) {
		var res Result
		f, err := run.newFleet(ctx, "coherence", e, run.Replicas)
		if err != nil {
			return res, err
		}
		defer f.close()
		var delays []float64
		never := 0
		// 100 rounds (300 delays with 4 replicas): a run's p50 moves by
		// tens of µs from one run to the next on a busy machine, and the
		// p99 of 60 delays was their maximum.
		for round := 1; round <= run.scale(100, 10); round++ {
			if _, err := callAll[struct{}](ctx, f, "touch", same(touchArgs{Key: "k", Times: 2, Gap: 5 * time.Millisecond})); err != nil {
				return res, err
			}
			want := fmt.Sprint("v", round)
			readers := f.members[1:]
			if _, err := callEach[struct{}](ctx, readers, "watch", same(watchArgs{Key: "k", Want: want})); err != nil {
				return res, err
			}
			written, err := call[wallReply](ctx, f.members[0].p, "set", setArgs{Key: "k", Value: want})
			if err != nil {
				return res, err
			}
			seen, err := callEach[wallReply](ctx, readers, "seen", same(deadlineArgs{written.At + int64(convergeWithin)}))
			if err != nil {
				return res, err
			}
			for _, s := range seen {
				if s.At == 0 {
					never++
					continue
				}
				delays = append(delays, max(0, float64(s.At-written.At)/1e6))
			}
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

var stampedeScenario = Scenario{
	Name:        "stampede",
	Fleet:       true,
	Description: "N replicas × 100 callers ask for one missing key at once; the loader takes 50 ms: loader calls per key, caller p50/p99.",
	Run: func(ctx context.Context, run *Run, e Entry) (Result, error) {
		var res Result
		f, err := run.newFleet(ctx, "stampede", e, run.Replicas)
		if err != nil {
			return res, err
		}
		defer f.close()
		rounds := run.scale(5, 2)
		var loads, errs int64
		var lat []float64
		for round := range rounds {
			args := burstArgs{Key: fmt.Sprint("missing-", round), Callers: 100, Loader: 50 * time.Millisecond}
			if _, err := callAll[struct{}](ctx, f, "burst.arm", same(args)); err != nil {
				return res, err
			}
			got, err := callAll[burstReply](ctx, f, "burst.go", same(struct{}{}))
			if err != nil {
				return res, err
			}
			for _, g := range got {
				loads, errs = loads+g.Loads, errs+g.Errors
				lat = append(lat, g.Latencies...)
			}
		}
		slices.Sort(lat)
		res.add("loader-calls", "per key", float64(loads)/float64(rounds), "lower")
		res.add("p50", "ms", quantile(lat, 0.5), "lower")
		res.add("p99", "ms", quantile(lat, 0.99), "lower")
		res.add("errors", "calls", float64(errs), "lower")
		res.Samples = map[string][]float64{"caller latency (ms)": thin(lat, samplePoints)}
		return res, nil
	},
}
