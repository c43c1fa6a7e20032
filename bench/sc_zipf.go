package bench

import (
	"context"
	"fmt"
	"time"
)

// zipfShape is one shape of the zipf workload.
type zipfShape struct {
	name, summary string
	keys          int
	s             float64 // 0: uniform
	goroutines    int
	writePct      int
	loader        time.Duration
}

var (
	zipfSmall = zipfScenario(zipfShape{name: "zipf", summary: "1,000 keys, s=1.1, 2 goroutines per replica, a 2 ms loader",
		keys: 1000, s: 1.1, goroutines: 2, writePct: 5, loader: 2 * time.Millisecond})
	zipfLarge = zipfScenario(zipfShape{name: "zipf-100k", summary: "100,000 keys, s=1.01, 16 goroutines per replica, a 1 ms loader",
		keys: 100_000, s: 1.01, goroutines: 16, writePct: 5, loader: time.Millisecond})
)

func zipfScenario(shape zipfShape) Scenario {
	return Scenario{
		Name:   shape.name,
		Family: "zipf",
		Fleet:  true,
		Description: "Zipf-popular keys (" + shape.summary + "), cold start (empty Redis namespace, empty local tiers), " +
			fmt.Sprintf("%d %% reads (GetOrLoad) / %d %% writes (update the source, then Set), N replicas: ops/s, read p50/p99, local-hit ratio, ", 100-shape.writePct, shape.writePct) +
			"loader calls, and stale reads (a read is stale if it returned a version older than one whose write completed more than " +
			"100 ms before the read began). Beside them: Redis's own command count per op (INFO commandstats), the CPU time Redis and the replicas' processes " +
			"spent per op (INFO cpu; the processes' rusage, counting a process the replicas share once) and, for tiercache, " +
			"its own counters (own-local-hit from its Stats, own-redis-calls: its remote tier's calls per op, own-lease-waits: rounds spent waiting for another replica's load, own-invalidations: peers' messages applied).",
		Run: func(ctx context.Context, run *Run, e Entry) (Result, error) {
			return runZipf(ctx, run, e, shape)
		},
	}
}

func runZipf(ctx context.Context, run *Run, e Entry, shape zipfShape) (Result, error) {
	var res Result
	f, err := run.newFleet(ctx, shape.name, e, run.Replicas)
	if err != nil {
		return res, err
	}
	defer f.close()
	spec := loadSpec{Keys: shape.keys, ZipfS: shape.s, WritePct: shape.writePct, Loader: shape.loader,
		Goroutines: shape.goroutines, OpTimeout: time.Second, Record: true}
	before := run.commandCalls(ctx)
	redisCPU0, redisCPUKnown := run.redisCPU(ctx)
	if _, err := callAll[struct{}](ctx, f, "load.start", seeded(spec, e.Seed)); err != nil {
		return res, err
	}
	if err := sleep(ctx, run.Duration); err != nil {
		return res, err
	}
	reports, err := callAll[loadReport](ctx, f, "load.stop", same(struct{}{}))
	if err != nil {
		return res, err
	}
	redis := callsBetween(before, run.commandCalls(ctx))
	redisCPU1, ok := run.redisCPU(ctx)
	redisCPUKnown = redisCPUKnown && ok
	var logs [][]completion
	for _, r := range reports {
		logs = append(logs, r.Writes)
	}
	checks, err := callAll[checkReply](ctx, f, "load.check", same(checkArgs{Log: mergeLogs(logs...)}))
	if err != nil {
		return res, err
	}
	var all phaseStats
	var throughput float64
	var local uint64
	own := map[string]float64{}
	cpu := map[int]time.Duration{} // by process: replicas may share one
	for _, r := range reports {
		cpu[r.PID] = max(cpu[r.PID], r.CPU)
		p := r.Phases[0]
		all.merge(p)
		throughput += float64(p.Ops) / p.Seconds
		local += r.LocalHits
		for k, v := range r.Counters {
			own[k] += v
		}
	}
	var stale, checked int
	var worst time.Duration
	for _, c := range checks {
		stale, checked, worst = stale+c.Stale, checked+c.Checked, max(worst, c.Worst)
	}
	if stale > 0 { // how stale: past the grace by a hair, or by seconds?
		res.Note = fmt.Sprintf("stale reads began up to %v after the write of a newer version had completed", worst.Round(time.Millisecond))
	}
	reads, ops := float64(max(all.Reads, 1)), float64(max(all.Ops, 1))
	res.add("throughput", "ops/s", throughput, "higher")
	res.add("read-p50", "µs", all.Read.quantile(0.5)/1e3, "lower")
	res.add("read-p99", "µs", all.Read.quantile(0.99)/1e3, "lower")
	res.add("local-hit", "ratio", float64(local)/reads, "higher")
	res.add("loader-calls", "calls", float64(all.Loads), "lower")
	res.add("stale-reads", "reads", float64(stale), "lower")
	res.add("stale-share", "%", 100*float64(stale)/float64(max(checked, 1)), "lower")
	res.add("errors", "ops", float64(all.Errors), "lower")
	if redis != nil {
		res.RedisPerOp = divided(redis, ops)
		res.add("redis-calls", "per op", sum(redis)/ops, "")
	}
	if redisCPUKnown {
		res.add("redis-cpu", "µs/op", float64((redisCPU1-redisCPU0).Microseconds())/ops, "")
	}
	var replicaCPU time.Duration
	for _, d := range cpu {
		replicaCPU += d
	}
	res.add("replica-cpu", "µs/op", float64(replicaCPU.Microseconds())/ops, "")
	if len(own) > 0 {
		res.add("own-local-hit", "ratio", own["local-hits"]/reads, "")
		res.add("own-redis-calls", "per op", own["redis-calls"]/ops, "")
		res.add("own-lease-waits", "per op", own["lease-waits"]/ops, "")
		res.add("own-invalidations", "per op", own["invalidations-received"]/ops, "")
	}
	res.Samples = map[string][]float64{"read latency (µs)": all.Read.points(samplePoints, time.Microsecond)}
	return res, nil
}

// samplePoints is how many quantiles of a distribution a result keeps for
// its chart.
const samplePoints = 500

// seeded gives each replica's load its own seed, derived from the run's.
func seeded(spec loadSpec, seed uint64) func(i int) loadSpec {
	return func(i int) loadSpec {
		s := spec
		s.Seed = seed*1000 + uint64(i)
		return s
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
}
