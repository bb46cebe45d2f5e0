package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/sse-bridge/bridge/internal/load"
)

// Soak chart layout, in SVG user units.
const (
	soakPanelH = 230.0
	soakPlotL  = 56.0 // room for the y axis labels
	soakPlotT  = 52.0 // room for the title and the verdicts
	soakPlotB  = 26.0 // room for the x axis labels
)

// Colours of the soak chart's lines.
const (
	colorLine   = "#1f5fa8"
	colorLine2  = "#8fb3dd"
	colorFit    = "#d0453f"
	colorWarmup = "#f0f0f0"
)

// soakChart reads a soak run's CSV (cmd/bridge-load soak --csv) and draws
// it: a panel per resource over time, the warm-up shaded, the
// least-squares line of the samples after it dashed, and each resource's
// verdict as internal/load judges it with warmup (minutes) and maxGrowth
// (percent).
func soakChart(csvPath string, warmup, maxGrowth float64) ([]byte, error) {
	f, err := os.Open(filepath.Clean(csvPath))
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	samples, err := load.ParseSoakCSV(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", csvPath, err)
	}
	if len(samples) == 0 {
		return nil, fmt.Errorf("%s: no samples", csvPath)
	}
	dir := filepath.Dir(csvPath)
	s := &series{name: filepath.Base(dir), machine: readMachine(os.DirFS(dir))}
	return drawSoak(samples, s, warmup, maxGrowth), nil
}

// soakPanelSpec is one panel: the resources of load.SoakSeries it draws
// (the first as the main line) and its title.
type soakPanelSpec struct {
	title  string
	series []int
}

var soakPanels = []soakPanelSpec{
	{"RSS", []int{0}},
	{"Go heap: in use (dark), allocated (light)", []int{1, 2}},
	{"goroutines", []int{3}},
	{"open files", []int{4}},
}

func drawSoak(samples []load.SoakSample, s *series, warmup, maxGrowth float64) []byte {
	names, units := load.SoakSeries()
	trends, pass := load.Judge(samples, warmup, maxGrowth)
	xmax := math.Ceil(samples[len(samples)-1].Minutes)
	top := 52 + 3*lineH + 10
	height := top + 2*(soakPanelH+rowGap) + 30

	w := &svgWriter{}
	w.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="Helvetica, Arial, sans-serif" font-size="12" fill="%s">`+"\n",
		width, height, width, height, colorText)
	every := "minute"
	if len(samples) > 1 {
		if d := time.Duration((samples[1].Minutes - samples[0].Minutes) * float64(time.Minute)).Round(time.Second); d != time.Minute {
			every = d.String()
		}
	}
	title := "Soak: the bridge's resources under a mixed load, sampled every " + every
	w.f("<title>%s</title>\n", esc(title))
	w.f(`<rect width="%.0f" height="%.0f" fill="#ffffff"/>`+"\n", width, height)
	w.text(margin, 30, ` font-size="17" font-weight="bold"`, title)
	verdict := "PASS: no resource trends up"
	if !pass {
		verdict = "FAIL: a resource trends up"
	}
	last := samples[len(samples)-1]
	y := 52.0
	for _, line := range []string{
		fmt.Sprintf("%s; over %.0f min: %d publish calls, %d streams opened by the clients, %d events received, %d connections evicted by the bridge",
			verdict, last.Minutes, last.Published, last.Connects, last.Events, last.Evictions),
		fmt.Sprintf("trend (dashed): least-squares slope of the samples after the %.0f-minute warm-up (shaded); a resource fails when it grows over %.0f%% of its median and over a floor", warmup, maxGrowth),
		soakDescribe(s),
	} {
		w.text(margin, y, ` fill="`+colorMuted+`"`, line)
		y += lineH
	}
	for i, p := range soakPanels {
		x := margin + float64(i%2)*(panelW+colGap)
		y := top + float64(i/2)*(soakPanelH+rowGap)
		w.f(`<g transform="translate(%.1f,%.1f)">`+"\n", x, y)
		soakPanel(w, p, samples, trends, names, units, warmup, xmax)
		w.f("</g>\n")
	}
	w.text(margin, height-14, ` font-size="11" fill="`+colorMuted+`"`,
		"Drawn by bench/chart from the CSV of bench/soak.sh. Heap: the lowest reading of each interval (right after a collection); goroutines, open files: the median.")
	w.f("</svg>\n")
	return w.Bytes()
}

// soakPanel draws one panel at the origin.
func soakPanel(w *svgWriter, p soakPanelSpec, samples []load.SoakSample, trends []load.Trend, names, units []string, warmup, xmax float64) {
	plotW := panelW - soakPlotL - 10
	plotH := soakPanelH - soakPlotT - soakPlotB
	ymax := 0.0
	for _, i := range p.series {
		for _, s := range samples {
			ymax = max(ymax, load.SoakValue(i, s))
		}
	}
	step := niceStep(ymax * 1.15 / 4)
	ymax = step * math.Ceil(ymax*1.15/step)
	if ymax == 0 {
		ymax, step = 1, 0.25
	}
	sx := func(m float64) float64 { return soakPlotL + m/xmax*plotW }
	sy := func(v float64) float64 { return soakPlotT + plotH - v/ymax*plotH }

	unit := units[p.series[0]]
	title := p.title
	if unit != "" {
		title += " (" + unit + ")"
	}
	w.text(0, 14, ` font-size="14" font-weight="bold"`, title)
	for j, i := range p.series {
		t := trends[i]
		color := colorBetter
		verdict := "ok"
		if t.Fail {
			color, verdict = colorWorse, "trends up"
		}
		label := fmt.Sprintf("%s: %+.2f%s/min, %+.1f%% of the median after the warm-up: %s", names[i], t.Slope, unitSuffix(t.Unit), t.Percent, verdict)
		w.text(0, 29+float64(j)*13, ` font-size="10.5" fill="`+color+`"`, label)
	}
	w.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", sx(0), soakPlotT, sx(min(warmup, xmax))-sx(0), plotH, colorWarmup)
	for v := 0.0; v <= ymax+step/2; v += step {
		w.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", sx(0), sy(v), sx(xmax), sy(v), colorGrid)
		w.text(soakPlotL-5, sy(v)+4, ` text-anchor="end" font-size="10" fill="`+colorMuted+`"`, formatTick(v))
	}
	every := math.Max(1, math.Ceil(xmax/12))
	for m := 0.0; m <= xmax+1e-9; m += every {
		w.text(sx(m), soakPlotT+plotH+14, ` text-anchor="middle" font-size="10" fill="`+colorMuted+`"`, fmt.Sprintf("%.0f", m))
	}
	w.text(sx(xmax), soakPlotT+plotH+24, ` text-anchor="end" font-size="10" fill="`+colorMuted+`"`, "minutes")
	w.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", sx(0), sy(0), sx(xmax), sy(0), colorText)
	for j := len(p.series) - 1; j >= 0; j-- {
		i := p.series[j]
		color := colorLine
		if j > 0 {
			color = colorLine2
		}
		w.f(`<polyline fill="none" stroke="%s" stroke-width="2" points="`, color)
		for k, s := range samples {
			if k > 0 {
				w.f(" ")
			}
			w.f("%.1f,%.1f", sx(s.Minutes), sy(load.SoakValue(i, s)))
		}
		w.f(`"/>` + "\n")
		for _, s := range samples {
			w.f(`<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>`+"\n", sx(s.Minutes), sy(load.SoakValue(i, s)), color)
		}
		// The trend: the least-squares line over the samples after the
		// warm-up, through their mean.
		var xs, ys []float64
		for _, s := range samples {
			if load.AfterWarmup(s, warmup) {
				xs, ys = append(xs, s.Minutes), append(ys, load.SoakValue(i, s))
			}
		}
		if len(xs) >= 2 {
			mx, my := mean(xs), mean(ys)
			b := trends[i].Slope
			x0, x1 := xs[0], xs[len(xs)-1]
			w.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5" stroke-dasharray="5,4"/>`+"\n",
				sx(x0), sy(my+b*(x0-mx)), sx(x1), sy(my+b*(x1-mx)), colorFit)
		}
	}
}

func mean(v []float64) float64 {
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

// niceStep rounds v up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func formatTick(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func unitSuffix(u string) string {
	if u == "" {
		return ""
	}
	return " " + u
}

// soakDescribe says where a soak run comes from, from its machine.txt.
func soakDescribe(s *series) string {
	m := s.machine
	out := s.name
	if c := m["commit"]; len(c) >= 7 {
		out += ": commit " + c[:7]
	}
	if t, err := time.Parse(time.RFC3339, m["date"]); err == nil {
		out += ", " + t.UTC().Format("2006-01-02 15:04 UTC")
	}
	if l := m["load average"]; l != "" {
		out += ", load average " + l + " at the start"
	}
	if line := s.machineLine(); line != "" {
		out += "; machine: " + line
	}
	return out
}
