package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/bench"
)

// TestMain lets this test binary serve as a replica worker, as the CLI's
// main does: `bench --processes` re-executes the running binary.
func TestMain(m *testing.M) {
	if bench.IsWorker() {
		os.Exit(bench.ServeWorker())
	}
	os.Exit(m.Run())
}

func TestBenchRejectsBadFlags(t *testing.T) {
	var out, errb bytes.Buffer
	assert.Equal(t, 2, run([]string{"bench", "--scenarios", "nope"}, &out, &errb))
	assert.Equal(t, 2, run([]string{"bench", "--candidates", "nope"}, &out, &errb))
	assert.Equal(t, 2, run([]string{"bench", "--replicas", "1"}, &out, &errb))
	assert.Equal(t, 2, run([]string{"bench", "--redis", "://bad"}, &out, &errb))
	assert.Equal(t, 2, run([]string{"bench", "--runs", "0"}, &out, &errb))
	assert.Equal(t, 2, run([]string{"bench", "--processes", "--memprofile", "x"}, &out, &errb))
	assert.Contains(t, errb.String(), "drop --processes", "an allocation profile of the bench would miss the replicas")
	assert.Equal(t, 2, run([]string{"bench", "--against", "x.json"}, &out, &errb))
	assert.Equal(t, 2, run([]string{"bench", "--compare", filepath.Join(t.TempDir(), "missing.json")}, &out, &errb))
}

func readJSONReport(t *testing.T, dir string) *bench.Report {
	f, err := os.Open(filepath.Join(dir, "report.json"))
	require.NoError(t, err)
	defer f.Close()
	rep, err := bench.ReadReport(f)
	require.NoError(t, err)
	return rep
}

// TestBenchQuickSmoke runs `tiercache bench --quick` against a throwaway
// redis-server, as `make test` must: not a timed assertion, only that the
// run completes and every scenario reports for every candidate.
func TestBenchQuickSmoke(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := run([]string{"bench", "--quick", "--out", dir}, &out, &errb)
	require.Equal(t, 0, code, "stderr:\n%s", errb.String())
	rep := readJSONReport(t, dir)
	for _, s := range bench.Scenarios() {
		for _, c := range bench.Candidates() {
			found := false
			for _, r := range rep.Results {
				if r.Scenario == s.Name && r.Candidate == c.Name {
					found = true
					assert.Empty(t, r.Error, "%s/%s", s.Name, c.Name)
					assert.True(t, len(r.Metrics) > 0 || r.Skipped != "", "%s/%s reported nothing", s.Name, c.Name)
				}
			}
			assert.True(t, found, "no result for %s/%s", s.Name, c.Name)
		}
	}
	html, err := os.ReadFile(filepath.Join(dir, "report.html"))
	require.NoError(t, err)
	assert.Greater(t, strings.Count(string(html), "<svg"), 10, "the HTML report has its charts")
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	require.NoError(t, err)
	assert.Contains(t, string(md), "tiercache vs best peer")
	assert.Contains(t, string(md), "tiercache+warm-up", "the deploy scenario runs tiercache with and without warm-up")
	assert.Contains(t, out.String(), "== zipf ==", "the terminal table is printed")
}

// TestBenchProcessesRunsAndCompare: replicas as processes, two runs per
// candidate, the flags and seeds in the JSON, a CPU profile of each replica
// process, and a comparison of two saved reports without running anything.
func TestBenchProcessesRunsAndCompare(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	cpu := filepath.Join(dir, "cpu.pprof")
	args := []string{"bench", "--quick", "--processes", "--runs", "2", "--scenarios", "coherence", "--candidates", "tiercache,naive", "--seed", "7", "--out", dir, "--cpuprofile", cpu}
	require.Equal(t, 0, run(args, &out, &errb), "stderr:\n%s", errb.String())
	workers, err := filepath.Glob(cpu + ".worker-*")
	require.NoError(t, err)
	assert.GreaterOrEqual(t, len(workers), 4, "a profile per replica process: 2 candidates × 2 runs × at least 2 replicas")
	for _, p := range append(workers, cpu) {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		assert.True(t, bytes.HasPrefix(b, []byte{0x1f, 0x8b}), "%s is a gzipped pprof profile", p)
	}
	rep := readJSONReport(t, dir)
	assert.True(t, rep.Config.Processes)
	assert.Equal(t, 2, rep.Config.Runs)
	assert.Equal(t, "7", rep.Config.Flags["seed"], "the JSON records every flag")
	assert.Equal(t, "true", rep.Config.Flags["processes"])
	assert.NotEmpty(t, rep.Machine.GoVersion)
	assert.NotEmpty(t, rep.Machine.RedisVersion)
	runs := map[string][]int{}
	for _, r := range rep.Results {
		require.Empty(t, r.Error)
		runs[r.Candidate] = append(runs[r.Candidate], r.Run)
		assert.Equal(t, uint64(7)+uint64(r.Run), r.Seed, "run r's seed is the seed plus r")
	}
	assert.Equal(t, map[string][]int{"tiercache": {1, 2}, "naive": {1, 2}}, runs)
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	require.NoError(t, err)
	assert.Contains(t, string(md), "separate OS processes")

	out.Reset()
	cmp := t.TempDir()
	old := filepath.Join(dir, "report.json")
	require.Equal(t, 0, run([]string{"bench", "--compare", old, "--against", old, "--out", cmp}, &out, &errb), "stderr:\n%s", errb.String())
	text, err := os.ReadFile(filepath.Join(cmp, "compare.md"))
	require.NoError(t, err)
	assert.Contains(t, string(text), "| coherence | tiercache | p50 (ms) |")
	assert.Contains(t, string(text), "| same |", "a report compared with itself has not changed")
	_, err = os.Stat(filepath.Join(cmp, "compare.html"))
	assert.NoError(t, err)
	// Comparing two reports runs nothing: a flag that shapes a run is
	// refused, not silently ignored.
	errb.Reset()
	assert.Equal(t, 2, run([]string{"bench", "--compare", old, "--against", old, "--quick", "--scenarios", "zipf"}, &out, &errb))
	assert.Contains(t, errb.String(), "--quick, --scenarios would be ignored")
}
