package load

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestPresets(t *testing.T) {
	t.Parallel()
	// The numbers BENCHMARKS.md documents for each workload.
	tests := []struct {
		name                           string
		subs, streams, stalled, events int
		rate                           float64
		payload                        int
	}{
		{"W1", 1000, 1, 0, 0, 1000, 128},
		{"w1b", 1000, 1, 0, 0, 200, 128},
		{"W2", 100, 1, 0, 0, 0, 128},
		{"W3", 10_000, 100, 0, 100, 0, 128},
		{"W4", 1000, 1, 1, 0, 1000, 2048},
		{"W5", 1, 1, 2000, 0, 200, 4096},
	}
	for _, tt := range tests {
		c, ok := Preset(tt.name)
		if !ok {
			t.Fatalf("Preset(%q) unknown", tt.name)
		}
		if c.Subscribers != tt.subs || c.Streams != tt.streams || c.Stalled != tt.stalled ||
			c.Events != tt.events || c.Rate != tt.rate || c.PayloadSize != tt.payload {
			t.Errorf("Preset(%q) = %+v", tt.name, c)
		}
		if !strings.EqualFold(c.Workload, tt.name) {
			t.Errorf("Preset(%q).Workload = %q", tt.name, c.Workload)
		}
		if bound := c.Warmup + c.Duration; bound > 15*time.Second {
			t.Errorf("Preset(%q) publishes for %v: a run must stay well under a minute", tt.name, bound)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("Preset(%q).Validate() = %v", tt.name, err)
		}
	}
	if _, ok := Preset("W9"); ok {
		t.Error("Preset(W9) = ok")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	c := Config{Subscribers: 4999}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.SourceIPs) != 3 || c.SourceIPs[2] != netip.MustParseAddr("127.0.0.3") {
		t.Errorf("4,999 connections: source addresses %v, want 127.0.0.1 to 127.0.0.3", c.SourceIPs)
	}
	bad := Config{Target: "nginx", URL: "https://x", Rate: -1, SourceIPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}
	err := bad.Validate()
	for _, want := range []string{"target", "http://", "negative", "127.0.0.0/8"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
}

func TestWriteComparison(t *testing.T) {
	t.Parallel()
	br := &Result{Workload: "W1", Target: TargetBridge, DeliveredPerSec: 200, CPUPerFrameUS: 3, Latency: Quantiles{P50: 1, P99: 4, Max: 9}}
	// Two baseline runs: the figures are their medians. A third one was
	// noisy: left out.
	bl1 := &Result{Workload: "W1", Target: TargetBaseline, DeliveredPerSec: 90, CPUPerFrameUS: 5, Latency: Quantiles{P50: 2, P99: 2, Max: 3}}
	bl2 := &Result{Workload: "W1", Target: TargetBaseline, DeliveredPerSec: 110, CPUPerFrameUS: 3, Latency: Quantiles{P50: 2, P99: 2, Max: 3}}
	bl3 := &Result{Workload: "W1", Target: TargetBaseline, DeliveredPerSec: 10, MachineCPUWindowSeconds: 20, OtherCPUWindowSeconds: 5}
	w3 := &Result{Workload: "W3", Target: TargetBridge, RSSPerConnKiB: 30, Stalled: &StalledResult{Subscribers: 1, ClosedByServer: 1}}
	var out bytes.Buffer
	if err := WriteComparison(&out, []*Result{w3, bl1, br, bl3, bl2}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 6 {
		t.Fatalf("got %d lines, want header, rule, W1 bridge, W1 baseline, W1 ratios, W3:\n%s", len(lines), out.String())
	}
	for i, want := range []string{
		"| W1 | bridge | 1 | 0 | 200 | 3.00 | - |",
		"| W1 | baseline | 2 (+1 noisy) | 0 | 100 | 4.00 | - |",
		"| W1 | **bridge/baseline** | | - | **2.00** | **0.75** | - | **0.50** | **2.00** | **3.00** |",
		"| W3 | bridge | 1 |",
	} {
		if !strings.HasPrefix(lines[i+2], want) {
			t.Errorf("line %d = %q, want it to start with %q", i+2, lines[i+2], want)
		}
	}
	if !strings.HasSuffix(lines[5], "| 1/1 | 0.0 |") {
		t.Errorf("W3 row %q: want the stalled client closed", lines[5])
	}
}

// TestWriteComparisonVariant: a bridge-only variant of a workload (W6-batch)
// is compared with the baseline's run of the workload itself.
func TestWriteComparisonVariant(t *testing.T) {
	t.Parallel()
	unary := &Result{Workload: "W6", Target: TargetBridge, PublishedPerSec: 300, CPUPerPublishedUS: 20}
	batch := &Result{Workload: "W6-batch", Target: TargetBridge, PublishedPerSec: 900, CPUPerPublishedUS: 10}
	bl := &Result{Workload: "W6", Target: TargetBaseline, PublishedPerSec: 450, CPUPerPublishedUS: 40}
	var out bytes.Buffer
	if err := WriteComparison(&out, []*Result{batch, bl, unary}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		"| W6 | bridge | 1 | 300 | 0 | - | 20.00 |",
		"| W6 | baseline | 1 | 450 | 0 | - | 40.00 |",
		"| W6 | **bridge/baseline** | | **0.67** | - | - | **0.50** |",
		"| W6-batch | bridge | 1 | 900 | 0 | - | 10.00 |",
		"| W6-batch | **bridge/baseline W6** | | **2.00** | - | - | **0.25** |",
	}
	if len(lines) != len(want)+2 {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want)+2, out.String())
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i+2], w) {
			t.Errorf("line %d = %q, want it to start with %q", i+2, lines[i+2], w)
		}
	}
}
