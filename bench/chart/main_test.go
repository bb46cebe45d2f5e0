package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// generateArgs returns the output file and the series that main.go's
// generate directive names, relative to this directory.
func generateArgs(t *testing.T) (string, []string) {
	t.Helper()
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(src)) {
		rest, ok := strings.CutPrefix(line, "//go:generate go run . -o ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 2 {
			t.Fatalf("go:generate line without series: %q", line)
		}
		return f[0], f[1:]
	}
	t.Fatal("main.go has no go:generate line")
	return "", nil
}

// texts returns the character data of every text element, failing the
// test if svg is not well-formed XML.
func texts(t *testing.T, svg []byte) []string {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(svg))
	var out []string
	inText := false
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			inText = tok.Name.Local == "text"
		case xml.EndElement:
			inText = false
		case xml.CharData:
			if inText {
				out = append(out, string(tok))
			}
		}
	}
}

func TestChartOfReferenceSeries(t *testing.T) {
	t.Parallel()
	svg, err := chart([]string{"../reference/6ec5482"})
	if err != nil {
		t.Fatal(err)
	}
	got := texts(t, svg)
	for _, w := range []string{"W1", "W1b", "W2", "W3", "W4", "W1-r50"} {
		if !slices.Contains(got, w) {
			t.Errorf("no row labelled %q in the chart", w)
		}
	}
	for _, m := range metrics {
		if !slices.Contains(got, m.title) {
			t.Errorf("no panel titled %q in the chart", m.title)
		}
	}
	again, err := chart([]string{"../reference/6ec5482"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(svg, again) {
		t.Error("two charts of the same series differ")
	}
}

// tableColumns are the columns of table.md that hold each metric's ratio.
var tableColumns = []string{"delivered/s", "server CPU µs/frame", "p99 ms", "connect s", "RSS KiB/conn", "RSS KiB/conn after"}

// TestRatiosMatchTables checks every bar against the bridge/baseline row
// of its series' table.md, which cmd/bridge-load report wrote from the same
// JSON results.
func TestRatiosMatchTables(t *testing.T) {
	t.Parallel()
	if len(tableColumns) != len(metrics) {
		t.Fatalf("%d table columns for %d metrics", len(tableColumns), len(metrics))
	}
	_, dirs := generateArgs(t)
	for _, dir := range dirs {
		s, err := readSeries(dir)
		if err != nil {
			t.Fatal(err)
		}
		table := readTable(t, filepath.Join(dir, "table.md"))
		for _, r := range rows([]*series{s}) {
			want, ok := table[r.label]
			if !ok {
				t.Errorf("%s: no bridge/baseline row for %s in table.md", dir, r.label)
				continue
			}
			for i, c := range r.cells {
				if c.note != "" {
					continue
				}
				if got := fmt.Sprintf("**%.2f**", c.ratio); got != want[tableColumns[i]] {
					t.Errorf("%s %s %s: chart %s, table.md %s", dir, r.label, tableColumns[i], got, want[tableColumns[i]])
				}
			}
		}
	}
}

// readTable returns the bridge/baseline rows of a table.md by workload,
// each cell by its column's header.
func readTable(t *testing.T, path string) map[string]map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cells := func(line string) []string {
		f := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		return f
	}
	lines := strings.Split(string(b), "\n")
	header := cells(lines[0])
	out := map[string]map[string]string{}
	for _, line := range lines[1:] {
		f := cells(line)
		if len(f) != len(header) || f[1] != "**bridge/baseline**" {
			continue
		}
		out[f[0]] = map[string]string{}
		for i, h := range header {
			out[f[0]][h] = f[i]
		}
	}
	return out
}

// TestCommittedChartIsFresh checks that the committed chart is what
// go generate ./bench/chart draws now.
func TestCommittedChartIsFresh(t *testing.T) {
	t.Parallel()
	out, dirs := generateArgs(t)
	svg, err := chart(dirs)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(svg, committed) {
		t.Errorf("%s is stale: run go generate ./bench/chart", out)
	}
	texts(t, committed)
}

func TestNoResults(t *testing.T) {
	t.Parallel()
	if _, err := chart([]string{t.TempDir()}); err == nil {
		t.Error("chart of a directory without results: no error")
	}
}

func TestSoakChart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	csv := "minutes,rss_kib,open_files,goroutines,heap_inuse_bytes,heap_alloc_bytes,connections,evictions,published,connects,events\n"
	for m := 1; m <= 6; m++ {
		// Goroutines leak 100 a minute; the rest is steady.
		csv += fmt.Sprintf("%d.000,90000,300,%d,40000000,25000000,300,%d,%d,%d,%d\n", m, 900+100*m, 10*m, 1000*m, 100*m, 10000*m)
	}
	path := filepath.Join(dir, "soak.csv")
	if err := os.WriteFile(path, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	svg, err := soakChart(path, 2, 10)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(texts(t, svg), "\n")
	for _, want := range []string{"FAIL: a resource trends up", "goroutines: +100.00/min", "trends up", "RSS: +0.00 MiB/min", "open files"} {
		if !strings.Contains(got, want) {
			t.Errorf("the soak chart says nothing of %q:\n%s", want, got)
		}
	}
	if _, err := soakChart(filepath.Join(dir, "none.csv"), 2, 10); err == nil {
		t.Error("soak chart of a missing file: no error")
	}
}

// TestCommittedSoakChartIsFresh checks that the committed soak chart is
// what the soak directive of main.go draws now.
func TestCommittedSoakChartIsFresh(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(src)) {
		rest, ok := strings.CutPrefix(line, "//go:generate go run . -soak ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		// CSV -warmup D -max-growth P -o OUT
		if len(f) != 7 || f[1] != "-warmup" || f[3] != "-max-growth" || f[5] != "-o" {
			t.Fatalf("soak directive %q: want -soak CSV -warmup D -max-growth P -o OUT", line)
		}
		warmup, err := time.ParseDuration(f[2])
		if err != nil {
			t.Fatal(err)
		}
		growth, err := strconv.ParseFloat(f[4], 64)
		if err != nil {
			t.Fatal(err)
		}
		svg, err := soakChart(f[0], warmup.Minutes(), growth)
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(f[6])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(svg, committed) {
			t.Errorf("%s is stale: run go generate ./bench/chart", f[6])
		}
		return
	}
	t.Fatal("main.go has no soak directive")
}
