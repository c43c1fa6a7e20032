package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/bench"
	"github.com/tiercache/tiercache/internal/redisserver"
)

var benchCommand = command{
	name:     "bench",
	synopsis: "[--quick] [--scenarios LIST] [--candidates LIST] [--redis ADDR] [--out DIR] [flags]",
	summary:  "run the benchmark scenarios for tiercache and its peers, and write the report",
	about: `
Runs each scenario for each candidate (tiercache and its peers) and writes
report.md, report.json and report.html. Without --redis (or $REDIS_URL) it
starts a throwaway redis-server on a free port. A Redis given by --redis
must be reachable as plain host:port: the candidates connect by address
only, so TLS (rediss://), a user or password, or a database other than 0
are refused rather than ignored.`,
	define: defineBench,
}

func defineBench(fs *flag.FlagSet) action {
	scenarios := fs.String("scenarios", "", "a comma-separated `LIST` of scenarios or families (default: all): "+scenarioNames())
	candidates := fs.String("candidates", "", "a comma-separated `LIST` of candidates (default: all): "+candidateNames()+
		"; NAME@MiB is tiercache or naive with a local tier of that many MiB, beside the others in the same run (tiercache,tiercache@256)")
	duration := fs.Duration("duration", 10*time.Second, "length of each timed scenario run")
	replicas := fs.Int("replicas", 4, "replicas per candidate (each with its own Redis client)")
	localMiB := fs.Int("local-mib", 64, "byte budget, in MiB, of tiercache's and naive's local tiers")
	runs := fs.Int("runs", 1, "runs of each scenario for each candidate; tables show the median and the range")
	processes := fs.Bool("processes", false, "run each replica of the fleet scenarios as its own OS process (this binary re-executed)")
	seed := fs.Uint64("seed", 1, "seed of the workloads' key choices (run r uses seed+r)")
	redisAddr := fs.String("redis", "", "`ADDR` of the Redis, host:port (default $REDIS_URL); without one a throwaway redis-server is started on a free port")
	out := fs.String("out", "", "`DIR` for report.md, report.json and report.html (default bench-results/<time>)")
	quick := fs.Bool("quick", false, "every scenario and candidate at small sizes, 1 s timed runs (the whole run in about a minute)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the run to this `FILE`; with --processes, each replica process also writes its own to FILE.worker-PID")
	memprofile := fs.String("memprofile", "", "write an allocation profile of the run to this `FILE` (replicas in this process: not with --processes)")
	shape := fs.String("shape", "", "also run the zipf workload in this `SPEC`, as scenario "+bench.ShapeName+" (alone when --scenarios is not given): "+bench.ShapeSyntax)
	compare := fs.String("compare", "", "an earlier report.json `FILE`: add a before/after table to the report (compare.md, compare.html)")
	against := fs.String("against", "", "with --compare: compare with this report.json `FILE` instead of running the bench")
	return func(inv *invocation) int {
		if p := inv.noArgs(); p != "" {
			return inv.usageErrors(p)
		}
		var old *bench.Report
		if *compare != "" {
			var err error
			if old, err = readReport(*compare); err != nil {
				return inv.usageErrors(fmt.Sprintf("--compare: %v", err))
			}
		}
		if *against != "" {
			if old == nil {
				return inv.usageErrors("--against goes with --compare: --compare OLD.json --against NEW.json")
			}
			// Nothing runs: a flag that shapes a run would be ignored.
			var ignored []string
			fs.Visit(func(f *flag.Flag) {
				if f.Name != "compare" && f.Name != "against" && f.Name != "out" {
					ignored = append(ignored, "--"+f.Name)
				}
			})
			if len(ignored) > 0 {
				return inv.usageErrors(fmt.Sprintf("--compare OLD.json --against NEW.json runs nothing, so %s would be ignored: give only --out with them", strings.Join(ignored, ", ")))
			}
			return compareOnly(inv, old, *against, *out)
		}
		var list []string
		if *replicas < 2 {
			list = append(list, fmt.Sprintf("--replicas must be at least 2 (got %d)", *replicas))
		}
		if *localMiB < 1 {
			list = append(list, fmt.Sprintf("--local-mib must be at least 1 (got %d)", *localMiB))
		}
		if *runs < 1 {
			list = append(list, fmt.Sprintf("--runs must be at least 1 (got %d)", *runs))
		}
		if *processes && *memprofile != "" {
			list = append(list, "--memprofile covers this process only; drop --processes so the replicas run in it")
		}
		scs, scenarioProblem := selectNamed("scenario", split(*scenarios), bench.SelectScenarios, scenarioNames())
		if *shape != "" {
			sc, err := bench.ZipfShape(*shape)
			switch {
			case err != nil:
				list = append(list, "--shape: "+strings.TrimPrefix(err.Error(), "bench: "))
			case *scenarios == "":
				scs = []bench.Scenario{sc}
			default:
				scs = append(scs, sc)
			}
		}
		cands, candidateProblem := selectNamed("candidate", split(*candidates), bench.Select, candidateNames())
		var opt rueidis.ClientOption
		redisProblem := ""
		if *redisAddr != "" || os.Getenv("REDIS_URL") != "" {
			if opt, redisProblem = redisFlag("redis", *redisAddr, true); redisProblem == "" {
				redisProblem = addressOnly(opt)
			}
		}
		if list = append(list, problems(scenarioProblem, candidateProblem, redisProblem)...); len(list) > 0 {
			return inv.usageErrors(list...)
		}
		if *quick && !flagSet(fs, "duration") {
			*duration = time.Second
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()

		run := &bench.Run{Config: bench.Config{Duration: *duration, Replicas: *replicas, Quick: *quick, Runs: *runs, Processes: *processes, Seed: *seed,
			LocalMaxCost: int64(*localMiB) << 20}}
		defer run.Close()
		if len(opt.InitAddress) > 0 {
			// Every scenario would fail on its own, slowly: check once.
			c, err := connect(ctx, opt)
			if err != nil {
				return inv.fail(err)
			}
			c.Close()
			run.Addr = opt.InitAddress[0]
		} else {
			srv, err := redisserver.Start(ctx, redisserver.Options{})
			if errors.Is(err, redisserver.ErrNotInstalled) {
				return inv.fail(errors.New("no redis-server to start a throwaway Redis with.\n" +
					"  Install it (Debian/Ubuntu: sudo apt-get install -y redis-server), or give one with --redis host:port."))
			}
			if err != nil {
				return inv.fail(fmt.Errorf("start redis-server: %w", err))
			}
			defer srv.Stop()
			run.Addr, run.Server = srv.Addr(), srv
			fmt.Fprintf(inv.stderr, "throwaway redis-server on %s\n", srv.Addr())
		}

		stopProfiles, err := startProfiles(*cpuprofile, *memprofile)
		if err != nil {
			return inv.fail(err)
		}
		if *processes && *cpuprofile != "" {
			// The replica processes inherit it (bench.ServeWorker).
			os.Setenv(bench.WorkerCPUProfileEnv, *cpuprofile)
			defer os.Unsetenv(bench.WorkerCPUProfileEnv)
		}
		start := time.Now()
		rep := bench.Execute(ctx, run, scs, cands, newProgress(inv.stderr))
		if err := stopProfiles(); err != nil {
			return inv.fail(err)
		}
		rep.Config.Flags = flagValues(fs)
		rep.Compared = old
		rep.WriteText(inv.stdout)

		dir := *out
		if dir == "" {
			dir = filepath.Join("bench-results", rep.Date.Format("20060102T150405Z"))
		}
		if err := writeReport(rep, dir); err != nil {
			return inv.fail(err)
		}
		if old != nil {
			c := bench.Compare(old, rep)
			c.WriteText(inv.stdout)
			if err := writeComparison(c, dir); err != nil {
				return inv.fail(err)
			}
		}
		fmt.Fprintf(inv.stdout, "\nreport written to %s (report.md, report.json, report.html) in %s\n", dir, time.Since(start).Round(time.Second))
		failed := 0
		for _, r := range rep.Results {
			if r.Error != "" {
				failed++
			}
		}
		if failed > 0 || ctx.Err() != nil {
			return inv.fail(fmt.Errorf("%d runs failed", failed))
		}
		return 0
	}
}

// addressOnly is the problem of a --redis the bench cannot honour: its
// candidates, the peers' clients included, connect by address alone, and
// a setting silently dropped would bench another Redis than the one named.
func addressOnly(opt rueidis.ClientOption) string {
	var lost []string
	if opt.TLSConfig != nil {
		lost = append(lost, "TLS (rediss://)")
	}
	if opt.Username != "" || opt.Password != "" {
		lost = append(lost, "a user or password")
	}
	if opt.SelectDB != 0 {
		lost = append(lost, fmt.Sprintf("database %d", opt.SelectDB))
	}
	if len(opt.InitAddress) != 1 {
		lost = append(lost, "several addresses")
	}
	if len(lost) == 0 {
		return ""
	}
	return fmt.Sprintf("--redis asks for %s, which bench cannot honour: its candidates connect by address only. "+
		"Give a Redis reachable as plain host:port (database 0, no AUTH, no TLS), or drop --redis for a throwaway redis-server", strings.Join(lost, ", "))
}

// selectNamed is one of bench's selections (bench.SelectScenarios,
// bench.Select) with the CLI's error: the first name refused, with the
// valid ones when it is unknown, else bench's reason (without its "bench:"
// prefix, which would repeat ours).
func selectNamed[T any](what string, names []string, sel func([]string) ([]T, error), valid string) ([]T, string) {
	out, err := sel(names)
	if err == nil {
		return out, ""
	}
	for _, n := range names {
		_, err := sel([]string{n})
		switch {
		case errors.Is(err, bench.ErrUnknownName):
			return nil, fmt.Sprintf("unknown %s %q; valid: %s", what, n, valid)
		case err != nil:
			return nil, strings.TrimPrefix(err.Error(), "bench: ")
		}
	}
	return nil, err.Error()
}

// compareOnly renders the before/after table of two saved reports.
func compareOnly(inv *invocation, old *bench.Report, against, dir string) int {
	rep, err := readReport(against)
	if err != nil {
		return inv.usageErrors(fmt.Sprintf("--against: %v", err))
	}
	c := bench.Compare(old, rep)
	c.WriteText(inv.stdout)
	if dir == "" {
		dir = filepath.Dir(against)
	}
	if err := writeComparison(c, dir); err != nil {
		return inv.fail(err)
	}
	fmt.Fprintf(inv.stdout, "\ncomparison written to %s (compare.md, compare.html)\n", dir)
	return 0
}

func readReport(path string) (*bench.Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rep, err := bench.ReadReport(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rep, nil
}

// startProfiles starts the CPU profile now and returns what ends it and
// writes the allocation profile.
func startProfiles(cpu, mem string) (stop func() error, err error) {
	var cpuFile *os.File
	if cpu != "" {
		if cpuFile, err = os.Create(cpu); err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(cpuFile); err != nil {
			cpuFile.Close()
			return nil, err
		}
	}
	return func() error {
		if cpuFile != nil {
			pprof.StopCPUProfile()
			if err := cpuFile.Close(); err != nil {
				return err
			}
		}
		if mem == "" {
			return nil
		}
		f, err := os.Create(mem)
		if err != nil {
			return err
		}
		// allocs: every allocation since start (alloc_space), not the live heap.
		err = pprof.Lookup("allocs").WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}, nil
}

func flagValues(fs *flag.FlagSet) map[string]string {
	out := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { out[f.Name] = f.Value.String() })
	return out
}

func writeReport(rep *bench.Report, dir string) error {
	return writeFiles(dir, map[string]func(io.Writer) error{
		"report.md":   func(w io.Writer) error { rep.WriteMarkdown(w); return nil },
		"report.json": rep.WriteJSON,
		"report.html": rep.WriteHTML,
	})
}

func writeComparison(c bench.Comparison, dir string) error {
	return writeFiles(dir, map[string]func(io.Writer) error{
		"compare.md":   func(w io.Writer) error { c.WriteMarkdown(w); return nil },
		"compare.html": c.WriteHTML,
	})
}

func writeFiles(dir string, files map[string]func(io.Writer) error) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, write := range files {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		err = write(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func scenarioNames() string {
	var n []string
	for _, s := range bench.Scenarios() {
		n = append(n, s.Name)
	}
	return strings.Join(n, ", ")
}

func candidateNames() string {
	var n []string
	for _, c := range bench.Candidates() {
		n = append(n, c.Name)
	}
	return strings.Join(n, ", ")
}

// progress shows which run is going and, on a terminal, a live clock.
type progress struct {
	w    io.Writer
	tty  bool
	mu   sync.Mutex
	stop chan struct{}
	done chan struct{}
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) Start(i, total int, scenario, candidate string, run int) {
	label := fmt.Sprintf("[%3d/%d] %-9s %-17s run %d", i, total, scenario, candidate, run)
	if !p.tty {
		fmt.Fprintf(p.w, "%s …\n", label)
		return
	}
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	start := time.Now()
	go func() {
		defer close(p.done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			p.mu.Lock()
			fmt.Fprintf(p.w, "\r%s %5.1fs", label, time.Since(start).Seconds())
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
}

func (p *progress) Done(i, total int, r bench.Result) {
	if p.tty {
		close(p.stop)
		<-p.done
		fmt.Fprint(p.w, "\r\033[K")
	}
	status := fmt.Sprintf("done in %.1fs", r.Seconds)
	switch {
	case r.Error != "":
		status = "ERROR: " + r.Error
	case r.Skipped != "":
		status = "skipped: " + r.Skipped
	}
	fmt.Fprintf(p.w, "[%3d/%d] %-9s %-17s run %d %s\n", i, total, r.Scenario, r.Candidate, r.Run, status)
}
