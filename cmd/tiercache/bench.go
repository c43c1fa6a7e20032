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

func benchCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scenarios := fs.String("scenarios", "", "comma-separated scenarios or families (default: all): "+scenarioNames())
	candidates := fs.String("candidates", "", "comma-separated candidates (default: all): "+candidateNames())
	duration := fs.Duration("duration", 10*time.Second, "length of each timed scenario run")
	replicas := fs.Int("replicas", 4, "replicas per candidate (each with its own Redis client)")
	runs := fs.Int("runs", 1, "runs of each scenario for each candidate; tables show the median and the range")
	processes := fs.Bool("processes", false, "run each replica of the fleet scenarios as its own OS process (this binary re-executed)")
	seed := fs.Uint64("seed", 1, "seed of the workloads' key choices (run r uses seed+r)")
	redisURL := fs.String("redis", os.Getenv("REDIS_URL"), "Redis URL (default $REDIS_URL); without one a throwaway redis-server is started on a free port")
	out := fs.String("out", "", "directory for report.md, report.json and report.html (default bench-results/<time>)")
	quick := fs.Bool("quick", false, "every scenario and candidate at small sizes, 1 s timed runs (the whole run in about a minute)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file (replicas in this process: not with --processes)")
	memprofile := fs.String("memprofile", "", "write an allocation profile of the run to this file (as --cpuprofile)")
	compare := fs.String("compare", "", "an earlier report.json: add a before/after table to the report (compare.md, compare.html)")
	against := fs.String("against", "", "with --compare: compare with this report.json instead of running the bench")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var old *bench.Report
	if *compare != "" {
		var err error
		if old, err = readReport(*compare); err != nil {
			fmt.Fprintln(stderr, "tiercache bench:", err)
			return 2
		}
	}
	if *against != "" {
		if old == nil {
			fmt.Fprintln(stderr, "tiercache bench: --against goes with --compare")
			return 2
		}
		return compareOnly(old, *against, *out, stdout, stderr)
	}
	switch {
	case *replicas < 2:
		fmt.Fprintln(stderr, "tiercache bench: --replicas must be at least 2")
		return 2
	case *runs < 1:
		fmt.Fprintln(stderr, "tiercache bench: --runs must be at least 1")
		return 2
	case *processes && (*cpuprofile != "" || *memprofile != ""):
		fmt.Fprintln(stderr, "tiercache bench: a profile covers this process only; drop --processes so the replicas run in it")
		return 2
	}
	if *quick && !flagSet(fs, "duration") {
		*duration = time.Second
	}
	scs, err := bench.SelectScenarios(split(*scenarios))
	if err != nil {
		fmt.Fprintln(stderr, "tiercache bench:", err)
		return 2
	}
	cands, err := bench.Select(split(*candidates))
	if err != nil {
		fmt.Fprintln(stderr, "tiercache bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	run := &bench.Run{Config: bench.Config{Duration: *duration, Replicas: *replicas, Quick: *quick, Runs: *runs, Processes: *processes, Seed: *seed}}
	defer run.Close()
	if *redisURL != "" {
		opt, err := rueidis.ParseURL(*redisURL)
		if err != nil || len(opt.InitAddress) == 0 {
			fmt.Fprintf(stderr, "tiercache bench: bad --redis %q: %v\n", *redisURL, err)
			return 2
		}
		run.Addr = opt.InitAddress[0]
	} else {
		srv, err := redisserver.Start(ctx, redisserver.Options{})
		if errors.Is(err, redisserver.ErrNotInstalled) {
			fmt.Fprintln(stderr, "tiercache bench: no redis-server to start a throwaway Redis with.\n"+
				"  Install it (Debian/Ubuntu: sudo apt-get install -y redis-server), or give one with --redis redis://host:port.")
			return 1
		}
		if err != nil {
			fmt.Fprintln(stderr, "tiercache bench: start redis-server:", err)
			return 1
		}
		defer srv.Stop()
		run.Addr, run.Server = srv.Addr(), srv
		fmt.Fprintf(stderr, "throwaway redis-server on %s\n", srv.Addr())
	}

	stopProfiles, err := startProfiles(*cpuprofile, *memprofile)
	if err != nil {
		fmt.Fprintln(stderr, "tiercache bench:", err)
		return 1
	}
	start := time.Now()
	rep := bench.Execute(ctx, run, scs, cands, newProgress(stderr))
	if err := stopProfiles(); err != nil {
		fmt.Fprintln(stderr, "tiercache bench:", err)
		return 1
	}
	rep.Config.Flags = flagValues(fs)
	rep.Compared = old
	rep.WriteText(stdout)

	dir := *out
	if dir == "" {
		dir = filepath.Join("bench-results", rep.Date.Format("20060102T150405Z"))
	}
	if err := writeReport(rep, dir); err != nil {
		fmt.Fprintln(stderr, "tiercache bench:", err)
		return 1
	}
	if old != nil {
		c := bench.Compare(old, rep)
		c.WriteText(stdout)
		if err := writeComparison(c, dir); err != nil {
			fmt.Fprintln(stderr, "tiercache bench:", err)
			return 1
		}
	}
	fmt.Fprintf(stdout, "\nreport written to %s (report.md, report.json, report.html) in %s\n", dir, time.Since(start).Round(time.Second))
	failed := 0
	for _, r := range rep.Results {
		if r.Error != "" {
			failed++
		}
	}
	if failed > 0 || ctx.Err() != nil {
		fmt.Fprintf(stderr, "tiercache bench: %d runs failed\n", failed)
		return 1
	}
	return 0
}

// compareOnly renders the before/after table of two saved reports.
func compareOnly(old *bench.Report, against, dir string, stdout, stderr io.Writer) int {
	rep, err := readReport(against)
	if err != nil {
		fmt.Fprintln(stderr, "tiercache bench:", err)
		return 2
	}
	c := bench.Compare(old, rep)
	c.WriteText(stdout)
	if dir == "" {
		dir = filepath.Dir(against)
	}
	if err := writeComparison(c, dir); err != nil {
		fmt.Fprintln(stderr, "tiercache bench:", err)
		return 1
	}
	fmt.Fprintf(stdout, "\ncomparison written to %s (compare.md, compare.html)\n", dir)
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
