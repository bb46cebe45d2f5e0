package load

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
)

// WriteComparison prints a Markdown table of results: a row per workload
// and target, then the bridge/baseline ratios of each workload that has
// both. When a workload and target ran several times, each figure is the
// median of the runs (the row says how many). A run in which something
// else used more than a tenth of the machine's busy CPU and over 0.5 s (see
// Result.OtherCPUWindowSeconds; the last column) is noisy: it is left out of
// the medians when a quiet run of the same workload and target exists, and
// counted as "+N noisy". A workload the baseline did not run (W6-batch: the
// baseline has no batch call) is compared with the baseline's run of the
// workload its name starts with (W6).
func WriteComparison(w io.Writer, results []*Result) error {
	groups := map[key][]*Result{}
	var keys []key
	for _, r := range results {
		k := key{cmp.Or(r.Workload, "custom"), r.Target}
		if groups[k] == nil {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], r)
	}
	order := func(name string) int {
		if i := slices.Index(Workloads, name); i >= 0 {
			return i
		}
		return len(Workloads)
	}
	slices.SortStableFunc(keys, func(a, b key) int {
		return cmp.Or(cmp.Compare(order(a.workload), order(b.workload)),
			cmp.Compare(a.workload, b.workload),
			cmp.Compare(targetOrder(a.target), targetOrder(b.target)))
	})
	rows := map[key]row{}
	for _, k := range keys {
		quiet := slices.DeleteFunc(slices.Clone(groups[k]), noisy)
		if len(quiet) == 0 {
			quiet = groups[k]
		}
		r := medianRow(quiet)
		r.runs = fmt.Sprint(len(quiet))
		if n := len(groups[k]) - len(quiet); n > 0 {
			r.runs += fmt.Sprintf(" (+%d noisy)", n)
		}
		rows[k] = r
	}

	pr := &printer{w: w}
	pr.f("| workload | target | runs | published/s | delivered/s | server CPU µs/frame | server CPU µs/published | p50 ms | p99 ms | max ms | RSS KiB/conn | RSS KiB/conn after | connect s | lost | dup | evictions | publish errors | publish p99 ms | publish max ms | stalled closed | other CPU s |\n")
	pr.f("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for i, k := range keys {
		r := rows[k]
		pr.f("| %s | %s | %s | %.0f | %.0f | %s | %s | %s | %s | %s | %s | %s | %.3f | %.0f | %.0f | %.0f | %.0f | %.1f | %.0f | %s | %.1f |\n",
			k.workload, k.target, r.runs, r.published, r.delivered, optional(r.cpu, "%.2f"), optional(r.cpuPub, "%.2f"),
			optional(r.p50, "%.2f"), optional(r.p99, "%.2f"), optional(r.max, "%.1f"),
			optional(r.rss, "%.1f"), optional(r.rssAfter, "%.1f"), r.connect, r.lost, r.dup, r.evictions, r.pubErrors, r.pubP99, r.pubMax, r.stalled, r.other)
		if i+1 < len(keys) && keys[i+1].workload == k.workload {
			continue
		}
		br, okBr := rows[key{k.workload, TargetBridge}]
		bl, okBl := rows[key{k.workload, TargetBaseline}]
		label := "**bridge/baseline**"
		if base, _, cut := strings.Cut(k.workload, "-"); !okBl && cut {
			bl, okBl = rows[key{base, TargetBaseline}]
			label = "**bridge/baseline " + base + "**"
		}
		if !okBr || !okBl {
			continue
		}
		pr.f("| %s | %s | | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | | | | | %s | %s | | |\n",
			k.workload, label,
			ratio(br.published, bl.published), ratio(br.delivered, bl.delivered), ratio(br.cpu, bl.cpu), ratio(br.cpuPub, bl.cpuPub),
			ratio(br.p50, bl.p50), ratio(br.p99, bl.p99), ratio(br.max, bl.max),
			ratio(br.rss, bl.rss), ratio(br.rssAfter, bl.rssAfter), ratio(br.connect, bl.connect), ratio(br.pubP99, bl.pubP99), ratio(br.pubMax, bl.pubMax))
	}
	writePhases(pr, keys, groups)
	return pr.err
}

// writePhases prints, for the runs with a timeline (Config.Timeline), a
// second table: publish calls and the server's memory before, during and
// after its evictions, medians over the quiet runs as above.
func writePhases(pr *printer, keys []key, groups map[key][]*Result) {
	header := false
	for _, k := range keys {
		quiet := slices.DeleteFunc(slices.Clone(groups[k]), func(r *Result) bool { return noisy(r) || r.Phases == nil })
		if len(quiet) == 0 {
			quiet = slices.DeleteFunc(slices.Clone(groups[k]), func(r *Result) bool { return r.Phases == nil })
		}
		if len(quiet) == 0 {
			continue
		}
		if !header {
			header = true
			pr.f("\n| workload | target | runs | evicted | publish p50 / p99 / max ms before | during | after | RSS MiB before | peak during | peak ÷ before | at the end | lost (healthy) |\n")
			pr.f("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		}
		m := func(f func(*EvictionResult) float64) float64 {
			return median(quiet, func(r *Result) float64 { return f(r.Phases) })
		}
		q := func(f func(*EvictionResult) Quantiles) string {
			return fmt.Sprintf("%.2f / %.2f / %.1f",
				m(func(p *EvictionResult) float64 { return f(p).P50 }),
				m(func(p *EvictionResult) float64 { return f(p).P99 }),
				m(func(p *EvictionResult) float64 { return f(p).Max }))
		}
		pr.f("| %s | %s | %d | %.0f | %s | %s | %s | %s | %s | %s | %s | %.0f |\n",
			k.workload, k.target, len(quiet), m(func(p *EvictionResult) float64 { return float64(p.Evicted) }),
			q(func(p *EvictionResult) Quantiles { return p.Before }),
			q(func(p *EvictionResult) Quantiles { return p.During }),
			q(func(p *EvictionResult) Quantiles { return p.After }),
			optional(m(func(p *EvictionResult) float64 { return float64(p.RSSBeforeKiB) / 1024 }), "%.0f"),
			optional(m(func(p *EvictionResult) float64 { return float64(p.RSSPeakKiB) / 1024 }), "%.0f"),
			optional(m(func(p *EvictionResult) float64 { return p.RSSPeakRatio }), "%.2f"),
			optional(m(func(p *EvictionResult) float64 { return float64(p.RSSAfterKiB) / 1024 }), "%.0f"),
			median(quiet, func(r *Result) float64 { return float64(r.Lost) }))
	}
}

// median is the median of f over rs.
func median(rs []*Result, f func(*Result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

// key is a workload and target of the comparison tables.
type key struct{ workload, target string }

// row is the figures of one workload and target, medians over its runs.
type row struct {
	runs                                                   string
	published, delivered, cpu, p50, p99, max, rss, connect float64
	cpuPub                                                 float64
	rssAfter                                               float64
	lost, dup, evictions, pubErrors, pubP99, pubMax, other float64
	stalled                                                string
}

func medianRow(rs []*Result) row {
	m := func(f func(*Result) float64) float64 { return median(rs, f) }
	r := row{
		published: m(func(r *Result) float64 { return r.PublishedPerSec }),
		delivered: m(func(r *Result) float64 { return r.DeliveredPerSec }),
		cpu:       m(func(r *Result) float64 { return r.CPUPerFrameUS }),
		cpuPub:    m(func(r *Result) float64 { return r.CPUPerPublishedUS }),
		p50:       m(func(r *Result) float64 { return r.Latency.P50 }),
		p99:       m(func(r *Result) float64 { return r.Latency.P99 }),
		max:       m(func(r *Result) float64 { return r.Latency.Max }),
		rss:       m(func(r *Result) float64 { return r.RSSPerConnKiB }),
		rssAfter:  m(func(r *Result) float64 { return r.RSSPerConnAfterKiB }),
		connect:   m(func(r *Result) float64 { return r.ConnectSeconds }),
		lost:      m(func(r *Result) float64 { return float64(r.Lost) }),
		dup:       m(func(r *Result) float64 { return float64(r.Duplicated) }),
		evictions: m(func(r *Result) float64 { return float64(r.Evictions) }),
		pubErrors: m(func(r *Result) float64 { return float64(r.PublishErrors) }),
		pubP99:    m(func(r *Result) float64 { return r.PublishCall.P99 }),
		pubMax:    m(func(r *Result) float64 { return r.PublishCall.Max }),
		other:     m(func(r *Result) float64 { return r.OtherCPUWindowSeconds }),
		stalled:   "-",
	}
	// Stalled clients closed by the server, per run: "1/1, 0/1".
	for i, x := range rs {
		if x.Stalled == nil {
			continue
		}
		if i == 0 {
			r.stalled = ""
		} else {
			r.stalled += ", "
		}
		r.stalled += fmt.Sprintf("%d/%d", x.Stalled.ClosedByServer, x.Stalled.Subscribers)
	}
	return r
}

// noisy reports whether something else used more than a tenth of the
// machine's busy CPU in r's window, and more than half a second (short
// windows are at the mercy of the 10 ms clock ticks).
func noisy(r *Result) bool {
	return r.OtherCPUWindowSeconds > max(r.MachineCPUWindowSeconds/10, 0.5)
}

func targetOrder(t string) int {
	switch t {
	case TargetBridge:
		return 0
	case TargetBaseline:
		return 1
	}
	return 2
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "-"
	}
	return fmt.Sprintf("**%.2f**", a/b)
}

func optional(v float64, format string) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf(format, v)
}
