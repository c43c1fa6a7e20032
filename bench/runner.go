package bench

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// Progress hears of each run of a scenario for a candidate as it starts and ends.
type Progress interface {
	Start(i, total int, scenario, candidate string, run int)
	Done(i, total int, r Result)
}

// Report is a whole run: what ran, where, and every result.
type Report struct {
	Date       time.Time         `json:"date"`
	Machine    Machine           `json:"machine"`
	Versions   map[string]string `json:"versions"`
	Config     ReportConfig      `json:"config"`
	Scenarios  []Described       `json:"scenarios"`
	Candidates []Described       `json:"candidates"`
	// Results holds every run of every scenario for every candidate.
	Results []Result `json:"results"`
	// Compared is the earlier report this one is compared with, if any.
	Compared *Report `json:"-"`
}

// Machine describes where the run happened.
type Machine struct {
	OS, Arch     string
	CPUs         int
	GoVersion    string
	CPUModel     string `json:",omitempty"`
	RedisVersion string `json:",omitempty"`
	Hostname     string `json:",omitempty"`
}

// ReportConfig is Config in printable units, and how the bench was invoked.
type ReportConfig struct {
	DurationSeconds float64 `json:"duration_seconds"`
	Replicas        int     `json:"replicas"`
	Quick           bool    `json:"quick"`
	ThrowawayRedis  bool    `json:"throwaway_redis"`
	Runs            int     `json:"runs"`
	Processes       bool    `json:"processes"`
	Seed            uint64  `json:"seed"`
	// Flags are the command line's flags, every one with its value.
	Flags map[string]string `json:"flags,omitempty"`
}

// Described is a named thing with its description.
type Described struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Fleet marks a scenario whose replicas run as processes in process mode.
	Fleet bool `json:"fleet,omitempty"`
}

// Execute runs every scenario for every candidate, Config.Runs times.
// A scenario's runs follow each other, and within a run the candidates take
// turns, starting one later each run: a slow spell on the machine falls on
// every candidate alike rather than on one candidate's runs.
func Execute(ctx context.Context, run *Run, scenarios []Scenario, cands []Candidate, p Progress) *Report {
	runs := max(run.Runs, 1)
	rep := &Report{
		Date:     time.Now().UTC(),
		Machine:  machine(ctx, run),
		Versions: versions(),
		Config: ReportConfig{DurationSeconds: run.Duration.Seconds(), Replicas: run.Replicas, Quick: run.Quick,
			ThrowawayRedis: run.Server != nil, Runs: runs, Processes: run.Processes, Seed: run.Seed},
	}
	described := map[string]bool{}
	total := 0
	for _, s := range scenarios {
		rep.Scenarios = append(rep.Scenarios, Described{Name: s.Name, Description: s.Description, Fleet: s.Fleet})
		for _, e := range entries(s, cands) {
			total += runs
			if !described[e.Label()] {
				described[e.Label()] = true
				rep.Candidates = append(rep.Candidates, Described{Name: e.Label(), Description: e.describe()})
			}
		}
	}
	i := 0
	for _, s := range scenarios {
		es := entries(s, cands)
		for r := 1; r <= runs; r++ {
			for j := range es {
				e := es[(j+r-1)%len(es)]
				e.Seed = run.Seed + uint64(r)
				i++
				if p != nil {
					p.Start(i, total, s.Name, e.Label(), r)
				}
				t0 := time.Now()
				res := runOne(ctx, run, s, e)
				res.Scenario, res.Candidate, res.Run, res.Seed, res.Seconds = s.Name, e.Label(), r, e.Seed, time.Since(t0).Seconds()
				for name, xs := range res.Samples { // JSON has no NaN, and a chart cannot place one
					res.Samples[name] = slices.DeleteFunc(xs, func(x float64) bool { return math.IsNaN(x) || math.IsInf(x, 0) })
				}
				rep.Results = append(rep.Results, res)
				if p != nil {
					p.Done(i, total, res)
				}
				if ctx.Err() != nil {
					return rep
				}
			}
		}
	}
	return rep
}

// entries are the candidates as scenario s runs them.
func entries(s Scenario, cands []Candidate) []Entry {
	var out []Entry
	for _, c := range cands {
		if s.Variants && c.WarmsUp {
			out = append(out, Entry{Candidate: c, Warmup: true})
		}
		out = append(out, Entry{Candidate: c})
	}
	return out
}

func (e Entry) describe() string {
	if e.Warmup {
		return e.Name + " with Env.Warmup: every replica feeds the fleet's hot set in Redis, and a new replica preloads it " +
			"before it is ready (the deploy scenario). Otherwise as " + e.Name + "."
	}
	return e.Config
}

// runOne records a scenario's error, or panic, in its result: one broken
// candidate must not end the run.
func runOne(ctx context.Context, run *Run, s Scenario, e Entry) (r Result) {
	defer func() {
		if p := recover(); p != nil {
			r = Result{Error: fmt.Sprintf("panic: %v", p)}
		}
	}()
	r, err := s.Run(ctx, run, e)
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

func machine(ctx context.Context, run *Run) Machine {
	m := Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	m.Hostname, _ = os.Hostname()
	if info, err := run.info(ctx, "server"); err == nil {
		m.RedisVersion = info["redis_version"]
	}
	return m
}

// versions lists the modules of the candidates, from the build info, and
// the commit of this checkout when the binary was built from git.
func versions() map[string]string {
	out := map[string]string{}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return out
	}
	vcs := map[string]string{}
	for _, s := range bi.Settings {
		vcs[s.Key] = s.Value
	}
	rev, modified := vcs["vcs.revision"], vcs["vcs.modified"] == "true"
	if rev == "" { // built without VCS stamps (GOFLAGS=-buildvcs=false): ask git about the working directory
		if b, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
			rev = strings.TrimSpace(string(b))
			st, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
			modified = len(bytes.TrimSpace(st)) > 0
		}
	}
	if rev != "" {
		if modified {
			rev += " (with uncommitted changes)"
		}
		out["checkout"] = rev
	}
	for _, d := range bi.Deps {
		for _, want := range []string{"github.com/redis/rueidis", "github.com/dgraph-io/ristretto", "github.com/go-redis/cache", "github.com/redis/go-redis", "github.com/tiercache/tiercache"} {
			if strings.HasPrefix(d.Path, want) {
				v := d.Version
				if d.Replace != nil {
					v = "(this checkout)"
				}
				out[d.Path] = v
			}
		}
	}
	return out
}
