package bridge

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// BenchmarkTracedFanOut is BenchmarkFanOut/conns=1000/inflight=32 with
// tracing on and every event in a sampled trace: a delivery span per event,
// batched to an exporter that drops them. Compare the two to see what
// tracing costs fan-out (off, it costs nothing: BenchmarkFanOut).
func BenchmarkTracedFanOut(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	f := newBenchFixture(b, 1024, func(h *hub) { h.tracer = newTracing(tp, EngineMemory).delivery() })
	benchFanOut(b, f, 1000, 32, &EventTrace{Parent: testTraceparent})
}
