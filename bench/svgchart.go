package bench

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
)

// The charts are drawn by hand as inline SVG: a log axis that bars of 0 sit
// on, run-spread whiskers on horizontal bars, SI ticks and marked
// percentiles are each a fight with a general plotting library, and a
// browser sets the text, so labels stay crisp and never need a font file.

const (
	fontPx    = 12
	charPx    = 7.0 // a generous average width of a character at fontPx
	tickPx    = 11
	rowPx     = 26
	plotWidth = 340
)

// axis maps values to pixels, linearly or logarithmically.
type axis struct {
	log      bool
	min, max float64
	from, to float64 // pixels
	unit     string
}

// spansDecade says values (the positive ones) span more than 10×: a linear
// axis would flatten all but the largest.
func spansDecade(values []float64) bool {
	lo, hi := math.Inf(1), 0.0
	for _, v := range values {
		if v > 0 {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	return hi > 0 && hi/lo > 10
}

func newAxis(values []float64, unit string, log bool, from, to float64) axis {
	lo, hi := math.Inf(1), 0.0
	for _, v := range values {
		if v > 0 && !math.IsInf(v, 0) {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	a := axis{log: log, from: from, to: to, unit: unit}
	switch {
	case hi == 0:
		a.min, a.max = 0, 1
	case log:
		a.min, a.max = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
		if a.max == a.min {
			a.max *= 10
		}
	default:
		step := niceStep(hi / 4)
		a.min, a.max = 0, math.Ceil(hi/step*(1-1e-9))*step // 1.0000001 rounds to 1, not 1.5
	}
	return a
}

// niceStep rounds a tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// px places v; values the axis cannot show (0 on a log axis) sit at its start.
func (a axis) px(v float64) float64 {
	var f float64
	if a.log {
		if v <= 0 {
			return a.from
		}
		f = (math.Log10(v) - math.Log10(a.min)) / (math.Log10(a.max) - math.Log10(a.min))
	} else {
		f = (v - a.min) / (a.max - a.min)
	}
	return a.from + max(0, min(1, f))*(a.to-a.from)
}

type tick struct {
	v     float64
	label string // empty: a minor tick, drawn without a label
}

// ticks picks the axis's ticks and labels only as many as fit side by side.
func (a axis) ticks() []tick {
	var vs []float64
	if a.log {
		decades := math.Log10(a.max) - math.Log10(a.min)
		for d := a.min; d <= a.max*1.0001; d *= 10 {
			vs = append(vs, d)
			if decades <= 2 && d < a.max {
				vs = append(vs, 2*d, 5*d)
			}
		}
	} else {
		step := niceStep((a.max - a.min) / 4)
		for v := a.min; v <= a.max+step/1e6; v += step {
			vs = append(vs, v)
		}
	}
	var out []tick
	lastRight := math.Inf(-1)
	for _, v := range vs {
		label := siLabel(v, a.unit)
		half := float64(len([]rune(label))) * charPx * tickPx / fontPx / 2
		x := a.px(v)
		if x-half < lastRight+6 { // would overlap the last label
			out = append(out, tick{v: v})
			continue
		}
		out = append(out, tick{v: v, label: label})
		lastRight = x + half
	}
	return out
}

// timeScale is each time unit in seconds.
var timeScale = map[string]float64{"ns": 1e-9, "ns/op": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1}

// siLabel writes v with an SI prefix: 5e6 (ops/s) as "5 M", 250 (µs) as
// "250 µs", 1500 (µs) as "1.5 ms". Time carries its unit; other units are
// left to the axis title.
func siLabel(v float64, unit string) string {
	if v == 0 {
		return "0"
	}
	if s, ok := timeScale[unit]; ok {
		sec := v * s
		for _, p := range []struct {
			name  string
			scale float64
		}{{"s", 1}, {"ms", 1e-3}, {"µs", 1e-6}, {"ns", 1e-9}} {
			if math.Abs(sec) >= p.scale || p.name == "ns" {
				return short(sec/p.scale) + " " + p.name
			}
		}
	}
	for _, p := range []struct {
		name  string
		scale float64
	}{{"G", 1e9}, {"M", 1e6}, {"k", 1e3}} {
		if math.Abs(v) >= p.scale {
			return short(v/p.scale) + " " + p.name
		}
	}
	return short(v)
}

// short writes at most three significant digits, no exponent, no trailing zeros.
func short(v float64) string {
	a := math.Abs(v)
	decimals := 0
	switch {
	case a < 0.01:
		return strconv.FormatFloat(v, 'g', 2, 64)
	case a < 1:
		decimals = 3
	case a < 10:
		decimals = 2
	case a < 100:
		decimals = 1
	}
	s := strconv.FormatFloat(v, 'f', decimals, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

func textWidth(s string) float64 { return float64(len([]rune(s))) * charPx }

// colours: tiercache in blue (its warm-up variant lighter), peers in
// colours of their own for the CDFs and in grey for the bars.
var peerColours = []string{"#d9534f", "#3c9d4e", "#e69a28", "#8e6bbf", "#666666", "#17a2b8"}

func barColour(name string) string {
	switch {
	case strings.HasSuffix(name, warmupSuffix):
		return "#6aa9f0"
	case isTiercache(name):
		return "#1f6fd0"
	}
	return "#a3a3a3"
}

func lineColour(name string, peer int) string {
	if isTiercache(name) {
		return barColour(name)
	}
	return peerColours[peer%len(peerColours)]
}

type svgBuilder struct{ strings.Builder }

func (b *svgBuilder) text(x, y float64, anchor, style, s string) {
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="%s" %s>%s</text>`, x, y, anchor, style, html.EscapeString(s))
}

func (b *svgBuilder) line(x1, y1, x2, y2 float64, style string) {
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" %s/>`, x1, y1, x2, y2, style)
}

func (b *svgBuilder) open(w, h float64, title string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" `+
		`font-family="system-ui,sans-serif" font-size="%d" role="img"><title>%s</title>`, w, h, w, h, fontPx, html.EscapeString(title))
	fmt.Fprintf(b, `<rect width="100%%" height="100%%" fill="#fff"/>`)
	b.text(8, 18, "start", `font-weight="600"`, title)
}

// xAxis draws the ticks, their grid lines across the plot and their labels.
func (b *svgBuilder) xAxis(a axis, top, bottom float64) {
	b.line(a.from, bottom, a.to, bottom, `stroke="#444"`)
	for _, t := range a.ticks() {
		x := a.px(t.v)
		b.line(x, top, x, bottom, `stroke="#e4e4e4"`)
		b.line(x, bottom, x, bottom+4, `stroke="#444"`)
		if t.label != "" {
			b.text(x, bottom+16, "middle", fmt.Sprintf(`font-size="%d" fill="#333"`, tickPx), t.label)
		}
	}
}
