package load

import (
	"bytes"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// flat returns n samples a minute apart with every resource at v, and the
// heap at heap bytes.
func flat(n int, rss, heap, goroutines, files int64) []SoakSample {
	var out []SoakSample
	for i := range n {
		out = append(out, SoakSample{Minutes: float64(i + 1), RSSKiB: rss, HeapInuse: heap, HeapAlloc: heap, Goroutines: goroutines, OpenFiles: files})
	}
	return out
}

func TestJudge(t *testing.T) {
	t.Parallel()
	fails := func(trends []Trend) []string {
		var out []string
		for _, tr := range trends {
			if tr.Fail {
				out = append(out, tr.Name)
			}
		}
		return out
	}
	// Steady: passes.
	s := flat(10, 100<<10, 50<<20, 800, 400)
	if trends, pass := Judge(s, 2, 10); !pass || len(fails(trends)) > 0 {
		t.Errorf("steady resources: pass %v, failing %v", pass, fails(trends))
	}
	// A goroutine leak of 30 a minute: fails on goroutines only.
	leak := flat(10, 100<<10, 50<<20, 800, 400)
	for i := range leak {
		leak[i].Goroutines += int64(30 * i)
	}
	if trends, pass := Judge(leak, 2, 10); pass || !slices.Equal(fails(trends), []string{"goroutines"}) {
		t.Errorf("goroutines +30/min: pass %v, failing %v; want goroutines", pass, fails(trends))
	}
	// Growth in the warm-up only: passes.
	warm := flat(10, 100<<10, 50<<20, 800, 400)
	// Minutes 1 and 2: the sample taken at the end of the warm-up is the
	// warm-up's.
	warm[0].RSSKiB, warm[1].RSSKiB = 10<<10, 50<<10
	if trends, pass := Judge(warm, 2, 10); !pass {
		t.Errorf("growth during the warm-up: pass %v, failing %v", pass, fails(trends))
	}
	// Growth under the floor (a few goroutines on a small count): passes.
	small := flat(10, 100<<10, 50<<20, 40, 30)
	for i := range small {
		small[i].Goroutines += int64(2 * i)
	}
	if trends, pass := Judge(small, 2, 10); !pass {
		t.Errorf("goroutines +2/min from 40: pass %v, failing %v; want a pass (under the floor)", pass, fails(trends))
	}
	// Growth over the floor but not over MaxGrowth percent: passes.
	big := flat(10, 4<<20, 50<<20, 800, 400) // 4 GiB RSS
	for i := range big {
		big[i].RSSKiB += int64(i) << 10 // +1 MiB a minute
	}
	if trends, pass := Judge(big, 2, 10); !pass {
		t.Errorf("RSS +1 MiB/min of 4 GiB: pass %v, failing %v", pass, fails(trends))
	}
	// Too few samples after the warm-up: no verdict, no pass.
	if _, pass := Judge(flat(4, 1, 1, 1, 1), 2, 10); pass {
		t.Error("2 samples after the warm-up: pass")
	}
}

func TestSoakCSVRoundTrip(t *testing.T) {
	t.Parallel()
	in := []SoakSample{
		{Minutes: 1, RSSKiB: 1, OpenFiles: 2, Goroutines: 3, HeapInuse: 4, HeapAlloc: 5, Connections: 6, Evictions: 7, Published: 8, Connects: 9, Events: 10},
		{Minutes: 2.5, RSSKiB: 11, OpenFiles: 12, Goroutines: 13, HeapInuse: 14, HeapAlloc: 15, Connections: 16, Evictions: 17, Published: 18, Connects: 19, Events: 20},
	}
	var b strings.Builder
	b.WriteString(soakColumns + "\n")
	for _, s := range in {
		b.WriteString(s.csv() + "\n")
	}
	out, err := ParseSoakCSV(strings.NewReader(b.String()))
	if err != nil || !slices.Equal(in, out) {
		t.Errorf("ParseSoakCSV = %+v, %v; want %+v", out, err, in)
	}
	if _, err := ParseSoakCSV(strings.NewReader("a,b\n1,2\n")); err == nil {
		t.Error("ParseSoakCSV of another CSV: no error")
	}
}

// TestRunSoak: a short soak against a bridge in this process takes a
// sample per interval, writes them as CSV, and its clients connect, read,
// resume and get evicted.
func TestRunSoak(t *testing.T) {
	t.Parallel()
	url, grpcAddr := startBridge(t)
	var out, csv bytes.Buffer
	cfg := SoakConfig{
		URL: url, GRPCAddr: grpcAddr, PID: os.Getpid(),
		Duration: 2 * time.Second, Interval: 250 * time.Millisecond, Warmup: 500 * time.Millisecond,
		Streams: 3, Rate: 100, HotRate: 50, Readers: 4, Churners: 4, Slow: 2, Out: &out,
	}
	res, err := RunSoak(t.Context(), cfg, &csv)
	if err != nil {
		t.Fatalf("RunSoak() = %v", err)
	}
	if len(res.Samples) != 8 || len(res.Trends) != len(soakSeries) {
		t.Fatalf("%d samples, %d trends; want 8, %d", len(res.Samples), len(res.Trends), len(soakSeries))
	}
	back, err := ParseSoakCSV(&csv)
	if err != nil || len(back) != len(res.Samples) {
		t.Fatalf("the CSV holds %d samples, %v; want %d", len(back), err, len(res.Samples))
	}
	for i, s := range res.Samples {
		if math.Abs(back[i].Minutes-s.Minutes) > 0.001 {
			t.Errorf("CSV row %d: minutes %v, want %v", i, back[i].Minutes, s.Minutes)
		}
		back[i].Minutes = s.Minutes
		if back[i] != s {
			t.Errorf("CSV row %d: %+v, want %+v", i, back[i], s)
		}
	}
	last := res.Samples[len(res.Samples)-1]
	if last.Goroutines <= 0 || last.HeapInuse <= 0 || last.RSSKiB <= 0 || last.OpenFiles <= 0 || last.Published <= 0 {
		t.Errorf("last sample %+v: want every resource read", last)
	}
	if res.Connects < int64(cfg.Readers+cfg.Churners+cfg.Slow) || res.Events == 0 || res.PublishErrors != 0 {
		t.Errorf("clients: %d connects, %d events, %d publish errors", res.Connects, res.Events, res.PublishErrors)
	}
	if !strings.Contains(out.String(), "goroutines") || !strings.Contains(out.String(), "PASS") && !strings.Contains(out.String(), "FAIL") {
		t.Errorf("output %q: want a line per sample and a verdict", out.String())
	}
}
