package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"strings"
)

// Layout, in SVG user units (pixels at 100 %).
const (
	width     = 960.0
	margin    = 20.0
	colGap    = 30.0
	rowGap    = 22.0
	panelW    = (width - 2*margin - colGap) / 2
	labelW    = 160.0 // the workload names, left of each panel's plot
	plotW     = panelW - labelW - 10
	headH     = 40.0 // a panel's title and its better/worse line
	barRowH   = 18.0
	lineH     = 16.0 // a line of the header
	maxPowers = 5    // the scale stops at 2⁵ = 32× either way
)

// Colours: green where the bridge does better, red where it does worse.
const (
	colorBetter = "#2e8b57"
	colorWorse  = "#d0453f"
	colorEven   = "#8a8a8a"
	colorShade  = "#eaf5ee"
	colorGrid   = "#dddddd"
	colorText   = "#222222"
	colorMuted  = "#666666"
)

// svgWriter builds the document; every number goes through %.1f, so the
// same figures give the same bytes.
type svgWriter struct{ bytes.Buffer }

func (w *svgWriter) f(format string, args ...any) { fmt.Fprintf(&w.Buffer, format, args...) }

// text writes a text element; attrs are extra attributes.
func (w *svgWriter) text(x, y float64, attrs, s string) {
	w.f(`<text x="%.1f" y="%.1f"%s>%s</text>`+"\n", x, y, attrs, esc(s))
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder does not fail
	return b.String()
}

// draw lays the rows out as one panel per metric, two panels a line.
func draw(all []*series, rs []row) []byte {
	powers := 1
	for _, r := range rs {
		for _, c := range r.cells {
			if c.ratio > 0 {
				powers = max(powers, int(math.Ceil(math.Abs(math.Log2(c.ratio))-1e-9)))
			}
		}
	}
	powers = min(powers, maxPowers)
	panelH := headH + float64(len(rs))*barRowH + 22
	lines := (len(metrics) + 1) / 2
	// The title, a line per series, the machine, the legend.
	top := 52 + float64(len(all)+1)*lineH + 30
	height := top + float64(lines)*(panelH+rowGap) + 36

	w := &svgWriter{}
	w.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="Helvetica, Arial, sans-serif" font-size="12" fill="%s">`+"\n",
		width, height, width, height, colorText)
	title := "The bridge against a plain r3labs/sse server: bridge ÷ baseline, medians"
	w.f("<title>%s</title>\n", esc(title))
	w.f(`<rect width="%.0f" height="%.0f" fill="#ffffff"/>`+"\n", width, height)
	w.text(margin, 30, ` font-size="17" font-weight="bold"`, title)
	y := 52.0
	for i, s := range all {
		prefix := "series "
		if i > 0 {
			prefix = "also series "
		}
		w.text(margin, y, ` fill="`+colorMuted+`"`, prefix+s.describe())
		y += lineH
	}
	if len(all) > 0 {
		w.text(margin, y, ` fill="`+colorMuted+`"`, "machine: "+all[0].machineLine())
	}
	legend(w, margin, top-16)

	for i, m := range metrics {
		x := margin + float64(i%2)*(panelW+colGap)
		y := top + float64(i/2)*(panelH+rowGap)
		w.f(`<g transform="translate(%.1f,%.1f)">`+"\n", x, y)
		panel(w, i, m, rs, powers)
		w.f("</g>\n")
	}
	for i, line := range []string{
		"Each bar: the bridge's median over a series' runs ÷ the baseline's, on a log scale around 1.0 (the black line);",
		"the shaded side of each panel is where the bridge does better. Drawn from the JSON results by bench/chart.",
	} {
		w.text(margin, height-28+float64(i)*lineH, ` font-size="11" fill="`+colorMuted+`"`, line)
	}
	w.f("</svg>\n")
	return w.Bytes()
}

// legend draws the three bar colours at (x, y).
func legend(w *svgWriter, x, y float64) {
	for _, l := range []struct{ color, label string }{
		{colorBetter, "bridge better"}, {colorWorse, "bridge worse"}, {colorEven, "the same (1.00)"},
	} {
		w.f(`<rect x="%.1f" y="%.1f" width="12" height="12" fill="%s"/>`+"\n", x, y-10, l.color)
		w.text(x+17, y, "", l.label)
		x += 30 + 7*float64(len(l.label))
	}
}

// panel draws metric i at the origin: its title, the shaded better side,
// the scale and a bar per row.
func panel(w *svgWriter, i int, m metric, rs []row, powers int) {
	cx := labelW + plotW/2
	bottom := headH + float64(len(rs))*barRowH
	scale := func(r float64) float64 {
		e := max(-float64(powers), min(float64(powers), math.Log2(r)))
		return cx + e/float64(powers)*plotW/2
	}
	w.text(0, 14, ` font-size="14" font-weight="bold"`, m.title)
	better, worse := labelW, cx // the shaded half's left edge, and the other's
	betterLabel, worseLabel := "← bridge better", "bridge worse →"
	if m.higherBetter {
		better, worse = cx, labelW
		betterLabel, worseLabel = "bridge better →", "← bridge worse"
	}
	w.f(`<rect x="%.1f" y="22" width="%.1f" height="%.1f" fill="%s"/>`+"\n", better, plotW/2, bottom-22, colorShade)
	for _, side := range []struct {
		left  float64
		label string
		color string
	}{{better, betterLabel, colorBetter}, {worse, worseLabel, colorWorse}} {
		w.text(side.left+plotW/4, 35, ` text-anchor="middle" font-size="11" fill="`+side.color+`"`, side.label)
	}
	for e := -powers; e <= powers; e++ {
		x := scale(math.Exp2(float64(e)))
		stroke, sw := colorGrid, 1.0
		if e == 0 {
			stroke, sw = colorText, 1.5
		}
		w.f(`<line x1="%.1f" y1="22" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f"/>`+"\n", x, x, bottom, stroke, sw)
		label := fmt.Sprint(1 << max(e, 0))
		if e < 0 {
			label = fmt.Sprintf("1/%d", 1<<-e)
		}
		w.text(x, bottom+14, ` text-anchor="middle" font-size="10" fill="`+colorMuted+`"`, label+"×")
	}
	for j, r := range rs {
		y := headH + float64(j)*barRowH
		w.text(0, y+13, ` font-size="11.5"`, r.label)
		c := r.cells[i]
		if c.ratio == 0 {
			w.text(cx, y+12.5, ` text-anchor="middle" font-size="10.5" font-style="italic" fill="`+colorMuted+
				`" stroke="#ffffff" stroke-width="3" paint-order="stroke"`, c.note)
			continue
		}
		value := fmt.Sprintf("%.2f", c.ratio)
		color := colorEven
		if value != "1.00" {
			color = colorWorse
			if (c.ratio > 1) == m.higherBetter {
				color = colorBetter
			}
		}
		x := scale(c.ratio)
		left, length := min(x, cx), math.Max(math.Abs(x-cx), 1)
		w.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="12" fill="%s"/>`+"\n", left, y+3, length, color)
		// The figure goes past the bar's end, or inside it near the edge.
		anchor, tx, fill := "start", x+4, colorText
		if x < cx {
			anchor, tx = "end", x-4
		}
		if math.Abs(x-cx) > plotW/2-36 {
			fill = "#ffffff"
			if x < cx {
				anchor, tx = "start", x+3
			} else {
				anchor, tx = "end", x-3
			}
		}
		w.text(tx, y+13, fmt.Sprintf(` text-anchor="%s" font-size="11" fill="%s"`, anchor, fill), value+"×")
	}
}
