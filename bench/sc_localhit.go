package bench

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

var localHit = Scenario{
	Name:        "localhit",
	Description: "Get on 1,000 pre-warmed keys from one replica: ns/op serial, ops/s parallel, allocs/op, share of reads answered locally.",
	Run: func(ctx context.Context, run *Run, e Entry) (Result, error) {
		var res Result
		reps, closeAll, err := run.replicas(ctx, "localhit", e.Candidate, 1)
		if err != nil {
			return res, err
		}
		defer closeAll()
		r := reps[0]
		keys := make([]string, 1000)
		for i := range keys {
			keys[i] = fmt.Sprint("k", i)
			if err := r.Set(ctx, keys[i], value(keys[i], 1)); err != nil {
				return res, err
			}
		}
		for range 3 { // fill the local tier; ristretto applies inserts through a buffer
			for _, k := range keys {
				r.Get(ctx, k)
			}
			time.Sleep(20 * time.Millisecond)
		}

		budget := min(run.Duration/2, time.Second) // a hit is ~100 ns: a second is millions of samples
		var ms0, ms1 runtime.MemStats
		before := r.LocalHits()
		runtime.ReadMemStats(&ms0)
		start := time.Now()
		n := 0
		for n < 2_000_000 {
			if _, err := r.Get(ctx, keys[n%len(keys)]); err != nil {
				return res, err
			}
			n++ // before the budget check: every read made is counted
			if n%1024 == 0 && time.Since(start) > budget {
				break
			}
		}
		el := time.Since(start)
		runtime.ReadMemStats(&ms1)
		local := r.LocalHits() - before
		res.add("serial", "ns/op", float64(el.Nanoseconds())/float64(n), "lower")
		res.add("allocs", "allocs/op", float64(ms1.Mallocs-ms0.Mallocs)/float64(n), "lower")

		var ops atomic.Int64
		var wg sync.WaitGroup
		pctx, cancel := context.WithTimeout(ctx, budget)
		defer cancel()
		workers := 4 * runtime.GOMAXPROCS(0)
		pstart := time.Now()
		for w := range workers {
			wg.Go(func() {
				var n int64
				for i := w; pctx.Err() == nil; i++ {
					r.Get(ctx, keys[i%len(keys)])
					n++
				}
				ops.Add(n)
			})
		}
		wg.Wait()
		res.add("parallel", "ops/s", float64(ops.Load())/time.Since(pstart).Seconds(), "higher")
		res.add("local-hit", "ratio", float64(local)/float64(n), "higher")
		return res, nil
	},
}
