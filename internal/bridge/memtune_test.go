package bridge

import (
	"context"
	"math"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"testing"
)

// tunerSamples reads the tuner's metrics of this process.
func tunerSamples(t *testing.T) []rtmetrics.Sample {
	t.Helper()
	s := make([]rtmetrics.Sample, len(memTuneSamples))
	for i, name := range memTuneSamples {
		s[i].Name = name
	}
	rtmetrics.Read(s)
	for i := range s {
		if s[i].Value.Kind() != rtmetrics.KindUint64 {
			t.Fatalf("%s: kind %v: the runtime no longer has this metric", s[i].Name, s[i].Value.Kind())
		}
	}
	return s
}

func TestMemoryLimitFor(t *testing.T) {
	s := tunerSamples(t)
	value := func(i int) int64 { return int64(s[i].Value.Uint64()) }
	live, gogc := value(0), value(1)
	if gogc <= 0 {
		t.Skip("GOGC is off in this process")
	}
	nonHeap := value(2) - (value(3) + value(4) + value(5) + value(6))
	noCeiling := int64(math.MaxInt64)

	// No history: what GOGC gives the live heap, plus the slack.
	if got, want := memoryLimitFor(s, 0, noCeiling), nonHeap+live+live/100*gogc+memTuneSlack; got != want {
		t.Errorf("no history: limit %d, want %d", got, want)
	}
	// All of the live heap is history: history once, and a quarter of it
	// as slack (at least memTuneSlack), nothing multiplied by GOGC.
	if got, want := memoryLimitFor(s, live, noCeiling), nonHeap+live+max(memTuneSlack, live/4); got != want {
		t.Errorf("all history: limit %d, want %d", got, want)
	}
	// History counted above the live heap (its count runs ahead of a
	// collection) is capped at the live heap.
	if got, want := memoryLimitFor(s, 10*live, noCeiling), memoryLimitFor(s, live, noCeiling); got != want {
		t.Errorf("history over live: limit %d, want %d", got, want)
	}
	// A ceiling (a cgroup's) always wins.
	if got := memoryLimitFor(s, 0, 1<<20); got != 1<<20 {
		t.Errorf("ceiling 1 MiB: limit %d", got)
	}
}

func TestTuneMemoryLimitRestoresTheLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	if before != math.MaxInt64 {
		t.Skip("a memory limit is set (GOMEMLIMIT): the tuner's would be the same")
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tuneMemoryLimit(ctx, func() int64 { return 0 })
	}()
	waitFor(t, "the tuner to set a limit", func() bool { return debug.SetMemoryLimit(-1) != before })
	cancel()
	<-done
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("limit after the tuner stopped = %d, want %d as before", got, before)
	}
}
