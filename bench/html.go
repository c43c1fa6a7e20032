package bench

import (
	"bytes"
	"fmt"
	"html/template"
	"image/color"
	"io"
	"math"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// WriteHTML writes a self-contained page: the tables of WriteMarkdown and,
// per scenario, bar charts of its figures and the distributions of its
// samples (latency CDFs), as inline SVG made with gonum/plot. It needs no
// script and no network to display.
func (rep *Report) WriteHTML(w io.Writer) error {
	type chart struct{ SVG template.HTML }
	type section struct {
		Name, Description string
		Table             template.HTML
		Charts            []chart
	}
	var sections []section
	for _, s := range rep.Scenarios {
		var tb strings.Builder
		rep.htmlTable(&tb, s.Name)
		sec := section{Name: s.Name, Description: s.Description, Table: template.HTML(tb.String())}
		rs := rep.results(s.Name)
		for _, m := range metricNames(rs) {
			if m.Better == "" {
				continue
			}
			if svg, err := barChart(rs, m); err == nil {
				sec.Charts = append(sec.Charts, chart{svg})
			}
		}
		for _, name := range sampleNames(rs) {
			if svg, err := cdfChart(rs, name); err == nil {
				sec.Charts = append(sec.Charts, chart{svg})
			}
		}
		sections = append(sections, sec)
	}
	var md strings.Builder
	rep.WriteMarkdown(&md)
	head, _, _ := strings.Cut(md.String(), "\n## ")
	_, sub, _ := strings.Cut(head, "\n\n")
	return page.Execute(w, map[string]any{"Sub": sub, "Sections": sections, "Candidates": rep.Candidates})
}

var page = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tiercache benchmark report</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
td:first-child,th:first-child{text-align:left}
tr.tc td{font-weight:600;background:#eef6ff} tr.ratio td{font-style:italic;background:#f7f7f7}
.charts{display:flex;flex-wrap:wrap;gap:1rem} .charts svg{border:1px solid #eee}
p.desc{color:#555}
</style></head><body>
<h1>tiercache benchmark report</h1>
<p>{{.Sub}}</p>
{{range .Sections}}<h2>{{.Name}}</h2><p class="desc">{{.Description}}</p>
{{.Table}}<div class="charts">{{range .Charts}}{{.SVG}}{{end}}</div>
{{end}}
<h2>Candidates</h2><ul>{{range .Candidates}}<li><b>{{.Name}}</b>: {{.Description}}</li>{{end}}</ul>
</body></html>
`))

func (rep *Report) htmlTable(w *strings.Builder, scenario string) {
	rs := rep.results(scenario)
	cols := metricNames(rs)
	w.WriteString("<table><tr><th>candidate</th>")
	for _, c := range cols {
		fmt.Fprintf(w, "<th>%s (%s)</th>", template.HTMLEscapeString(c.Name), template.HTMLEscapeString(c.Unit))
	}
	w.WriteString("</tr>")
	for _, r := range rs {
		class := ""
		if r.Candidate == "tiercache" {
			class = ` class="tc"`
		}
		fmt.Fprintf(w, "<tr%s><td>%s</td>", class, template.HTMLEscapeString(r.Candidate))
		switch {
		case r.Skipped != "":
			fmt.Fprintf(w, `<td colspan="%d">skipped: %s</td>`, len(cols), template.HTMLEscapeString(r.Skipped))
		case r.Error != "":
			fmt.Fprintf(w, `<td colspan="%d">error: %s</td>`, len(cols), template.HTMLEscapeString(r.Error))
		default:
			for _, c := range cols {
				v := math.NaN()
				if m, ok := r.Metric(c.Name); ok {
					v = m.Value
				}
				fmt.Fprintf(w, "<td>%s</td>", format(v))
			}
		}
		w.WriteString("</tr>")
	}
	if ratios := rep.Ratios(scenario); len(ratios) > 0 {
		w.WriteString(`<tr class="ratio"><td>tiercache ÷ best peer</td>`)
		for _, c := range cols {
			s := "–"
			for _, r := range ratios {
				if r.Metric == c.Name {
					s = formatRatio(r.Ratio) + " (" + r.BestPeer + ")"
				}
			}
			fmt.Fprintf(w, "<td>%s</td>", template.HTMLEscapeString(s))
		}
		w.WriteString("</tr>")
	}
	w.WriteString("</table>")
}

func sampleNames(rs []Result) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range rs {
		for n := range r.Samples {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out
}

var tiercacheBlue = color.RGBA{R: 0x1f, G: 0x6f, B: 0xd0, A: 0xff}

func barChart(rs []Result, m Metric) (template.HTML, error) {
	var vals plotter.Values
	var names []string
	for _, r := range rs {
		if x, ok := r.Metric(m.Name); ok && !math.IsNaN(x.Value) && !math.IsInf(x.Value, 0) {
			vals = append(vals, math.Max(x.Value, 0))
			names = append(names, r.Candidate)
		}
	}
	if len(vals) == 0 {
		return "", fmt.Errorf("no values")
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s (%s, %s is better)", m.Name, m.Unit, m.Better)
	bars, err := plotter.NewBarChart(vals, vg.Points(28))
	if err != nil {
		return "", err
	}
	bars.Color = color.RGBA{R: 0x99, G: 0x99, B: 0x99, A: 0xff}
	p.Add(bars)
	for i, n := range names {
		if n == "tiercache" { // draw tiercache's bar again, in colour
			only := make(plotter.Values, len(vals))
			only[i] = vals[i]
			tc, _ := plotter.NewBarChart(only, vg.Points(28))
			tc.Color = tiercacheBlue
			p.Add(tc)
		}
	}
	p.NominalX(names...)
	p.Y.Min = 0
	return svg(p, 4.2*vg.Inch, 2.8*vg.Inch)
}

// cdfChart draws each candidate's sample distribution as a CDF.
func cdfChart(rs []Result, name string) (template.HTML, error) {
	p := plot.New()
	p.Title.Text = name + ": cumulative share"
	p.X.Label.Text = name
	p.Y.Label.Text = "share of calls"
	p.Legend.Top = false
	p.Legend.Left = false
	drawn := 0
	for i, r := range rs {
		xs := r.Samples[name]
		if len(xs) == 0 {
			continue
		}
		pts := make(plotter.XYs, len(xs))
		for j, x := range xs {
			pts[j] = plotter.XY{X: x, Y: float64(j+1) / float64(len(xs))}
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return "", err
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.2)
		if r.Candidate == "tiercache" {
			line.Color = tiercacheBlue
			line.Width = vg.Points(2.5)
		}
		p.Add(line)
		p.Legend.Add(r.Candidate, line)
		drawn++
	}
	if drawn == 0 {
		return "", fmt.Errorf("no samples")
	}
	return svg(p, 5.5*vg.Inch, 3.2*vg.Inch)
}

func svg(p *plot.Plot, w, h vg.Length) (template.HTML, error) {
	wt, err := p.WriterTo(w, h, "svg")
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if _, err := wt.WriteTo(&b); err != nil {
		return "", err
	}
	s := b.String()
	if i := strings.Index(s, "<svg"); i > 0 { // drop the XML prolog: inline SVG
		s = s[i:]
	}
	return template.HTML(s), nil
}
