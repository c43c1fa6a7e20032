package bench

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sampleReport has three runs of one scenario for tiercache and two peers.
func sampleReport() *Report {
	rep := &Report{
		Date:       time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC),
		Config:     ReportConfig{Runs: 3, Processes: true},
		Scenarios:  []Described{{Name: "zipf", Description: "desc", Fleet: true}, {Name: "localhit", Description: "one replica"}},
		Candidates: []Described{{Name: "tiercache", Description: "c1"}, {Name: "peer-a", Description: "c2"}, {Name: "peer-b", Description: "c3"}},
	}
	add := func(cand string, run int, tput, p99, errs float64) {
		rep.Results = append(rep.Results, Result{Scenario: "zipf", Candidate: cand, Run: run,
			Metrics: []Metric{{"throughput", "ops/s", tput, "higher"}, {"p99", "ms", p99, "lower"}, {"errors", "ops", errs, "lower"}, {"info", "x", 7, ""}},
			Samples: map[string][]float64{"latency (ms)": {p99 / 4, p99 / 2, p99}}})
		if math.IsNaN(p99) {
			delete(rep.Results[len(rep.Results)-1].Samples, "latency (ms)")
		}
	}
	for run, f := range []float64{1, 1.1, 0.95} {
		add("tiercache", run+1, 210*f, 2*f, 0)
		add("peer-a", run+1, 100*f, 4*f, 0)
	}
	add("peer-b", 1, 50, math.NaN(), 0)
	add("peer-b", 2, 150, math.NaN(), 0) // runs 50..150: they disagree
	rep.Results = append(rep.Results, Result{Scenario: "zipf", Candidate: "peer-b", Run: 3, Error: "redis went away"})
	return rep
}

func TestRowsTakeTheMedianAndRangeOfRuns(t *testing.T) {
	rows := sampleReport().Rows("zipf")
	require.Len(t, rows, 3)
	tp, ok := rows[0].Figure("throughput")
	require.True(t, ok)
	assert.InDelta(t, 210, tp.Value, 1e-9, "median of 210, 231, 199.5")
	assert.InDelta(t, 199.5, tp.Min, 1e-9)
	assert.InDelta(t, 231, tp.Max, 1e-9)
	assert.False(t, tp.Disagree(), "15 %% apart is within the 20 %% bar")

	b, _ := rows[2].Figure("throughput")
	assert.Equal(t, 2, b.Runs, "the failed run has no figures")
	assert.InDelta(t, 100, b.Value, 1e-9, "the median of two runs is their mean")
	assert.True(t, b.Disagree())
	assert.Contains(t, rows[2].Failed, "run 3: error: redis went away")
	p99, _ := rows[2].Figure("p99")
	assert.True(t, math.IsNaN(p99.Value), "a figure no run measured stays missing")
	assert.Len(t, rows[0].Samples["latency (ms)"], 9, "samples pool every run")
}

func TestDisagreeWhenAZeroMedianHidesNonZeroRuns(t *testing.T) {
	assert.True(t, figure(Metric{}, []float64{0, 0, 20}).Disagree())
	assert.False(t, figure(Metric{}, []float64{0, 0, 0}).Disagree())
	assert.False(t, figure(Metric{}, []float64{5}).Disagree(), "one run cannot disagree with itself")
}

func TestRatiosComeFromMediansInWords(t *testing.T) {
	rs := sampleReport().Ratios("zipf")["tiercache"]
	require.Len(t, rs, 3, "informational metrics have no ratio")
	assert.Equal(t, "throughput", rs[0].Metric)
	assert.Equal(t, "peer-a", rs[0].BestPeer, "peer-b's median (100) ties peer-a's; the first best stays")
	assert.Equal(t, "2.10× faster", rs[0].Words)
	assert.Equal(t, "2.00× faster", rs[1].Words, "lower latency is faster")
	assert.Equal(t, "same", rs[2].Words)
}

func TestCompareWords(t *testing.T) {
	lat := Metric{Name: "p99", Unit: "ms", Better: "lower"}
	count := Metric{Name: "stale", Unit: "reads", Better: "lower"}
	share := Metric{Name: "local", Unit: "ratio", Better: "higher"}
	tput := Metric{Name: "tput", Unit: "ops/s", Better: "higher"}
	for _, c := range []struct {
		m         Metric
		v, ref    float64
		want      string
		rationale string
	}{
		{lat, 1.32, 902, "683× faster", "a large factor keeps no decimals, never 0.00×"},
		{lat, 1.3, 1, "1.30× slower", "the factor is at least 1 and the word says which way"},
		{tput, 50, 100, "2.00× slower", ""},
		{count, 0, 29, "0 vs 29", "no factor against zero"},
		{count, 29, 0, "29 vs 0", ""},
		{count, 10, 20, "2.00× fewer", ""},
		{share, 0.9, 0.6, "1.50× higher", ""},
		{share, 0.999, 1, "same", "within half a per cent"},
		{lat, math.NaN(), 1, "–", ""},
	} {
		assert.Equal(t, c.want, compareWords(c.m, c.v, c.ref), "%v vs %v: %s", c.v, c.ref, c.rationale)
	}
}

func TestReportWriters(t *testing.T) {
	rep := sampleReport()
	var js bytes.Buffer
	require.NoError(t, rep.WriteJSON(&js))
	back, err := ReadReport(&js)
	require.NoError(t, err, "NaN must not break the JSON")
	assert.Len(t, back.Results, len(rep.Results))
	p99, _ := back.Results[len(back.Results)-2].Metric("p99")
	assert.True(t, math.IsNaN(p99.Value), "a missing figure comes back missing, not as a number")

	var md bytes.Buffer
	rep.WriteMarkdown(&md)
	m := md.String()
	assert.Contains(t, m, "| tiercache | 210 (200–231) | 2 (1.90–2.20) | 0 | 7 |")
	assert.Contains(t, m, "| peer-b | 100 (50–150) ⚠ |", "a figure whose runs disagree is flagged")
	assert.Contains(t, m, "2.10× faster (peer-a)")
	assert.Contains(t, m, "peer-b: run 3: error: redis went away")
	assert.Contains(t, m, "separate OS processes", "the report states the mode")
	assert.Contains(t, m, "## Versions")
	head, _, _ := strings.Cut(m, "\n## ")
	assert.Contains(t, head, ".\n\nEach figure is the median of 3 runs", "header sentences are paragraphs of their own")

	var txt bytes.Buffer
	rep.WriteText(&txt)
	assert.Contains(t, txt.String(), "== zipf ==")
}

func TestHTMLReport(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, sampleReport().WriteHTML(&b))
	h := b.String()
	assert.Equal(t, 3, strings.Count(h, "<svg"), "throughput and p99 bars and one CDF; errors is 0 everywhere")
	assert.Contains(t, h, "errors: 0 for every candidate in every run", "an all-zero chart is a line of text")
	assert.Contains(t, h, "<h2>Versions</h2>")
	assert.Contains(t, h, `class="flag"`)
	assert.Contains(t, h, "<p>Each figure is the median", "each header sentence group is its own paragraph")
	assert.NotContains(t, h, "<script", "the page needs no script")
}

func TestValueVersions(t *testing.T) {
	got, err := versionOf(value("k", 42))
	require.NoError(t, err)
	assert.Equal(t, int64(42), got)
	_, err = versionOf("garbage")
	assert.Error(t, err)
}

func TestRunOneRecordsErrorsAndPanics(t *testing.T) {
	e := Entry{Candidate: Candidate{Name: "x"}}
	failing := Scenario{Run: func(context.Context, *Run, Entry) (Result, error) {
		r := Result{}
		r.add("partial", "n", 1, "")
		return r, errors.New("redis went away")
	}}
	r := runOne(context.Background(), &Run{}, failing, e)
	assert.Equal(t, "redis went away", r.Error)
	assert.Len(t, r.Metrics, 1, "what was measured before the error is kept")

	panicking := Scenario{Run: func(context.Context, *Run, Entry) (Result, error) { panic("boom") }}
	assert.Equal(t, "panic: boom", runOne(context.Background(), &Run{}, panicking, e).Error)
}

func TestCompare(t *testing.T) {
	before, after := sampleReport(), sampleReport()
	for i := range after.Results {
		if after.Results[i].Candidate == "tiercache" {
			after.Results[i].Metrics[0].Value *= 2 // twice the throughput
		}
	}
	c := Compare(before, after)
	var tp *ComparedFigure
	for i, f := range c.Figures {
		if f.Candidate == "tiercache" && f.After.Name == "throughput" {
			tp = &c.Figures[i]
		}
	}
	require.NotNil(t, tp)
	assert.Equal(t, "2.00× faster", tp.Change)
	assert.False(t, tp.WithinSpread, "199.5–231 and 399–462 do not overlap")
	var md bytes.Buffer
	c.WriteMarkdown(&md)
	assert.Contains(t, md.String(), "| zipf | tiercache | throughput (ops/s) | 210 (200–231) | 420 (399–462) | 2.00× faster |")
	assert.Contains(t, md.String(), "| zipf | peer-a | throughput (ops/s) | 100 (95–110) | 100 (95–110) | same |")
	var h bytes.Buffer
	require.NoError(t, c.WriteHTML(&h))
	assert.Contains(t, h.String(), "2.00× faster")
}

// A '|' in a column name (Redis's "client|caching") or a cell must not add
// a column to the Markdown table.
func TestMarkdownKeepsPipesInsideCells(t *testing.T) {
	g := grid{head: []string{"candidate", "client|caching"}, rows: []gridRow{{cells: []cell{{text: "a|b"}, {text: "1"}}}}}
	var buf strings.Builder
	g.writeMarkdown(&buf)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 3)
	for _, l := range lines {
		assert.Equal(t, 3, strings.Count(l, "|"), "two columns: %q", l)
	}
}
