package bridge

import (
	"context"
	"math"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"
)

// The garbage collector lets the heap grow to (1 + GOGC/100) times what is
// live before it collects: three times at the bridge's GOGC=200. That
// headroom is what makes collections rare while connections come and go
// and frames are built, but history is different: the memory engine keeps
// up to --history-memory of it for an hour, and tripling it buys nothing.
// With the default budget full, the process would peak near 760 MiB.
//
// So, with the memory engine and no GOMEMLIMIT of the operator's, the
// bridge keeps Go's soft memory limit at what GOGC would give everything
// but history, plus history once, plus some slack:
//
//	limit = other memory + history + (live heap − history) × GOGC/100 + slack
//
// where other memory is what the runtime holds besides the heap (stacks,
// its own structures) and slack is memTuneSlack or half of history, the
// larger: the room a collection cycle needs, so that a heap full of
// history is not collected after every few allocations. A tighter limit
// set before (from a container's cgroup, see cmd/bridge) stays the
// ceiling. It is re-read every memTuneInterval: a limit set from a stale
// reading is only ever too high (GOGC's own goal then decides) or, right
// after history shrank, too low for one interval, which costs one extra
// collection, never an error: the limit is soft.

// memTuneInterval is how often the limit follows history and the heap.
const memTuneInterval = 250 * time.Millisecond

// memTuneSlack is the least room above what is live that the limit leaves.
const memTuneSlack = 64 << 20

// memTuneSamples are the runtime/metrics the tuner reads, in this order.
var memTuneSamples = [...]string{
	"/gc/heap/live:bytes",
	"/gc/gogc:percent",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/released:bytes",
}

// tuneMemoryLimit keeps Go's memory limit as the comment above says, under
// the limit in force when it starts, until ctx ends; then it puts that
// limit back. history reports the bytes history holds now.
func tuneMemoryLimit(ctx context.Context, history func() int64) {
	ceiling := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(ceiling)
	samples := make([]rtmetrics.Sample, len(memTuneSamples))
	for i, name := range memTuneSamples {
		samples[i].Name = name
	}
	t := time.NewTicker(memTuneInterval)
	defer t.Stop()
	for {
		rtmetrics.Read(samples)
		debug.SetMemoryLimit(memoryLimitFor(samples, history(), ceiling))
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// memoryLimitFor computes the limit from samples (memTuneSamples, read),
// the bytes of history and the ceiling.
func memoryLimitFor(samples []rtmetrics.Sample, history, ceiling int64) int64 {
	value := func(i int) int64 {
		if samples[i].Value.Kind() != rtmetrics.KindUint64 {
			return 0
		}
		return int64(min(samples[i].Value.Uint64(), math.MaxInt64))
	}
	live, gogc := value(0), value(1)
	if gogc <= 0 {
		return ceiling // GOGC=off: the operator manages memory
	}
	heap := value(3) + value(4) + value(5) + value(6)
	nonHeap := max(value(2)-heap, 0)
	history = min(max(history, 0), live)
	other := live - history
	limit := nonHeap + history + other + other/100*gogc + max(memTuneSlack, history/4)
	return min(limit, ceiling)
}
