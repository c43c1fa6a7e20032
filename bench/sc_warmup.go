package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"
)

// Preloader is a candidate that can preload keys into a fresh replica's
// local tier.
type Preloader interface {
	Preload(ctx context.Context, keys []string) error
}

var warmupScenario = Scenario{
	Name: "warmup",
	Description: "A new replica's first reads of 2,000 keys that Redis holds: with no preload, and (for candidates that have one) " +
		"after preloading them: share of first reads answered locally, first-read p99, preload time.",
	Run: func(ctx context.Context, run *Run, e Entry) (Result, error) {
		var res Result
		reps, closeAll, err := run.replicas(ctx, "warmup", e.Candidate, 3)
		if err != nil {
			return res, err
		}
		defer closeAll()
		keys := make([]string, run.scale(2000, 500))
		for i := range keys {
			keys[i] = fmt.Sprint("w", i)
			if err := reps[0].Set(ctx, keys[i], value(keys[i], 1)); err != nil {
				return res, err
			}
		}
		firstReads := func(r Replica) (local float64, p99 float64) {
			before := r.LocalHits()
			lat := make([]float64, 0, len(keys))
			for _, k := range keys {
				t0 := time.Now()
				r.Get(ctx, k)
				lat = append(lat, us(time.Since(t0)))
			}
			slices.Sort(lat)
			return float64(r.LocalHits()-before) / float64(len(keys)), quantile(lat, 0.99)
		}
		cold, coldP99 := firstReads(reps[1])
		res.add("cold-local", "ratio", cold, "")
		res.add("cold-p99", "µs", coldP99, "")
		p, ok := reps[2].(Preloader)
		if !ok {
			res.add("warm-local", "ratio", math.NaN(), "higher")
			res.add("warm-p99", "µs", math.NaN(), "lower")
			res.Note = "no preload"
			return res, nil
		}
		t0 := time.Now()
		if err := p.Preload(ctx, keys); err != nil {
			return res, err
		}
		took := time.Since(t0)
		warm, warmP99 := firstReads(reps[2])
		res.add("warm-local", "ratio", warm, "higher")
		res.add("warm-p99", "µs", warmP99, "lower")
		res.add("preload", "ms", ms(took), "")
		return res, nil
	},
}
