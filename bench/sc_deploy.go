package bench

import (
	"context"
	"time"
)

// The phases of the deploy scenario's load.
const (
	phaseSettle = 0
	phaseSteady = 1
	phaseDeploy = 2
)

var deployScenario = Scenario{
	Name:     "deploy",
	Fleet:    true,
	Variants: true,
	Description: "A rolling deploy under the zipf load (1,000 keys, s=1.1, 95/5, 2 ms loader, 2 goroutines per replica): N replicas " +
		"serve, with every key in Redis from the start (a fleet that has been serving a while); one at a time, a replica is stopped, its successor started, waited for until ready, and put under load; the next " +
		"follows once the successor has made 1,000 reads. Origin (loader) calls/s and Redis commands/s during the deploy against " +
		"the steady state before it, read p99 in both, and the share of each new replica's first 1,000 reads answered locally " +
		"(mean of the successors). tiercache+warm-up gives every replica a warmup.HotKeys (the fleet's hot keys, in Redis) and " +
		"preloads the top 1,000 before a replica is ready; ready-wait is how long that took.",
	Run: runDeploy,
}

func runDeploy(ctx context.Context, run *Run, e Entry) (Result, error) {
	var res Result
	f, err := run.newFleet(ctx, "deploy", e, run.Replicas)
	if err != nil {
		return res, err
	}
	defer f.close()
	spec := loadSpec{Keys: 1000, ZipfS: 1.1, WritePct: 5, Loader: 2 * time.Millisecond, Goroutines: 2, OpTimeout: time.Second}
	if _, err := call[struct{}](ctx, f.members[0].p, "fill", fillArgs{Keys: spec.Keys}); err != nil {
		return res, err
	}
	if _, err := callAll[struct{}](ctx, f, "load.start", seeded(spec, e.Seed)); err != nil {
		return res, err
	}
	// Settle: the caches fill and (with warm-up) the hot set forms.
	if err := sleep(ctx, run.scaleDuration(1500*time.Millisecond, 500*time.Millisecond)); err != nil {
		return res, err
	}
	if err := f.setPhase(ctx, phaseSteady); err != nil {
		return res, err
	}
	steadyFrom, steadyCalls := time.Now(), run.commandCalls(ctx)
	if err := sleep(ctx, run.scaleDuration(1500*time.Millisecond, 500*time.Millisecond)); err != nil {
		return res, err
	}
	if err := f.setPhase(ctx, phaseDeploy); err != nil {
		return res, err
	}
	deployFrom, deployCalls := time.Now(), run.commandCalls(ctx)

	var reports []loadReport
	var firstLocal, readyWait float64
	successor := spec
	successor.Phase = phaseDeploy
	for i := range f.members {
		old, err := f.replace(ctx, i)
		if err != nil {
			return res, err
		}
		reports = append(reports, old)
		m := f.members[i]
		ready, err := call[secondsReply](ctx, m.p, "ready", timeoutArgs{10 * time.Second})
		if err != nil {
			return res, err
		}
		successor.Seed = e.Seed*1000 + uint64(len(f.members)+i)
		if _, err := call[struct{}](ctx, m.p, "load.start", successor); err != nil {
			return res, err
		}
		first, err := call[firstReply](ctx, m.p, "load.first", timeoutArgs{10 * time.Second})
		if err != nil {
			return res, err
		}
		firstLocal += first.Local / float64(len(f.members))
		readyWait += ready.Seconds * 1e3 / float64(len(f.members))
	}
	deployTo, endCalls := time.Now(), run.commandCalls(ctx)
	last, err := callAll[loadReport](ctx, f, "load.stop", same(struct{}{}))
	if err != nil {
		return res, err
	}
	reports = append(reports, last...)
	var steady, deploy phaseStats
	for _, r := range reports {
		steady.merge(r.Phases[phaseSteady])
		deploy.merge(r.Phases[phaseDeploy])
	}
	steadySecs, deploySecs := deployFrom.Sub(steadyFrom).Seconds(), deployTo.Sub(deployFrom).Seconds()
	res.add("origin-steady", "calls/s", float64(steady.Loads)/steadySecs, "")
	res.add("origin-deploy", "calls/s", float64(deploy.Loads)/deploySecs, "lower")
	res.add("redis-steady", "cmds/s", sum(callsBetween(steadyCalls, deployCalls))/steadySecs, "")
	res.add("redis-deploy", "cmds/s", sum(callsBetween(deployCalls, endCalls))/deploySecs, "lower")
	res.add("read-p99-steady", "µs", steady.Read.quantile(0.99)/1e3, "")
	res.add("read-p99-deploy", "µs", deploy.Read.quantile(0.99)/1e3, "lower")
	res.add("first-reads-local", "ratio", firstLocal, "higher")
	res.add("ready-wait", "ms", readyWait, "")
	res.add("deploy-time", "s", deploySecs, "")
	res.Samples = map[string][]float64{"read latency during the deploy (µs)": deploy.Read.points(samplePoints, time.Microsecond)}
	return res, nil
}
