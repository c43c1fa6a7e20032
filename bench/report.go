package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// Ratio compares tiercache with the best peer on one metric.
type Ratio struct {
	Metric   string
	Value    float64 // tiercache's
	BestPeer string
	Best     float64
	Ratio    float64 // Value / Best
}

// Ratios returns, for each metric of a scenario that has a direction,
// tiercache's figure over the best peer's (for "lower" metrics a ratio
// under 1 favours tiercache, for "higher" ones over 1).
func (rep *Report) Ratios(scenario string) []Ratio {
	var tc *Result
	var peers []Result
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Scenario != scenario || r.Skipped != "" || r.Error != "" {
			continue
		}
		if r.Candidate == "tiercache" {
			tc = r
		} else {
			peers = append(peers, *r)
		}
	}
	if tc == nil {
		return nil
	}
	var out []Ratio
	for _, m := range tc.Metrics {
		if m.Better == "" {
			continue
		}
		best, bestName := math.NaN(), ""
		for _, p := range peers {
			pm, ok := p.Metric(m.Name)
			if !ok || math.IsNaN(pm.Value) {
				continue
			}
			if math.IsNaN(best) || (m.Better == "lower" && pm.Value < best) || (m.Better == "higher" && pm.Value > best) {
				best, bestName = pm.Value, p.Candidate
			}
		}
		if bestName == "" {
			continue
		}
		ratio := math.NaN()
		if best != 0 {
			ratio = m.Value / best
		}
		out = append(out, Ratio{Metric: m.Name, Value: m.Value, BestPeer: bestName, Best: best, Ratio: ratio})
	}
	return out
}

func (rep *Report) results(scenario string) []Result {
	var out []Result
	for _, r := range rep.Results {
		if r.Scenario == scenario {
			out = append(out, r)
		}
	}
	return out
}

// metricNames are the columns of a scenario's table, in first-seen order.
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

func format(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func formatRatio(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", r)
}

// table writes one scenario's rows; sep/start/end shape text or Markdown.
func (rep *Report) table(w io.Writer, scenario string, markdown bool) {
	rs := rep.results(scenario)
	cols := metricNames(rs)
	cell := func(cells []string) string {
		if markdown {
			return "| " + strings.Join(cells, " | ") + " |\n"
		}
		return strings.Join(cells, "\t") + "\t\n"
	}
	head := []string{"candidate"}
	for _, c := range cols {
		head = append(head, c.Name+" ("+c.Unit+")")
	}
	io.WriteString(w, cell(head))
	if markdown {
		io.WriteString(w, "|"+strings.Repeat("---|", len(head))+"\n")
	}
	for _, r := range rs {
		row := []string{r.Candidate}
		switch {
		case r.Skipped != "":
			row = append(row, "skipped: "+r.Skipped)
		case r.Error != "":
			row = append(row, "error: "+strings.ReplaceAll(r.Error, "|", "/"))
		default:
			for _, c := range cols {
				m, ok := r.Metric(c.Name)
				if !ok {
					row = append(row, "–")
					continue
				}
				row = append(row, format(m.Value))
			}
		}
		io.WriteString(w, cell(row))
	}
	if ratios := rep.Ratios(scenario); len(ratios) > 0 {
		row := []string{"tiercache ÷ best peer"}
		for _, c := range cols {
			s := "–"
			for _, r := range ratios {
				if r.Metric == c.Name {
					s = formatRatio(r.Ratio) + " (" + r.BestPeer + ")"
				}
			}
			row = append(row, s)
		}
		io.WriteString(w, cell(row))
	}
}

// WriteText writes the terminal tables.
func (rep *Report) WriteText(w io.Writer) {
	for _, s := range rep.Scenarios {
		fmt.Fprintf(w, "\n== %s ==\n", s.Name)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		rep.table(tw, s.Name, false)
		tw.Flush()
	}
}

// WriteMarkdown writes the report as Markdown.
func (rep *Report) WriteMarkdown(w io.Writer) {
	m := rep.Machine
	fmt.Fprintf(w, "# tiercache benchmark report\n\n%s · %s/%s · %d CPUs %s · %s · Redis %s · %s per timed scenario · %d replicas%s\n",
		rep.Date.Format("2006-01-02 15:04 UTC"), m.OS, m.Arch, m.CPUs, parens(m.CPUModel), m.GoVersion, m.RedisVersion,
		fmt.Sprint(rep.Config.DurationSeconds)+" s", rep.Config.Replicas, map[bool]string{true: " · quick", false: ""}[rep.Config.Quick])
	fmt.Fprintf(w, "\nFigures are from one run on one machine; compare them as ratios, not absolutes. In \"tiercache ÷ best peer\" rows, a ratio under 1 favours tiercache for lower-is-better columns and over 1 for higher-is-better ones.\n")
	for _, s := range rep.Scenarios {
		fmt.Fprintf(w, "\n## %s\n\n%s\n\n", s.Name, s.Description)
		rep.table(w, s.Name, true)
	}
	fmt.Fprintf(w, "\n## Candidates\n\n")
	for _, c := range rep.Candidates {
		fmt.Fprintf(w, "- **%s**: %s\n", c.Name, c.Description)
	}
	fmt.Fprintf(w, "\n## Versions\n\n")
	for k, v := range rep.Versions {
		fmt.Fprintf(w, "- %s %s\n", k, v)
	}
}

func parens(s string) string {
	if s == "" {
		return ""
	}
	return "(" + s + ")"
}

// WriteJSON writes the raw report.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(jsonSafe(rep))
}

// jsonSafe replaces NaN figures (JSON has none) with -1 in a copy.
func jsonSafe(rep *Report) *Report {
	c := *rep
	c.Results = make([]Result, len(rep.Results))
	for i, r := range rep.Results {
		r.Metrics = append([]Metric(nil), r.Metrics...)
		for j := range r.Metrics {
			if math.IsNaN(r.Metrics[j].Value) || math.IsInf(r.Metrics[j].Value, 0) {
				r.Metrics[j].Value = -1
			}
		}
		c.Results[i] = r
	}
	return &c
}
