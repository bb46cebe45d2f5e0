// Command chart draws the headline figures of benchmark series as an SVG
// bar chart: for each workload, the bridge's figure divided by the plain
// r3labs/sse baseline's, on a log scale around 1.0, with the side where the
// bridge does better shaded.
//
//	go run ./bench/chart -o bench/ratios.svg bench/reference/6ec5482 [more series...]
//
// Each argument is a results directory of bench/run.sh: the JSON results
// of cmd/bridge-load and machine.txt. The figures are those of the
// directory's table.md (internal/load's WriteComparison): per workload and
// target the median of the runs, leaving out noisy runs when quiet ones
// exist, then bridge ÷ baseline. The first directory is the main series;
// the workloads of the others are drawn as extra rows named after their
// directory. The same input gives the same bytes.
//
// bench/ratios.svg, the chart in BENCHMARKS.md, is drawn from the series
// on this file's first go:generate line:
//
//	go generate ./bench/chart
//
// With -soak it draws a soak run instead (bench/soak.sh's CSV): a line
// chart per resource over time, with the trend that judges it. The second
// generate directive draws bench/soak.svg from the soak run that
// BENCHMARKS.md shows.
package main

//go:generate go run . -o ../ratios.svg ../reference/6ec5482 ../reference/ba25bb1-w3x6 ../reference/ba25bb1-w3x6-eager ../reference/98e8213-w3x8 ../reference/23f5901-ingest ../reference/697a5f1-ingest ../reference/a36b8da-ingest ../reference/c9e8fae-ingest
//go:generate go run . -soak ../reference/soak-f9d20e3/soak.csv -warmup 2m -max-growth 10 -o ../soak.svg

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

func main() {
	out := flag.String("o", "ratios.svg", "the SVG file to write")
	soak := flag.String("soak", "", "draw the soak run of this CSV (bench/soak.sh) instead")
	warmup := flag.Duration("warmup", 2*time.Minute, "with -soak: the warm-up")
	maxGrowth := flag.Float64("max-growth", 10, "with -soak: the growth that fails, in percent")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: chart [-o file.svg] results-dir [results-dir...]\n       chart -soak soak.csv [-warmup 2m] [-max-growth PCT] [-o file.svg]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *soak != "" {
		svg, err := soakChart(*soak, warmup.Minutes(), *maxGrowth)
		if err == nil {
			err = writeFile(*out, svg)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "chart:", err)
			os.Exit(1)
		}
		return
	}
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	svg, err := chart(flag.Args())
	if err == nil {
		err = writeFile(*out, svg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chart:", err)
		os.Exit(1)
	}
}

// writeFile writes b to path the way a file of the repository is written:
// readable by everyone.
func writeFile(path string, b []byte) error {
	f, err := os.Create(filepath.Clean(path))
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	return errors.Join(err, f.Close())
}

// chart reads the series in dirs and returns the SVG.
func chart(dirs []string) ([]byte, error) {
	var all []*series
	for _, dir := range dirs {
		s, err := readSeries(dir)
		if err != nil {
			return nil, err
		}
		all = append(all, s)
	}
	return draw(all, rows(all)), nil
}

// result is what the chart uses of a bridge-load JSON result
// (internal/load.Result).
type result struct {
	Workload string `json:"workload"`
	Target   string `json:"target"`
	Params   struct {
		Events int `json:"events"`
	} `json:"params"`
	ConnectSeconds  float64 `json:"connect_s"`
	DeliveredPerSec float64 `json:"delivered_per_s"`
	Latency         struct {
		P99 float64 `json:"p99_ms"`
	} `json:"latency"`
	CPUPerFrameUS           float64 `json:"cpu_us_per_frame"`
	RSSPerConnKiB           float64 `json:"rss_kib_per_conn"`
	RSSPerConnAfterKiB      float64 `json:"rss_kib_per_conn_after"`
	MachineCPUWindowSeconds float64 `json:"machine_cpu_window_s"`
	OtherCPUWindowSeconds   float64 `json:"other_cpu_window_s"`
}

// series is one results directory.
type series struct {
	name    string              // the directory's base name
	machine map[string]string   // machine.txt, "key: value" per line
	runs    map[string][]result // by workload + " " + target
	order   []string            // workloads, in the table's order
}

// readSeries reads the JSON results and machine.txt of a directory.
func readSeries(dir string) (*series, error) {
	fsys := os.DirFS(dir)
	names, err := fs.Glob(fsys, "*.json")
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no JSON results", dir)
	}
	s := &series{name: filepath.Base(filepath.Clean(dir)), machine: map[string]string{}, runs: map[string][]result{}}
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		var r result
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
		}
		r.Workload = cmp.Or(r.Workload, "custom")
		k := r.Workload + " " + r.Target
		if !slices.Contains(s.order, r.Workload) {
			s.order = append(s.order, r.Workload)
		}
		s.runs[k] = append(s.runs[k], r)
	}
	slices.SortFunc(s.order, byWorkload)
	s.machine = readMachine(fsys)
	return s, nil
}

// readMachine reads the machine.txt of a results directory, "key: value"
// per line; none gives an empty map.
func readMachine(fsys fs.FS) map[string]string {
	m := map[string]string{}
	if b, err := fs.ReadFile(fsys, "machine.txt"); err == nil {
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ": "); ok {
				m[k] = v
			}
		}
	}
	return m
}

// workloadOrder is the order of the tables: the presets of internal/load,
// then the others by name.
var workloadOrder = []string{"W1", "W1b", "W2", "W3", "W4"}

func byWorkload(a, b string) int {
	rank := func(w string) int {
		if i := slices.Index(workloadOrder, w); i >= 0 {
			return i
		}
		return len(workloadOrder)
	}
	return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a, b))
}

// median is the median of f over the quiet runs, or over all of them when
// none is quiet, as the table computes it.
func median(runs []result, f func(*result) float64) float64 {
	quiet := slices.DeleteFunc(slices.Clone(runs), noisy)
	if len(quiet) == 0 {
		quiet = runs
	}
	v := make([]float64, len(quiet))
	for i := range quiet {
		v[i] = f(&quiet[i])
	}
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

// noisy reports whether something else used more than a tenth of the
// machine's busy CPU, and over half a second, in r's window.
func noisy(r result) bool {
	return r.OtherCPUWindowSeconds > max(r.MachineCPUWindowSeconds/10, 0.5)
}

// metric is one panel of the chart.
type metric struct {
	title        string
	higherBetter bool
	value        func(*result) float64
	// rate marks figures over a window of steady publishing, which say
	// nothing for a run bounded by a number of events (W3).
	rate bool
	// flow marks figures that need the baseline to deliver: a frozen
	// baseline (W4) has none to compare with.
	flow bool
}

// metrics are the panels, in order.
var metrics = []metric{
	{title: "delivered events/s", higherBetter: true, rate: true, flow: true,
		value: func(r *result) float64 { return r.DeliveredPerSec }},
	{title: "server CPU per delivered frame", rate: true, flow: true,
		value: func(r *result) float64 { return r.CPUPerFrameUS }},
	{title: "p99 latency", flow: true,
		value: func(r *result) float64 { return r.Latency.P99 }},
	{title: "connect time",
		value: func(r *result) float64 { return r.ConnectSeconds }},
	{title: "memory per connection, once connected",
		value: func(r *result) float64 { return r.RSSPerConnKiB }},
	{title: "memory per connection, after the window",
		value: func(r *result) float64 { return r.RSSPerConnAfterKiB }},
}

// cell is one bar: a ratio, or a note saying why there is none.
type cell struct {
	ratio float64
	note  string
}

// row is one workload of one series, a cell per metric.
type row struct {
	label string
	cells []cell
}

// rows computes the bridge ÷ baseline ratios of every workload that has
// both targets: the main series' workloads first, each followed by the
// same workload in the other series.
func rows(all []*series) []row {
	type ref struct {
		s        *series
		workload string
		extra    int
	}
	var refs []ref
	for i, s := range all {
		for _, w := range s.order {
			if s.runs[w+" bridge"] != nil && s.runs[w+" baseline"] != nil {
				refs = append(refs, ref{s, w, i})
			}
		}
	}
	slices.SortStableFunc(refs, func(a, b ref) int {
		return cmp.Or(byWorkload(a.workload, b.workload), cmp.Compare(a.extra, b.extra))
	})
	var out []row
	for _, rf := range refs {
		br, bl := rf.s.runs[rf.workload+" bridge"], rf.s.runs[rf.workload+" baseline"]
		label := rf.workload
		if rf.extra > 0 {
			label += " · " + rf.s.name
		}
		events := median(br, func(r *result) float64 { return float64(r.Params.Events) })
		frozen := median(bl, func(r *result) float64 { return r.DeliveredPerSec }) == 0
		r := row{label: label}
		for _, m := range metrics {
			a, b := median(br, m.value), median(bl, m.value)
			var c cell
			switch {
			case m.rate && events > 0:
				c.note = fmt.Sprintf("n/a: %.0f events in all, not a rate", events)
			case m.flow && frozen:
				c.note = "n/a: the baseline froze, delivering nothing"
			case a == 0 || b == 0:
				c.note = "no figure"
			default:
				c.ratio = a / b
			}
			r.cells = append(r.cells, c)
		}
		out = append(out, r)
	}
	return out
}

// describe says where a series comes from, from its machine.txt.
func (s *series) describe() string {
	m := s.machine
	var parts []string
	if c := m["commit"]; len(c) >= 7 {
		parts = append(parts, "commit "+c[:7])
	}
	if t, err := time.Parse(time.RFC3339, m["date"]); err == nil {
		parts = append(parts, t.UTC().Format("2006-01-02 15:04 UTC"))
	}
	n := 0
	for _, runs := range s.runs {
		n = max(n, len(runs))
	}
	parts = append(parts, fmt.Sprintf("%d rounds", n))
	if f := m["bridge flags"]; f != "" && f != "none" {
		parts = append(parts, "bridge "+f)
	}
	return s.name + ": " + strings.Join(parts, ", ")
}

// machineLine describes the benchmark machine from a machine.txt.
func (s *series) machineLine() string {
	m := s.machine
	var parts []string
	if m["nproc"] != "" {
		parts = append(parts, m["nproc"]+" vCPUs "+m["cpu"])
	}
	if m["kernel"] != "" {
		parts = append(parts, m["kernel"])
	}
	if g := strings.TrimPrefix(m["go"], "go version "); g != "" {
		parts = append(parts, g)
	}
	return strings.Join(parts, ", ")
}
