package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// grid is one table of the report, rendered as text, Markdown or HTML.
type grid struct {
	head []string
	rows []gridRow
	// textCols is how many leading columns hold names, not figures: the
	// HTML aligns them left.
	textCols int
}

type gridRow struct {
	kind  string // "", "tiercache" or "ratio": how the HTML shows it
	cells []cell
}

type cell struct {
	text    string
	spread  string // "min–max" of the runs, when they differ
	flagged bool   // its runs disagree
}

// full is the cell as one line of text: "210 (200–231) ⚠".
func (c cell) full() string {
	s := c.text
	if c.spread != "" {
		s += " (" + c.spread + ")"
	}
	if c.flagged {
		s += " " + flagMark
	}
	return s
}

// flagMark marks a figure whose runs disagree by more than disagreeAbove.
const flagMark = "⚠"

// scenarioGrid is a scenario's main table: a row per candidate, then a row
// per tiercache entry comparing it with the best peer.
func (rep *Report) scenarioGrid(scenario string) grid {
	rows := rep.Rows(scenario)
	cols := metricNames(rep.results(scenario))
	g := grid{head: []string{"candidate"}, textCols: 1}
	for _, c := range cols {
		g.head = append(g.head, c.Name+" ("+c.Unit+")")
	}
	for _, r := range rows {
		gr := gridRow{cells: []cell{{text: r.Candidate}}}
		if isTiercache(r.Candidate) {
			gr.kind = "tiercache"
		}
		if len(r.Figures) == 0 {
			gr.cells = append(gr.cells, cell{text: r.Failed})
			g.rows = append(g.rows, gr)
			continue
		}
		for _, c := range cols {
			f, ok := r.Figure(c.Name)
			if !ok {
				gr.cells = append(gr.cells, cell{text: "–"})
				continue
			}
			gr.cells = append(gr.cells, figureCell(f))
		}
		g.rows = append(g.rows, gr)
	}
	ratios := rep.Ratios(scenario)
	for _, r := range rows {
		rs := ratios[r.Candidate]
		if len(rs) == 0 {
			continue
		}
		gr := gridRow{kind: "ratio", cells: []cell{{text: r.Candidate + " vs best peer"}}}
		for _, c := range cols {
			text := "–"
			if i := slices.IndexFunc(rs, func(x Ratio) bool { return x.Metric == c.Name }); i >= 0 {
				text = rs[i].Words + " (" + rs[i].BestPeer + ")"
			}
			gr.cells = append(gr.cells, cell{text: text})
		}
		g.rows = append(g.rows, gr)
	}
	return g
}

func figureCell(f Figure) cell {
	c := cell{text: format(f.Value), flagged: f.Disagree()}
	if lo, hi := format(f.Min), format(f.Max); f.Runs > 1 && lo != hi {
		c.spread = lo + "–" + hi
	}
	return c
}

// redisGrid is Redis's own count of commands per op, by candidate, for the
// scenarios that record it; ok is false for the others.
func (rep *Report) redisGrid(scenario string) (grid, bool) {
	rows := rep.Rows(scenario)
	peak := map[string]float64{}
	for _, r := range rows {
		for cmd, f := range r.RedisPerOp {
			peak[cmd] = max(peak[cmd], f.Value)
		}
	}
	if len(peak) == 0 {
		return grid{}, false
	}
	var cmds []string
	for cmd, p := range peak {
		if p >= 0.001 { // background chatter (PING, CLIENT …) is not the workload's
			cmds = append(cmds, cmd)
		}
	}
	slices.SortFunc(cmds, func(a, b string) int { return cmp.Or(cmp.Compare(peak[b], peak[a]), cmp.Compare(a, b)) })
	g := grid{head: append([]string{"candidate", "all commands"}, cmds...), textCols: 1}
	for _, r := range rows {
		if r.RedisPerOp == nil {
			continue
		}
		gr := gridRow{cells: []cell{{text: r.Candidate}}}
		if total, ok := r.Figure("redis-calls"); ok {
			gr.cells = append(gr.cells, figureCell(total))
		} else {
			gr.cells = append(gr.cells, cell{text: "–"})
		}
		for _, cmd := range cmds {
			if f, ok := r.RedisPerOp[cmd]; ok {
				gr.cells = append(gr.cells, figureCell(f))
			} else {
				gr.cells = append(gr.cells, cell{text: "0"})
			}
		}
		g.rows = append(g.rows, gr)
	}
	return g, true
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

// format prints a figure with three significant digits at most past the
// point, and thousands separated.
func format(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "–"
	case v == math.Trunc(v) || a >= 100:
		return thousands(strconv.FormatFloat(v, 'f', 0, 64))
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func thousands(digits string) string {
	sign := ""
	if strings.HasPrefix(digits, "-") {
		sign, digits = "-", digits[1:]
	}
	if len(digits) <= 4 { // 1234 reads fine; 12,345 needs the comma
		return sign + digits
	}
	var b strings.Builder
	for i, d := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	return sign + b.String()
}

func (g grid) writeText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(g.head, "\t")+"\t")
	for _, r := range g.rows {
		fmt.Fprintln(tw, strings.Join(r.texts(), "\t")+"\t")
	}
	tw.Flush()
}

func (g grid) writeMarkdown(w io.Writer) {
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(markdownCells(g.head), " | "), strings.Repeat("---|", len(g.head)))
	for _, r := range g.rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(markdownCells(r.texts()), " | "))
	}
}

// markdownCells keeps a '|' in a cell (a Redis command such as
// "client|caching") from splitting it in two.
func markdownCells(texts []string) []string {
	out := make([]string, len(texts))
	for i, t := range texts {
		out[i] = strings.ReplaceAll(t, "|", "/")
	}
	return out
}

func (r gridRow) texts() []string {
	out := make([]string, len(r.cells))
	for i, c := range r.cells {
		out[i] = c.full()
	}
	return out
}

// WriteText writes the terminal tables.
func (rep *Report) WriteText(w io.Writer) {
	for _, s := range rep.Scenarios {
		fmt.Fprintf(w, "\n== %s ==\n", s.Name)
		rep.scenarioGrid(s.Name).writeText(w)
		if g, ok := rep.redisGrid(s.Name); ok {
			fmt.Fprintln(w, "Redis commands per op (INFO commandstats):")
			g.writeText(w)
		}
	}
}

// header is the report's opening: one paragraph a string.
func (rep *Report) header() []string {
	m, c := rep.Machine, rep.Config
	quick := ""
	if c.Quick {
		quick = " · quick"
	}
	out := []string{fmt.Sprintf("%s · %s/%s · %d CPUs %s · %s · Redis %s · %s s per timed scenario · %d replicas · %d run(s) · seed %d%s.",
		rep.Date.Format("2006-01-02 15:04 UTC"), m.OS, m.Arch, m.CPUs, parens(m.CPUModel), m.GoVersion, m.RedisVersion,
		format(c.DurationSeconds), c.Replicas, c.Runs, c.Seed, quick)}
	out = append(out, rep.modeSentence())
	if c.Runs > 1 {
		out = append(out, fmt.Sprintf("Each figure is the median of %d runs, with the lowest and highest in brackets; %s marks a figure "+
			"whose runs disagree by more than %d %% of their median. A scenario's runs follow each other, the candidates taking "+
			"turns within each run.", c.Runs, flagMark, int(disagreeAbove*100)))
	} else {
		out = append(out, "Each figure is from one run: a second run on this machine can differ by tens of per cent (use --runs).")
	}
	out = append(out, "\"vs best peer\" rows compare a tiercache entry's median with the best peer's median on that figure, "+
		"and say which way is better: \"2.10× faster\" or \"1.30× slower\", \"fewer\" or \"more\", \"higher\" or \"lower\".")
	return out
}

// modeSentence says where the replicas ran.
func (rep *Report) modeSentence() string {
	var fleet, single []string
	for _, s := range rep.Scenarios {
		if s.Fleet {
			fleet = append(fleet, s.Name)
		} else {
			single = append(single, s.Name)
		}
	}
	if !rep.Config.Processes || len(fleet) == 0 {
		return "Every replica ran inside the bench's own process (one Go scheduler and one garbage collector for the whole fleet)."
	}
	s := "Replicas ran as separate OS processes (the bench binary re-executed as a replica worker) in " + strings.Join(fleet, ", ")
	if len(single) > 0 {
		s += "; the single-replica scenarios (" + strings.Join(single, ", ") + ") ran in the bench's own process"
	}
	return s + "."
}

// WriteMarkdown writes the report as Markdown.
func (rep *Report) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "# tiercache benchmark report\n\n%s\n", strings.Join(rep.header(), "\n\n"))
	for _, s := range rep.Scenarios {
		fmt.Fprintf(w, "\n## %s\n\n%s\n\n", s.Name, s.Description)
		rep.scenarioGrid(s.Name).writeMarkdown(w)
		for _, line := range remarks(rep.Rows(s.Name)) {
			fmt.Fprintf(w, "\n%s\n", line)
		}
		if g, ok := rep.redisGrid(s.Name); ok {
			fmt.Fprintf(w, "\nRedis commands per op (INFO commandstats; commands a Lua script runs count too):\n\n")
			g.writeMarkdown(w)
		}
	}
	if rep.Compared != nil {
		fmt.Fprintf(w, "\n## Compared with the run of %s\n\n", rep.Compared.Date.Format("2006-01-02 15:04 UTC"))
		Compare(rep.Compared, rep).grid().writeMarkdown(w)
	}
	fmt.Fprintf(w, "\n## Candidates\n\n")
	for _, c := range rep.Candidates {
		fmt.Fprintf(w, "- **%s**: %s\n", c.Name, c.Description)
	}
	fmt.Fprintf(w, "\n## Versions\n\n")
	for _, v := range rep.versionLines() {
		fmt.Fprintf(w, "- %s\n", v)
	}
}

// remarks are the lines under a scenario's table: failed runs of
// candidates that have figures otherwise, and what runs noted.
func remarks(rows []Row) []string {
	var out []string
	for _, r := range rows {
		if r.Failed != "" && len(r.Figures) > 0 {
			out = append(out, r.Candidate+": "+r.Failed)
		}
		for _, n := range r.Notes {
			out = append(out, r.Candidate+", "+n)
		}
	}
	return out
}

func (rep *Report) versionLines() []string {
	var out []string
	for k, v := range rep.Versions {
		out = append(out, k+" "+v)
	}
	slices.Sort(out)
	return append(out, "Go "+rep.Machine.GoVersion, "Redis "+rep.Machine.RedisVersion)
}

func parens(s string) string {
	if s == "" {
		return ""
	}
	return "(" + s + ")"
}

// WriteJSON writes the raw report: every run's figures, with the machine,
// versions, flags and seeds, for --compare.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}
