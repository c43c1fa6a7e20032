package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// Comparison sets two reports' medians side by side, figure by figure:
// what a change did, one command after the run that measured it.
type Comparison struct {
	Before, After *Report
	Figures       []ComparedFigure
}

// ComparedFigure is one figure of one candidate in one scenario, before and
// after.
type ComparedFigure struct {
	Scenario, Candidate string
	Before, After       Figure
	// Change says how After compares with Before, in the words of the
	// ratio rows ("1.30× faster"), or as a percentage for a figure without
	// a better direction.
	Change string
	// WithinSpread says the two runs' ranges overlap: the change may be
	// noise.
	WithinSpread bool
}

// ReadReport reads a report that WriteJSON wrote.
func ReadReport(r io.Reader) (*Report, error) {
	var rep Report
	if err := json.NewDecoder(r).Decode(&rep); err != nil {
		return nil, fmt.Errorf("bench: read report: %w", err)
	}
	if len(rep.Results) == 0 {
		return nil, fmt.Errorf("bench: read report: it has no results")
	}
	return &rep, nil
}

// Compare lines up every figure the two reports both have.
func Compare(before, after *Report) Comparison {
	c := Comparison{Before: before, After: after}
	for _, s := range after.Scenarios {
		old := map[string]Row{}
		for _, r := range before.Rows(s.Name) {
			old[r.Candidate] = r
		}
		for _, r := range after.Rows(s.Name) {
			o, ok := old[r.Candidate]
			if !ok {
				continue
			}
			for _, f := range r.Figures {
				of, ok := o.Figure(f.Name)
				if !ok || math.IsNaN(f.Value) || math.IsNaN(of.Value) {
					continue
				}
				c.Figures = append(c.Figures, ComparedFigure{Scenario: s.Name, Candidate: r.Candidate, Before: of, After: f,
					Change: change(f.Metric, of.Value, f.Value), WithinSpread: overlap(of, f)})
			}
		}
	}
	return c
}

func change(m Metric, before, after float64) string {
	if m.Better != "" {
		return compareWords(m, after, before)
	}
	if before == 0 {
		return format(before) + " → " + format(after)
	}
	return fmt.Sprintf("%+.0f %%", 100*(after-before)/math.Abs(before))
}

// overlap says the ranges of two figures' runs meet; a single run's range
// is its value.
func overlap(a, b Figure) bool { return a.Min <= b.Max && b.Min <= a.Max }

func (c Comparison) grid() grid {
	g := grid{head: []string{"scenario", "candidate", "figure", "before", "after", "change"}, textCols: 3}
	for _, f := range c.Figures {
		kind := ""
		if isTiercache(f.Candidate) {
			kind = "tiercache"
		}
		ch := f.Change
		if f.WithinSpread && ch != "same" {
			ch += " (ranges overlap)"
		}
		g.rows = append(g.rows, gridRow{kind: kind, cells: []cell{{text: f.Scenario}, {text: f.Candidate},
			{text: f.After.Name + " (" + f.After.Unit + ")"}, figureCell(f.Before), figureCell(f.After), {text: ch}}})
	}
	return g
}

func (c Comparison) title() string {
	return fmt.Sprintf("Before (%s, %d run(s)) and after (%s, %d run(s))",
		c.Before.Date.Format("2006-01-02 15:04 UTC"), c.Before.Config.Runs, c.After.Date.Format("2006-01-02 15:04 UTC"), c.After.Config.Runs)
}

func (c Comparison) intro() string {
	return "Medians with the runs' range; a change whose ranges overlap may be noise. " +
		"Compare runs from the same machine with the same flags: " + c.flagsNote()
}

func (c Comparison) flagsNote() string {
	var diff []string // sorted below: map order must not reorder the sentence
	for k, v := range c.After.Config.Flags {
		if !shapesFigures(k) {
			continue
		}
		if old, ok := c.Before.Config.Flags[k]; ok && old != v {
			diff = append(diff, fmt.Sprintf("--%s was %q, now %q", k, old, v))
		}
	}
	if c.Before.Machine.CPUModel != c.After.Machine.CPUModel || c.Before.Machine.CPUs != c.After.Machine.CPUs {
		diff = append(diff, "the machines differ")
	}
	slices.Sort(diff)
	if len(diff) == 0 {
		return "these two were."
	}
	return "these two were not (" + strings.Join(diff, "; ") + ")."
}

// shapesFigures says a flag changes what is measured (not where the report
// goes or what else is written).
func shapesFigures(flag string) bool {
	switch flag {
	case "out", "compare", "against", "cpuprofile", "memprofile":
		return false
	}
	return true
}

// WriteMarkdown writes the before/after table.
func (c Comparison) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "# tiercache benchmark: before and after\n\n%s.\n\n%s\n\n", c.title(), c.intro())
	c.grid().writeMarkdown(w)
}

// WriteText writes the before/after table for a terminal.
func (c Comparison) WriteText(w io.Writer) {
	fmt.Fprintf(w, "\n== %s ==\n", c.title())
	c.grid().writeText(w)
}
