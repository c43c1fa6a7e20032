package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/bench"
)

func TestHelpListsEverySubcommand(t *testing.T) {
	var out bytes.Buffer
	require.Equal(t, 0, run([]string{"help"}, &out, &out))
	for _, c := range commands() {
		assert.Contains(t, out.String(), c.name)
	}
	var errb bytes.Buffer
	assert.Equal(t, 2, run([]string{"nope"}, &out, &errb))
	assert.Contains(t, errb.String(), `unknown subcommand "nope"`)
	assert.Equal(t, 2, run(nil, &out, &errb))
}

func TestBenchRejectsBadFlags(t *testing.T) {
	var out, errb bytes.Buffer
	assert.Equal(t, 2, run([]string{"bench", "--scenarios", "nope"}, &out, &errb))
	assert.Equal(t, 2, run([]string{"bench", "--candidates", "nope"}, &out, &errb))
	assert.Equal(t, 2, run([]string{"bench", "--replicas", "1"}, &out, &errb))
	assert.Equal(t, 2, run([]string{"bench", "--redis", "://bad"}, &out, &errb))
}

// TestBenchQuickSmoke runs `tiercache bench --quick` against a throwaway
// redis-server, as `make test` must: not a timed assertion, only that the
// run completes and every scenario reports for every candidate.
func TestBenchQuickSmoke(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := run([]string{"bench", "--quick", "--out", dir}, &out, &errb)
	require.Equal(t, 0, code, "stderr:\n%s", errb.String())
	raw, err := os.ReadFile(filepath.Join(dir, "report.json"))
	require.NoError(t, err)
	var rep bench.Report
	require.NoError(t, json.Unmarshal(raw, &rep))
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
	assert.Contains(t, string(md), "tiercache ÷ best peer")
	assert.Contains(t, out.String(), "== zipf ==", "the terminal table is printed")
}
