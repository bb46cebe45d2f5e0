package bridge

import (
	"context"
	"strconv"
	"sync"
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
