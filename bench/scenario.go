package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"time"
)

// Metric is one figure of a result.
type Metric struct {
	Name   string  `json:"name"`
	Unit   string  `json:"unit"`
	Value  float64 `json:"value"`
	Better string  `json:"better,omitempty"` // "lower", "higher", or "" (informational)
}

// Result is one scenario run for one candidate.
type Result struct {
	Scenario  string               `json:"scenario"`
	Candidate string               `json:"candidate"`
	Metrics   []Metric             `json:"metrics,omitempty"`
	Samples   map[string][]float64 `json:"samples,omitempty"` // distributions for the charts
	Note      string               `json:"note,omitempty"`
	Skipped   string               `json:"skipped,omitempty"`
	Error     string               `json:"error,omitempty"`
	Seconds   float64              `json:"seconds"`
}

func (r *Result) add(name, unit string, v float64, better string) {
	r.Metrics = append(r.Metrics, Metric{Name: name, Unit: unit, Value: v, Better: better})
}

// Metric returns the named metric, if present.
func (r *Result) Metric(name string) (Metric, bool) {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m, true
		}
	}
	return Metric{}, false
}

// Server is a Redis the runner controls (the throwaway one); failover needs it.
type Server interface {
	Addr() string
	Kill()
	Restart(ctx context.Context) error
}

// Config shapes a run.
type Config struct {
	Duration time.Duration // of each timed scenario
	Replicas int
	Quick    bool // small sizes: every scenario and candidate in well under a minute
}

// Run is the state shared by the scenarios of one run.
type Run struct {
	Config
	Addr   string
	Server Server // nil when the Redis is not ours (--redis)
	seq    atomic.Int64
}

// Scenario is one workload.
type Scenario struct {
	Name        string
	Description string
	// Run measures one candidate; an error is recorded in the result.
	Run func(ctx context.Context, run *Run, c Candidate) (Result, error)
}

// Scenarios lists every scenario in run order; failover is last because it
// kills the server.
func Scenarios() []Scenario {
	return []Scenario{localHit, zipfScenario, coherenceScenario, stampedeScenario, warmupScenario, failoverScenario}
}

// SelectScenarios picks scenarios by name (all when names is empty).
func SelectScenarios(names []string) ([]Scenario, error) {
	all := Scenarios()
	if len(names) == 0 {
		return all, nil
	}
	var out []Scenario
	for _, n := range names {
		i := slices.IndexFunc(all, func(s Scenario) bool { return s.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("bench: unknown scenario %q", n)
		}
		out = append(out, all[i])
	}
	return out, nil
}

func (r *Run) env(scenario string, c Candidate) Env {
	return Env{
		Addr:      r.Addr,
		Namespace: fmt.Sprintf("bench:%s:%s:%d", scenario, c.Name, r.seq.Add(1)),
		LocalTTL:  10 * time.Second,
		RemoteTTL: time.Minute,
	}
}

// replicas builds n replicas of c sharing one namespace.
func (r *Run) replicas(ctx context.Context, scenario string, c Candidate, n int) ([]Replica, func(), error) {
	env := r.env(scenario, c)
	out := make([]Replica, 0, n)
	closeAll := func() {
		for _, x := range out {
			x.Close()
		}
	}
	for range n {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		x, err := c.NewReplica(rctx, env)
		cancel()
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("new replica: %w", err)
		}
		out = append(out, x)
	}
	return out, closeAll, nil
}

func (r *Run) scale(full, quick int) int {
	if r.Quick {
		return quick
	}
	return full
}

// quantile of sorted values.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	return sorted[min(int(q*float64(len(sorted)-1)+0.5), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
func us(d time.Duration) float64 { return float64(d) / 1e3 }
