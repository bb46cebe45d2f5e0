package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sse-bridge/bridge/internal/load"
)

func TestParseFlagsPresetThenOverrides(t *testing.T) {
	t.Parallel()
	o, err := parseFlags([]string{"--rate", "50", "--workload", "w1", "--pid", "7", "--json"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.Workload != "W1" || c.Subscribers != 1000 || c.Rate != 50 || c.PID != 7 || c.Warmup != 2*time.Second || !o.json {
		t.Errorf("--workload w1 --rate 50: got %+v", c)
	}
	o, err = parseFlags([]string{"--workload", "W2", "--label", "W2-q512"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.Workload != "W2-q512" || o.cfg.Rate != 0 || o.cfg.Subscribers != 100 {
		t.Errorf("--workload W2 --label: got %+v", o.cfg)
	}
	o, err = parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.Workload != "" || o.cfg.Rate != 100 || o.cfg.Subscribers != 100 || o.cfg.SourceIPs != nil {
		t.Errorf("no flags: got %+v", o.cfg)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--workload", "W9"},
		{"--subscribers", "many"},
		{"--source-ips", "300"},
		{"--source-ips", "127.0.0.1,nope"},
		{"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) = nil error", args)
		}
	}
	var out bytes.Buffer
	if _, err := parseFlags([]string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "--workload") && !strings.Contains(out.String(), "-workload") {
		t.Errorf("--help: err %v, output %q", err, out.String())
	}
}

func TestParseSourceIPs(t *testing.T) {
	t.Parallel()
	ips, err := parseSourceIPs("3")
	if err != nil || len(ips) != 3 || ips[2] != netip.MustParseAddr("127.0.0.3") {
		t.Errorf("parseSourceIPs(3) = %v, %v", ips, err)
	}
	ips, err = parseSourceIPs("127.0.0.9, 127.0.1.1")
	if err != nil || len(ips) != 2 || ips[1] != netip.MustParseAddr("127.0.1.1") {
		t.Errorf("parseSourceIPs(list) = %v, %v", ips, err)
	}
	if ips, err := parseSourceIPs("auto"); ips != nil || err != nil {
		t.Errorf("parseSourceIPs(auto) = %v, %v", ips, err)
	}
}

func TestReport(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for i, r := range []load.Result{
		{Workload: "W1", Target: load.TargetBridge, DeliveredPerSec: 3},
		{Workload: "W1", Target: load.TargetBaseline, DeliveredPerSec: 2},
	} {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, string(rune('a'+i))+".json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if err := run(t.Context(), append([]string{"report"}, files...), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "| W1 | **bridge/baseline** | | - | **1.50** |") {
		t.Errorf("report:\n%s", out.String())
	}
	if err := run(t.Context(), []string{"report"}, &out, io.Discard); err == nil {
		t.Error("report without files = nil error")
	}
}
