package bench

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
)

// disagreeAbove is the spread (max − min, over the median) past which a
// figure's runs are said to disagree.
const disagreeAbove = 0.20

// Figure is one metric of one candidate in one scenario, over its runs.
type Figure struct {
	Metric           // Value is the median
	Min, Max float64 // NaN when no run measured it
	Runs     int     // runs that measured it
}

// Disagree says the runs are too far apart for the median to stand alone.
func (f Figure) Disagree() bool {
	switch {
	case f.Runs < 2 || math.IsNaN(f.Value):
		return false
	case f.Value == 0:
		return f.Max != f.Min
	default:
		return (f.Max-f.Min)/math.Abs(f.Value) > disagreeAbove
	}
}

// Row is one candidate in one scenario, over its runs.
type Row struct {
	Candidate string
	Figures   []Figure
	// Failed says why runs failed or were skipped; with no figures the
	// whole row did.
	Failed string
	// Notes are what runs noted beside their figures, by run.
	Notes      []string
	RedisPerOp map[string]Figure
	// Samples pools each run's distribution (every run weighted alike).
	Samples map[string][]float64
}

// Figure returns the named figure.
func (r Row) Figure(name string) (Figure, bool) {
	i := slices.IndexFunc(r.Figures, func(f Figure) bool { return f.Name == name })
	if i < 0 {
		return Figure{}, false
	}
	return r.Figures[i], true
}

// Rows summarises a scenario's results by candidate: tiercache's entries
// first, then the peers, each in report order.
func (rep *Report) Rows(scenario string) []Row {
	var out []Row
	order := slices.Clone(rep.Candidates)
	slices.SortStableFunc(order, func(a, b Described) int {
		return cmp.Compare(boolRank(!isTiercache(a.Name)), boolRank(!isTiercache(b.Name)))
	})
	for _, c := range order {
		var runs []Result
		for _, r := range rep.Results {
			if r.Scenario == scenario && r.Candidate == c.Name {
				runs = append(runs, r)
			}
		}
		if len(runs) > 0 {
			out = append(out, summarise(c.Name, runs))
		}
	}
	return out
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

func summarise(candidate string, runs []Result) Row {
	row := Row{Candidate: candidate, Samples: map[string][]float64{}}
	var ok []Result
	var failed []string
	for _, r := range runs {
		switch {
		case r.Error != "":
			failed = append(failed, fmt.Sprintf("run %d: error: %s", r.Run, r.Error))
		case r.Skipped != "":
			failed = append(failed, "skipped: "+r.Skipped)
		default:
			ok = append(ok, r)
		}
		if r.Note != "" {
			row.Notes = append(row.Notes, fmt.Sprintf("run %d: %s", r.Run, r.Note))
		}
	}
	row.Failed = strings.Join(slices.Compact(failed), "; ")
	for _, m := range metricNames(ok) {
		var vals []float64
		for _, r := range ok {
			if x, found := r.Metric(m.Name); found && !math.IsNaN(x.Value) {
				vals = append(vals, x.Value)
			}
		}
		row.Figures = append(row.Figures, figure(m, vals))
	}
	perCommand := map[string][]float64{}
	for _, r := range ok {
		for cmd, v := range r.RedisPerOp {
			perCommand[cmd] = append(perCommand[cmd], v)
		}
		for name, xs := range r.Samples {
			row.Samples[name] = append(row.Samples[name], xs...)
		}
	}
	for name := range row.Samples {
		slices.Sort(row.Samples[name])
	}
	if len(perCommand) > 0 {
		row.RedisPerOp = map[string]Figure{}
		for cmd, vals := range perCommand {
			for len(vals) < len(ok) { // a run that never sent the command sent it 0 times
				vals = append(vals, 0)
			}
			row.RedisPerOp[cmd] = figure(Metric{Name: cmd, Unit: "per op"}, vals)
		}
	}
	return row
}

func figure(m Metric, vals []float64) Figure {
	f := Figure{Metric: m, Min: math.NaN(), Max: math.NaN(), Runs: len(vals)}
	f.Value = math.NaN()
	if len(vals) == 0 {
		return f
	}
	s := slices.Sorted(slices.Values(vals))
	f.Value, f.Min, f.Max = median(s), s[0], s[len(s)-1]
	return f
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// metricNames are the metrics of some results, in first-seen order.
func metricNames(rs []Result) []Metric {
	var out []Metric
	seen := map[string]bool{}
	for _, r := range rs {
		for _, m := range r.Metrics {
			if !seen[m.Name] {
				seen[m.Name] = true
				out = append(out, m)
			}
		}
	}
	return out
}

// Ratio compares a tiercache entry's median with the best peer's on one
// metric, in words.
type Ratio struct {
	Metric   string
	Value    float64 // the tiercache entry's median
	BestPeer string
	Best     float64 // the best peer's median
	Words    string  // "2.1× faster", "1.3× fewer", "same", "0 vs 29"
}

// isTiercache says a candidate is tiercache or a variant of it; every other
// candidate is a peer.
func isTiercache(name string) bool { return strings.HasPrefix(name, "tiercache") }

// Ratios returns, for each tiercache entry in a scenario (tiercache, and
// tiercache+warm-up where it ran), its ratios to the best peer on every
// metric that has a direction.
func (rep *Report) Ratios(scenario string) map[string][]Ratio {
	rows := rep.Rows(scenario)
	out := map[string][]Ratio{}
	for _, tc := range rows {
		if !isTiercache(tc.Candidate) {
			continue
		}
		for _, f := range tc.Figures {
			if f.Better == "" || math.IsNaN(f.Value) {
				continue
			}
			best, bestName := math.NaN(), ""
			for _, p := range rows {
				pf, ok := p.Figure(f.Name)
				if isTiercache(p.Candidate) || !ok || math.IsNaN(pf.Value) {
					continue
				}
				if math.IsNaN(best) || (f.Better == "lower" && pf.Value < best) || (f.Better == "higher" && pf.Value > best) {
					best, bestName = pf.Value, p.Candidate
				}
			}
			if bestName != "" {
				out[tc.Candidate] = append(out[tc.Candidate], Ratio{Metric: f.Name, Value: f.Value, BestPeer: bestName, Best: best,
					Words: compareWords(f.Metric, f.Value, best)})
			}
		}
	}
	return out
}

// compareWords says how v compares with ref, for a metric with a direction,
// with the factor always at least 1 and the word saying which way is better.
func compareWords(m Metric, v, ref float64) string {
	good, bad := "higher", "lower"
	switch {
	case isSpeed(m.Unit):
		good, bad = "faster", "slower"
	case m.Better == "lower":
		good, bad = "fewer", "more"
	}
	switch {
	case math.IsNaN(v) || math.IsNaN(ref):
		return "–"
	case v == ref:
		return "same"
	case v == 0 || ref == 0: // no factor to give
		return format(v) + " vs " + format(ref)
	}
	factor := v / ref
	if m.Better == "lower" {
		factor = ref / v
	}
	word := good
	if factor < 1 {
		factor, word = 1/factor, bad
	}
	if factor < 1.005 {
		return "same"
	}
	return formatFactor(factor) + " " + word
}

// isSpeed says lower values of this unit are time (faster) or higher
// values are a rate of work (faster).
func isSpeed(unit string) bool {
	switch unit {
	case "ns/op", "ns", "µs", "ms", "s", "ops/s":
		return true
	}
	return false
}

func formatFactor(f float64) string {
	switch {
	case f < 10:
		return fmt.Sprintf("%.2f×", f)
	case f < 100:
		return fmt.Sprintf("%.1f×", f)
	default:
		return fmt.Sprintf("%.0f×", f)
	}
}
