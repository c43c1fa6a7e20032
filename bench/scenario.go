package bench

import (
	"cmp"
	"context"
	"encoding/json"
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

// MarshalJSON writes a missing figure (NaN, which JSON lacks) as null.
func (m Metric) MarshalJSON() ([]byte, error) {
	type plain Metric
	v := struct {
		plain
		Value *float64 `json:"value"`
	}{plain: plain(m)}
	if !math.IsNaN(m.Value) && !math.IsInf(m.Value, 0) {
		v.Value = &m.Value
	}
	return json.Marshal(v)
}

// UnmarshalJSON reads null as NaN.
func (m *Metric) UnmarshalJSON(b []byte) error {
	type plain Metric
	v := struct {
		*plain
		Value *float64 `json:"value"`
	}{plain: (*plain)(m)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	m.Value = math.NaN()
	if v.Value != nil {
		m.Value = *v.Value
	}
	return nil
}

// Result is one scenario run for one candidate.
type Result struct {
	Scenario  string   `json:"scenario"`
	Candidate string   `json:"candidate"`
	Run       int      `json:"run"` // 1-based, of Config.Runs
	Seed      uint64   `json:"seed"`
	Metrics   []Metric `json:"metrics,omitempty"`
	// RedisPerOp is Redis's own count of commands (INFO commandstats, which
	// counts the commands a script runs too) per operation, by command.
	RedisPerOp map[string]float64   `json:"redis_per_op,omitempty"`
	Samples    map[string][]float64 `json:"samples,omitempty"` // distributions for the charts
	Note       string               `json:"note,omitempty"`
	Skipped    string               `json:"skipped,omitempty"`
	Error      string               `json:"error,omitempty"`
	Seconds    float64              `json:"seconds"`
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
	// Runs is how many times each scenario runs for each candidate; the
	// report gives the median and the spread. At least 1.
	Runs int
	// Processes runs each replica of the fleet scenarios as an OS process
	// of its own (this binary re-executed: see IsWorker), not a goroutine
	// group of this one.
	Processes bool
	// Seed seeds the workloads' key choices; run r of a scenario uses
	// Seed+r, so two reports with one seed drew the same keys.
	Seed uint64
	// LocalMaxCost is the byte budget of tiercache's and naive's local
	// tiers (0: 64 MiB), so a generous budget can be tried on both.
	LocalMaxCost int64
}

// Run is the state shared by the scenarios of one run.
type Run struct {
	Config
	Addr   string
	Server Server // nil when the Redis is not ours (--redis)
	seq    atomic.Int64
	admin  adminClient
}

// Scenario is one workload.
type Scenario struct {
	Name string
	// Family groups shapes of one workload: selecting a family's name
	// selects every scenario in it.
	Family      string
	Description string
	// Fleet marks a scenario whose replicas run as processes with
	// Config.Processes.
	Fleet bool
	// Variants runs candidates that warm up (Candidate.WarmsUp) a second
	// time, warming up.
	Variants bool
	// Run measures one candidate; an error is recorded in the result.
	Run func(ctx context.Context, run *Run, c Entry) (Result, error)
}

// Entry is a candidate as one scenario runs it: itself, or its warm-up
// variant (Name gets warmupSuffix).
type Entry struct {
	Candidate
	Warmup bool
	Seed   uint64
}

const warmupSuffix = "+warm-up"

// Label names the entry in the report.
func (e Entry) Label() string {
	if e.Warmup {
		return e.Name + warmupSuffix
	}
	return e.Name
}

// Scenarios lists every scenario in run order; failover is last because it
// kills the server.
func Scenarios() []Scenario {
	return []Scenario{localHit, zipfSmall, zipfLarge, coherenceScenario, stampedeScenario, warmupScenario, deployScenario, failoverScenario}
}

// SelectScenarios picks scenarios by name (all when names is empty).
func SelectScenarios(names []string) ([]Scenario, error) {
	all := Scenarios()
	if len(names) == 0 {
		return all, nil
	}
	var out []Scenario
	for _, n := range names {
		found := false
		for _, s := range all {
			if (s.Name == n || s.Family == n) && !slices.ContainsFunc(out, func(o Scenario) bool { return o.Name == s.Name }) {
				out = append(out, s)
				found = true
			}
		}
		if !found {
			return nil, unknownName(fmt.Sprintf("bench: unknown scenario %q", n))
		}
	}
	return out, nil
}

func (r *Run) env(scenario string, c Candidate) Env {
	return Env{
		Addr:         r.Addr,
		Namespace:    fmt.Sprintf("bench:%s:%s:%d", scenario, c.Name, r.seq.Add(1)),
		LocalTTL:     10 * time.Second,
		RemoteTTL:    time.Minute,
		LocalMaxCost: cmp.Or(r.LocalMaxCost, defaultLocalMaxCost),
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
		r.dropNamespace(env.Namespace)
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

func (r *Run) scaleDuration(full, quick time.Duration) time.Duration {
	return time.Duration(r.scale(int(full), int(quick)))
}

// quantile of sorted values.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	return sorted[min(int(q*float64(len(sorted)-1)+0.5), len(sorted)-1)]
}

// thin keeps at most n evenly spaced values of a sorted slice, for charts.
func thin(sorted []float64, n int) []float64 {
	if len(sorted) <= n {
		return sorted
	}
	out := make([]float64, n)
	for i := range out {
		out[i] = sorted[i*(len(sorted)-1)/(n-1)]
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
func us(d time.Duration) float64 { return float64(d) / 1e3 }
