package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

var failoverScenario = Scenario{
	Name: "failover",
	Description: "Readers (GetOrLoad, 1 ms loader) and writers on N replicas; Redis is killed a third of the way in and restarted two thirds in: " +
		"errors callers saw during the outage, GetOrLoad latency during it, and time from the restart until a write succeeds again.",
	Run: func(ctx context.Context, run *Run, c Candidate) (Result, error) {
		var res Result
		if run.Server == nil {
			res.Skipped = "needs the throwaway redis-server (run without --redis)"
			return res, nil
		}
		reps, closeAll, err := run.replicas(ctx, "failover", c, run.Replicas)
		if err != nil {
			return res, err
		}
		defer closeAll()
		total := max(run.Duration, 3*time.Second)
		var down atomic.Bool
		var outageOps, outageErrs atomic.Int64
		var mu sync.Mutex
		var outageLat []float64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for ri, r := range reps {
			for g := range 2 {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(ri), uint64(g)))
					for {
						select {
						case <-stop:
							return
						default:
						}
						k := fmt.Sprint("f", rng.IntN(100))
						octx, cancel := context.WithTimeout(ctx, time.Second)
						t0 := time.Now()
						var err error
						if rng.IntN(10) == 0 {
							err = r.Set(octx, k, value(k, 1))
						} else {
							_, err = r.GetOrLoad(octx, k, func(context.Context) (string, error) {
								time.Sleep(time.Millisecond)
								return value(k, 1), nil
							})
						}
						cancel()
						if down.Load() {
							outageOps.Add(1)
							if err != nil {
								outageErrs.Add(1)
							}
							mu.Lock()
							outageLat = append(outageLat, ms(time.Since(t0)))
							mu.Unlock()
						}
						time.Sleep(time.Millisecond)
					}
				})
			}
		}
		time.Sleep(total / 3)
		down.Store(true)
		run.Server.Kill()
		time.Sleep(total / 3)
		restarted := time.Now()
		rerr := run.Server.Restart(ctx)
		down.Store(false)
		recovery := time.Duration(-1)
		if rerr == nil {
			for time.Since(restarted) < 30*time.Second {
				octx, cancel := context.WithTimeout(ctx, time.Second)
				err := reps[0].Set(octx, "probe", "ok")
				cancel()
				if err == nil {
					recovery = time.Since(restarted)
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		close(stop)
		wg.Wait()
		if rerr != nil {
			return res, fmt.Errorf("restart: %w", rerr)
		}
		slices.Sort(outageLat)
		res.add("outage-errors", "%", 100*float64(outageErrs.Load())/float64(max(outageOps.Load(), 1)), "lower")
		res.add("outage-p50", "ms", quantile(outageLat, 0.5), "lower")
		res.add("outage-p99", "ms", quantile(outageLat, 0.99), "lower")
		res.add("recovery", "ms", ms(recovery), "lower")
		res.Samples = map[string][]float64{"latency during the outage (ms)": thin(outageLat, 2000)}
		return res, nil
	},
}
