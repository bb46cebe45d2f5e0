package bridge

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkEnginePublish measures the memory engine's Publish alone, the
// part of a publish the engine's lock serializes: one busy stream at its
// history size (every publish trims one event), and 10,000 streams at
// theirs, published round-robin (every publish trims the oldest event of a
// stream, which is then the oldest of all). A dispatcher with nothing to
// deliver to drains the queue.
//
//	go test -run '^$' -bench '^BenchmarkEnginePublish$' -benchmem ./internal/bridge
func BenchmarkEnginePublish(b *testing.B) {
	for _, bc := range []struct {
		streams, size int
	}{
		{streams: 1, size: 1000},
		{streams: 10_000, size: 16},
	} {
		b.Run("streams="+strconv.Itoa(bc.streams), func(b *testing.B) {
			e := NewMemoryEngine(bc.size, time.Hour)
			ctx, cancel := context.WithCancel(b.Context())
			var wg sync.WaitGroup
			wg.Go(func() { _ = e.Run(ctx, func([]*Event) {}) })
			defer func() { cancel(); wg.Wait() }()
			names := make([]string, bc.streams)
			for i := range names {
				names[i] = "user-" + strconv.Itoa(i)
			}
			data := []byte(`{"orderId":"o-1","total":{"currency":"EUR","amountMinor":"1250"}}`)
			i := 0
			publish := func() {
				if _, err := e.Publish(ctx, &Event{Stream: names[i%len(names)], Data: data}); err != nil {
					b.Fatal(err)
				}
				i++
			}
			for range bc.streams * bc.size { // every stream at its size
				publish()
			}
			b.ReportAllocs()
			for b.Loop() {
				publish()
			}
		})
	}
}

// BenchmarkHistoryBudget is the load check of --history-memory: it
// publishes 1 GiB of 4 KiB events (262,144 of them) round robin over 100,000
// streams through a memory engine with every default (--history-size 1000,
// --history-age 1h, --history-memory 256 MiB: neither count nor age ever
// binds here), fanned out as to one subscriber per stream in the data format
// (which builds each event's frame, as fan-out does), and reports, after a
// collection, the Go heap in use (heap-MiB, with fragmentation) and live
// (live-MiB) less what they were before, what the engine counts
// (counted-MiB) and the events and streams it holds, and the process's RSS
// (rss-MiB: what the collector let the heap grow to, given back lazily;
// GOGC and GOMEMLIMIT set it). It allocates 1 GiB and takes seconds: run it alone, once:
//
//	go test -run '^$' -bench '^BenchmarkHistoryBudget$' -benchtime 1x ./internal/bridge
func BenchmarkHistoryBudget(b *testing.B) {
	const (
		total   = 1 << 30
		size    = 4 << 10
		streams = 100_000
	)
	names := make([]string, streams)
	for i := range names {
		names[i] = "user-" + strconv.Itoa(i)
	}
	pattern := []byte(`{"orderId":"o-1","note":"` + strings.Repeat("x", size) + `"}`)[:size]
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		e := NewMemoryEngine(0, 0)
		ctx, cancel := context.WithCancel(b.Context())
		var delivered atomic.Int64
		var wg sync.WaitGroup
		wg.Go(func() {
			_ = e.Run(ctx, func(batch []*Event) {
				for _, ev := range batch {
					ev.frame(FormatData, defaultCloudEvents)
				}
				delivered.Add(int64(len(batch)))
			})
		})
		n := int64(total / size)
		for i := range n {
			data := make([]byte, size) // each event's own, as the encoder makes it
			copy(data, pattern)
			if _, err := e.Publish(ctx, &Event{Stream: names[i%streams], Data: data}); err != nil {
				b.Fatal(err)
			}
		}
		for delivered.Load() < n { // the last batch's frames, before measuring
			runtime.Gosched()
		}
		cancel()
		wg.Wait()
		runtime.GC()
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		const mib = 1 << 20
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/mib, "heap-MiB")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/mib, "live-MiB")
		hs := e.HistoryStats()
		b.ReportMetric(float64(hs.Bytes)/mib, "counted-MiB")
		b.ReportMetric(float64(hs.Events), "events")
		b.ReportMetric(float64(hs.Streams), "streams")
		b.ReportMetric(float64(rss())/mib, "rss-MiB")
		runtime.KeepAlive(e)
	}
}

// rss returns the process's resident set size, 0 where /proc does not tell.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}
