package bench

import (
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Progress hears of each scenario × candidate as it starts and ends.
type Progress interface {
	Start(i, total int, scenario, candidate string)
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
	Results    []Result          `json:"results"`
}

// Machine describes where the run happened.
type Machine struct {
	OS, Arch     string
	CPUs         int
	GoVersion    string
	CPUModel     string `json:",omitempty"`
	RedisVersion string `json:",omitempty"`
}

// ReportConfig is Config in printable units.
type ReportConfig struct {
	DurationSeconds float64 `json:"duration_seconds"`
	Replicas        int     `json:"replicas"`
	Quick           bool    `json:"quick"`
	ThrowawayRedis  bool    `json:"throwaway_redis"`
}

// Described is a named thing with its description.
type Described struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// Execute runs every scenario for every candidate, scenario by scenario.
func Execute(ctx context.Context, run *Run, scenarios []Scenario, cands []Candidate, p Progress) *Report {
	rep := &Report{
		Date:     time.Now().UTC(),
		Machine:  machine(ctx, run.Addr),
		Versions: versions(),
		Config:   ReportConfig{DurationSeconds: run.Duration.Seconds(), Replicas: run.Replicas, Quick: run.Quick, ThrowawayRedis: run.Server != nil},
	}
	for _, s := range scenarios {
		rep.Scenarios = append(rep.Scenarios, Described{s.Name, s.Description})
	}
	for _, c := range cands {
		rep.Candidates = append(rep.Candidates, Described{c.Name, c.Config})
	}
	total, i := len(scenarios)*len(cands), 0
	for _, s := range scenarios {
		for _, c := range cands {
			i++
			if p != nil {
				p.Start(i, total, s.Name, c.Name)
			}
			t0 := time.Now()
			r := runOne(ctx, run, s, c)
			r.Scenario, r.Candidate, r.Seconds = s.Name, c.Name, time.Since(t0).Seconds()
			rep.Results = append(rep.Results, r)
			if p != nil {
				p.Done(i, total, r)
			}
			if ctx.Err() != nil {
				return rep
			}
		}
	}
	return rep
}

// runOne records a scenario's error, or panic, in its result: one broken
// candidate must not end the run.
func runOne(ctx context.Context, run *Run, s Scenario, c Candidate) (r Result) {
	defer func() {
		if p := recover(); p != nil {
			r = Result{Error: fmt.Sprintf("panic: %v", p)}
		}
	}()
	r, err := s.Run(ctx, run, c)
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

func machine(ctx context.Context, addr string) Machine {
	m := Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if out, err := exec.CommandContext(ctx, "sh", "-c", "grep -m1 'model name' /proc/cpuinfo").Output(); err == nil {
		_, model, _ := strings.Cut(string(out), ":")
		m.CPUModel = strings.TrimSpace(model)
	}
	if c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true}); err == nil {
		defer c.Close()
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if info, err := c.Do(ictx, c.B().Info().Section("server").Build()).ToString(); err == nil {
			for _, line := range strings.Split(info, "\r\n") {
				if v, ok := strings.CutPrefix(line, "redis_version:"); ok {
					m.RedisVersion = v
				}
			}
		}
	}
	return m
}

// versions lists the modules of the candidates, from the build info.
func versions() map[string]string {
	out := map[string]string{}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return out
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
