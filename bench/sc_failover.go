package bench

import (
	"context"
	"fmt"
	"time"
)

// The phases of the failover scenario's load.
const (
	phaseBefore = 0
	phaseOutage = 1
	phaseAfter  = 2
)

var failoverScenario = Scenario{
	Name:  "failover",
	Fleet: true,
	Description: "Readers (GetOrLoad, 1 ms loader) and writers (10 %) on N replicas, 100 keys; Redis is killed a third of the way in and " +
		"restarted two thirds in: errors callers saw during the outage (reads and writes), GetOrLoad latency during it, and time " +
		"from the restart until a write succeeds again.",
	Run: func(ctx context.Context, run *Run, e Entry) (Result, error) {
		var res Result
		if run.Server == nil {
			res.Skipped = "needs the throwaway redis-server (run without --redis)"
			return res, nil
		}
		f, err := run.newFleet(ctx, "failover", e, run.Replicas)
		if err != nil {
			return res, err
		}
		defer f.close()
		total := max(run.Duration, 3*time.Second)
		spec := loadSpec{Keys: 100, WritePct: 10, Loader: time.Millisecond, Goroutines: 2, Pause: time.Millisecond, OpTimeout: time.Second}
		if _, err := callAll[struct{}](ctx, f, "load.start", seeded(spec, e.Seed)); err != nil {
			return res, err
		}
		if err := sleep(ctx, total/3); err != nil {
			return res, err
		}
		if err := f.setPhase(ctx, phaseOutage); err != nil {
			return res, err
		}
		run.Server.Kill()
		if err := sleep(ctx, total/3); err != nil {
			return res, err
		}
		restarted := time.Now()
		if err := run.Server.Restart(ctx); err != nil {
			return res, fmt.Errorf("restart: %w", err)
		}
		if err := f.setPhase(ctx, phaseAfter); err != nil {
			return res, err
		}
		probe, err := call[wallReply](ctx, f.members[0].p, "probe", probeArgs{Key: "probe", Timeout: 30 * time.Second})
		if err != nil {
			return res, err
		}
		reports, err := callAll[loadReport](ctx, f, "load.stop", same(struct{}{}))
		if err != nil {
			return res, err
		}
		var outage phaseStats
		for _, r := range reports {
			outage.merge(r.Phases[phaseOutage])
		}
		recovery := -1.0
		if probe.At != 0 {
			recovery = float64(probe.At-restarted.UnixNano()) / 1e6
		}
		res.add("outage-errors", "%", 100*float64(outage.Errors)/float64(max(outage.Ops, 1)), "lower")
		res.add("outage-p50", "ms", outage.Read.quantile(0.5)/1e6, "lower")
		res.add("outage-p99", "ms", outage.Read.quantile(0.99)/1e6, "lower")
		res.add("recovery", "ms", recovery, "lower")
		res.Samples = map[string][]float64{"read latency during the outage (ms)": outage.Read.points(samplePoints, time.Millisecond)}
		return res, nil
	},
}

// setPhase moves every replica's load to phase p.
func (f *fleet) setPhase(ctx context.Context, p int) error {
	_, err := callAll[struct{}](ctx, f, "load.phase", same(phaseArgs{p}))
	return err
}
