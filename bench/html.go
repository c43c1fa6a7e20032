package bench

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strings"
)

// WriteHTML writes a self-contained page: the tables of WriteMarkdown and,
// per scenario, a bar chart of each figure that has a direction (median,
// with the runs' range as a whisker) and a CDF of each distribution, as
// inline SVG. It needs no script and no network to display.
func (rep *Report) WriteHTML(w io.Writer) error {
	type section struct {
		Name, Description string
		Table, RedisTable template.HTML
		Remarks           []string
		Charts            []template.HTML
		Notes             []string // charts left out: every figure 0
	}
	var sections []section
	for _, s := range rep.Scenarios {
		rows := rep.Rows(s.Name)
		sec := section{Name: s.Name, Description: s.Description, Table: rep.scenarioGrid(s.Name).html()}
		if g, ok := rep.redisGrid(s.Name); ok {
			sec.RedisTable = g.html()
		}
		sec.Remarks = remarks(rows)
		for _, m := range metricNames(rep.results(s.Name)) {
			if m.Better == "" {
				continue
			}
			svg, note := barChart(rows, m)
			if svg != "" {
				sec.Charts = append(sec.Charts, svg)
			}
			if note != "" {
				sec.Notes = append(sec.Notes, note)
			}
		}
		for _, name := range sampleNames(rows) {
			if svg := cdfChart(rows, name); svg != "" {
				sec.Charts = append(sec.Charts, svg)
			}
		}
		sections = append(sections, sec)
	}
	data := map[string]any{"Header": rep.header(), "Sections": sections, "Candidates": rep.Candidates, "Versions": rep.versionLines()}
	if rep.Compared != nil {
		c := Compare(rep.Compared, rep)
		data["CompareTitle"], data["CompareIntro"], data["CompareTable"] = c.title(), c.intro(), c.grid().html()
	}
	return page.Execute(w, data)
}

const pageStyle = `<style>
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1250px;color:#222;padding:0 1rem}
table{border-collapse:collapse;margin:1rem 0;font-size:.85rem}
td,th{border:1px solid #ccc;padding:.3rem .5rem;text-align:right;white-space:nowrap}
td:first-child,th:first-child{text-align:left}
tr.tiercache td{font-weight:600;background:#eef6ff} tr.ratio td{font-style:italic;background:#f7f7f7}
td.flag{background:#fff3cd} span.spread{color:#666;font-size:.75rem;font-weight:400}
div.table{overflow-x:auto}
.charts{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start} .charts svg{border:1px solid #e4e4e4}
p.desc{color:#555;max-width:60rem} p.note{color:#555;font-style:italic;margin:.3rem 0}
</style>`

var page = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tiercache benchmark report</title>
` + pageStyle + `</head><body>
<h1>tiercache benchmark report</h1>
{{range .Header}}<p>{{.}}</p>
{{end}}
{{range .Sections}}<h2>{{.Name}}</h2><p class="desc">{{.Description}}</p>
{{.Table}}{{range .Remarks}}<p class="note">{{.}}</p>{{end}}
{{if .RedisTable}}<p class="desc">Redis commands per op (INFO commandstats; commands a Lua script runs count too):</p>{{.RedisTable}}{{end}}
<div class="charts">{{range .Charts}}{{.}}{{end}}</div>
{{range .Notes}}<p class="note">{{.}}</p>{{end}}
{{end}}
{{if .CompareTable}}<h2>Compared</h2><p>{{.CompareTitle}}.</p><p class="desc">{{.CompareIntro}}</p>{{.CompareTable}}{{end}}
<h2>Candidates</h2><ul>{{range .Candidates}}<li><b>{{.Name}}</b>: {{.Description}}</li>{{end}}</ul>
<h2>Versions</h2><ul>{{range .Versions}}<li>{{.}}</li>{{end}}</ul>
</body></html>
`))

var comparePage = template.Must(template.New("compare").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tiercache benchmark: before and after</title>
` + pageStyle + `</head><body>
<h1>tiercache benchmark: before and after</h1>
<p>{{.Title}}.</p><p class="desc">{{.Intro}}</p>
{{.Table}}
</body></html>
`))

// WriteHTML writes the before/after table as a page.
func (c Comparison) WriteHTML(w io.Writer) error {
	return comparePage.Execute(w, map[string]any{"Title": c.title(), "Intro": c.intro(), "Table": c.grid().html()})
}

func (g grid) html() template.HTML {
	var b strings.Builder
	b.WriteString(`<div class="table"><table><tr>`)
	for i, h := range g.head {
		attrs := ""
		if g.leftAligned(i) {
			attrs = ` style="text-align:left"`
		}
		fmt.Fprintf(&b, "<th%s>%s</th>", attrs, template.HTMLEscapeString(h))
	}
	b.WriteString("</tr>")
	for _, r := range g.rows {
		if r.kind != "" {
			fmt.Fprintf(&b, `<tr class="%s">`, r.kind)
		} else {
			b.WriteString("<tr>")
		}
		for i, c := range r.cells {
			attrs := ""
			if c.flagged {
				attrs = ` class="flag" title="the runs disagree by more than 20 % of their median"`
			}
			if g.leftAligned(i) {
				attrs += ` style="text-align:left"`
			}
			if i == len(r.cells)-1 && len(r.cells) < len(g.head) { // a failed row: one cell says why
				attrs += fmt.Sprintf(` colspan="%d" style="text-align:left"`, len(g.head)-i)
			}
			text := template.HTMLEscapeString(c.text)
			if c.flagged {
				text += " " + flagMark
			}
			if c.spread != "" { // the range under the median keeps the columns narrow
				text += `<br><span class="spread">` + template.HTMLEscapeString(c.spread) + "</span>"
			}
			fmt.Fprintf(&b, "<td%s>%s</td>", attrs, text)
		}
		b.WriteString("</tr>")
	}
	b.WriteString("</table></div>")
	return template.HTML(b.String())
}

// leftAligned says column i holds names (or a comparison's words), not figures.
func (g grid) leftAligned(i int) bool {
	return i < g.textCols || (g.textCols > 1 && i == len(g.head)-1)
}

func sampleNames(rows []Row) []string {
	var out []string
	for _, r := range rows {
		for n := range r.Samples {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}

// barChart draws a figure's medians as horizontal bars (names never
// collide), with each candidate's run range as a whisker, on a log axis
// when they span more than 10×. A figure that is 0 everywhere gets a line
// of text instead (note).
func barChart(rows []Row, m Metric) (svg template.HTML, note string) {
	var bars []Figure
	var names []string
	var vals []float64
	for _, r := range rows {
		if f, ok := r.Figure(m.Name); ok && !math.IsNaN(f.Value) {
			bars, names = append(bars, f), append(names, r.Candidate)
			vals = append(vals, f.Value, f.Min, f.Max)
		}
	}
	if len(bars) == 0 {
		return "", ""
	}
	if !slices.ContainsFunc(vals, func(v float64) bool { return v != 0 }) {
		return "", fmt.Sprintf("%s: 0 for every candidate in every run (no chart).", m.Name)
	}
	log := spansDecade(vals)
	labels := make([]string, len(bars))
	nameW, labelW := 0.0, 0.0
	for i, f := range bars {
		labels[i] = siLabel(f.Value, m.Unit)
		if f.Disagree() {
			labels[i] += " " + flagMark
		}
		nameW, labelW = max(nameW, textWidth(names[i])), max(labelW, textWidth(labels[i]))
	}
	title := fmt.Sprintf("%s (%s), %s is better", m.Name, m.Unit, m.Better)
	if log {
		title += " · log scale"
	}
	left := nameW + 16
	a := newAxis(vals, m.Unit, log, left, left+plotWidth)
	width := max(a.to+labelW+20, textWidth(title)+16)
	top := 30.0
	bottom := top + float64(len(bars))*rowPx
	var b svgBuilder
	b.open(width, bottom+28, title)
	b.xAxis(a, top, bottom)
	for i, f := range bars {
		mid := top + float64(i)*rowPx + rowPx/2
		b.text(left-8, mid+4, "end", "", names[i])
		x0, x1 := a.px(a.min), a.px(f.Value)
		if x1 > x0 {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s"/>`, x0, mid-8, x1-x0, 16, barColour(names[i]))
		}
		end := x1
		if f.Runs > 1 && f.Min != f.Max {
			lo, hi := a.px(f.Min), a.px(f.Max)
			b.line(lo, mid, hi, mid, `stroke="#222" stroke-width="1.2"`)
			b.line(lo, mid-5, lo, mid+5, `stroke="#222" stroke-width="1.2"`)
			b.line(hi, mid-5, hi, mid+5, `stroke="#222" stroke-width="1.2"`)
			end = max(end, hi)
		}
		b.text(end+6, mid+4, "start", `fill="#333"`, labels[i])
	}
	b.WriteString("</svg>")
	return template.HTML(b.String()), ""
}

// cdfChart draws each candidate's distribution as a cumulative share on a
// log time axis, with its p50 and p99 marked on the curve and given in the
// legend.
func cdfChart(rows []Row, name string) template.HTML {
	unit := ""
	if i, j := strings.LastIndex(name, "("), strings.LastIndex(name, ")"); i >= 0 && j > i {
		unit = name[i+1 : j]
	}
	type series struct {
		name, colour string
		xs           []float64
	}
	var ss []series
	var all []float64
	peer := 0
	for _, r := range rows {
		xs := r.Samples[name]
		if len(xs) == 0 {
			continue
		}
		c := lineColour(r.Candidate, peer)
		if !isTiercache(r.Candidate) {
			peer++
		}
		ss = append(ss, series{r.Candidate, c, xs})
		all = append(all, xs...)
	}
	if len(ss) == 0 {
		return ""
	}
	const left, plotW, top, plotH = 52.0, 420.0, 30.0, 210.0
	a := newAxis(all, unit, slices.ContainsFunc(all, func(v float64) bool { return v > 0 }), left, left+plotW)
	py := func(q float64) float64 { return top + (1-q)*plotH }
	legend := make([]string, len(ss))
	legendW := 0.0
	for i, s := range ss {
		legend[i] = "p50 " + siLabel(quantile(s.xs, 0.5), unit) + " · p99 " + siLabel(quantile(s.xs, 0.99), unit)
		legendW = max(legendW, textWidth(legend[i])*tickPx/fontPx, textWidth(s.name))
	}
	title := strings.TrimSpace(strings.TrimSuffix(name, "("+unit+")")) + ": cumulative share of calls · log time axis"
	width := max(a.to+40+legendW+20, textWidth(title)+16)
	height := max(top+plotH+40, top+float64(len(ss))*34+10)
	var b svgBuilder
	b.open(width, height, title)
	b.xAxis(a, top, top+plotH)
	b.line(left, top, left, top+plotH, `stroke="#444"`)
	for _, q := range []float64{0, 0.25, 0.5, 0.75, 1} {
		b.text(left-6, py(q)+4, "end", fmt.Sprintf(`font-size="%d" fill="#333"`, tickPx), short(q))
	}
	for _, q := range []struct {
		v     float64
		label string
	}{{0.5, "p50"}, {0.99, "p99"}} {
		b.line(left, py(q.v), a.to, py(q.v), `stroke="#999" stroke-dasharray="4 3"`)
		b.text(a.to-4, py(q.v)-4, "end", fmt.Sprintf(`font-size="%d" fill="#666"`, tickPx), q.label)
	}
	for i, s := range ss {
		width := 1.5
		if isTiercache(s.name) {
			width = 2.5
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="%.1f" points="`, s.colour, width)
		lastX, lastY := -1.0, -1.0
		for j, x := range s.xs {
			px, y := a.px(x), py(float64(j+1)/float64(len(s.xs)))
			if math.Abs(px-lastX) < 0.5 && math.Abs(y-lastY) < 0.5 && j != len(s.xs)-1 {
				continue
			}
			fmt.Fprintf(&b, "%.1f,%.1f ", px, y)
			lastX, lastY = px, y
		}
		b.WriteString(`"/>`)
		for _, q := range []float64{0.5, 0.99} {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s" stroke="#fff"/>`, a.px(quantile(s.xs, q)), py(q), s.colour)
		}
		ly := top + float64(i)*34
		lx := a.to + 40
		b.line(lx-26, ly+8, lx-6, ly+8, fmt.Sprintf(`stroke="%s" stroke-width="3"`, s.colour))
		b.text(lx, ly+12, "start", "", s.name)
		b.text(lx, ly+26, "start", fmt.Sprintf(`font-size="%d" fill="#555"`, tickPx), legend[i])
	}
	b.WriteString("</svg>")
	return template.HTML(b.String())
}
