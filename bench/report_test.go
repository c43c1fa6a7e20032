package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleReport() *Report {
	return &Report{
		Date:       time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC),
		Scenarios:  []Described{{"zipf", "desc"}},
		Candidates: []Described{{"tiercache", "c1"}, {"peer-a", "c2"}, {"peer-b", "c3"}},
		Results: []Result{
			{Scenario: "zipf", Candidate: "tiercache", Metrics: []Metric{{"throughput", "ops/s", 100, "higher"}, {"p99", "ms", 2, "lower"}, {"info", "x", 7, ""}},
				Samples: map[string][]float64{"latency (ms)": {1, 2, 3}}},
			{Scenario: "zipf", Candidate: "peer-a", Metrics: []Metric{{"throughput", "ops/s", 200, "higher"}, {"p99", "ms", 4, "lower"}},
				Samples: map[string][]float64{"latency (ms)": {2, 3, 4}}},
			{Scenario: "zipf", Candidate: "peer-b", Metrics: []Metric{{"throughput", "ops/s", 50, "higher"}, {"p99", "ms", math.NaN(), "lower"}}},
		},
	}
}

func TestRatiosPickTheBestPeerPerDirection(t *testing.T) {
	rs := sampleReport().Ratios("zipf")
	require.Len(t, rs, 2, "informational metrics have no ratio")
	assert.Equal(t, Ratio{Metric: "throughput", Value: 100, BestPeer: "peer-a", Best: 200, Ratio: 0.5}, rs[0])
	assert.Equal(t, Ratio{Metric: "p99", Value: 2, BestPeer: "peer-a", Best: 4, Ratio: 0.5}, rs[1], "NaN figures are not best")
}

func TestReportWriters(t *testing.T) {
	rep := sampleReport()
	var js bytes.Buffer
	require.NoError(t, rep.WriteJSON(&js))
	var back Report
	require.NoError(t, json.Unmarshal(js.Bytes(), &back), "NaN must not break the JSON")
	assert.Len(t, back.Results, 3)

	var md bytes.Buffer
	rep.WriteMarkdown(&md)
	assert.Contains(t, md.String(), "| tiercache | 100 | 2 | 7 |")
	assert.Contains(t, md.String(), "0.50× (peer-a)")

	var html bytes.Buffer
	require.NoError(t, rep.WriteHTML(&html))
	h := html.String()
	assert.Equal(t, 3, strings.Count(h, "<svg"), "two bar charts and one CDF")
	assert.NotContains(t, h, "<script", "the page needs no script")

	var txt bytes.Buffer
	rep.WriteText(&txt)
	assert.Contains(t, txt.String(), "== zipf ==")
}

func TestValueVersions(t *testing.T) {
	got, err := versionOf(value("k", 42))
	require.NoError(t, err)
	assert.Equal(t, int64(42), got)
	_, err = versionOf("garbage")
	assert.Error(t, err)
}

func TestRunOneRecordsErrorsAndPanics(t *testing.T) {
	c := Candidate{Name: "x"}
	failing := Scenario{Run: func(context.Context, *Run, Candidate) (Result, error) {
		r := Result{}
		r.add("partial", "n", 1, "")
		return r, errors.New("redis went away")
	}}
	r := runOne(context.Background(), &Run{}, failing, c)
	assert.Equal(t, "redis went away", r.Error)
	assert.Len(t, r.Metrics, 1, "what was measured before the error is kept")

	panicking := Scenario{Run: func(context.Context, *Run, Candidate) (Result, error) { panic("boom") }}
	assert.Equal(t, "panic: boom", runOne(context.Background(), &Run{}, panicking, c).Error)
}
