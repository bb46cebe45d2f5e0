package bridge_test

import (
	"runtime"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// BenchmarkPublish measures a Publish call over loopback gRPC to a bridge
// with the memory engine and no subscriber: the client's and the server's
// codec, the interceptors, validation, encoding and the engine, the whole
// path a publisher waits for. serial is one call at a time (ns/op is its
// latency); parallel keeps GOMAXPROCS callers busy; callers=16 keeps 16
// busy, as W6 (bench/run.sh) does: calls then overlap on the server as
// they do under load.
//
//	go test -run '^$' -bench '^BenchmarkPublish$' -benchmem ./internal/bridge
func BenchmarkPublish(b *testing.B) {
	tb := startBridge(b, bridge.Config{ConnectRate: -1})
	val, err := structpb.NewValue(map[string]any{"orderId": "o-1", "total": 1250.0, "tags": []any{"a", "b"}})
	if err != nil {
		b.Fatal(err)
	}
	req := &bridgev1.PublishRequest{Stream: "orders", Payload: &bridgev1.PublishRequest_Json{Json: val}}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := tb.client.Publish(b.Context(), req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := tb.client.Publish(b.Context(), req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("callers=16", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(max(16/runtime.GOMAXPROCS(0), 1))
		cpu0, cpuOK := processCPU()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := tb.client.Publish(b.Context(), req); err != nil {
					b.Error(err)
					return
				}
			}
		})
		// CPU time per call, client and server: on a shared machine a
		// steadier figure than the wall time of ns/op.
		if cpu1, ok := processCPU(); ok && cpuOK {
			b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
		}
	})
}

// benchEvent is the event the publish benchmarks send.
func benchEvent(b *testing.B) *bridgev1.PublishRequest {
	b.Helper()
	val, err := structpb.NewValue(map[string]any{"orderId": "o-1", "total": 1250.0, "tags": []any{"a", "b"}})
	if err != nil {
		b.Fatal(err)
	}
	return &bridgev1.PublishRequest{Stream: "orders", Payload: &bridgev1.PublishRequest_Json{Json: val}}
}

// BenchmarkPublishBatch measures PublishBatch calls of 100 events over
// loopback gRPC, as BenchmarkPublish does for Publish; ns/event is the
// figure to compare with its ns/op.
//
//	go test -run '^$' -bench '^BenchmarkPublish(Batch|Stream)?$' -benchmem ./internal/bridge
func BenchmarkPublishBatch(b *testing.B) {
	tb := startBridge(b, bridge.Config{ConnectRate: -1})
	const size = 100
	req := &bridgev1.PublishBatchRequest{Events: make([]*bridgev1.PublishRequest, size)}
	for i := range req.Events {
		req.Events[i] = benchEvent(b)
	}
	b.ReportAllocs()
	for b.Loop() {
		res, err := tb.client.PublishBatch(b.Context(), req)
		if err != nil {
			b.Fatal(err)
		}
		if r := res.GetResults()[size-1]; r.GetStatus() != nil {
			b.Fatal(r)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/event")
}

// BenchmarkPublishStream measures events sent on one PublishStream, a
// sender and a receiver at full speed: ns/op is per event.
func BenchmarkPublishStream(b *testing.B) {
	tb := startBridge(b, bridge.Config{ConnectRate: -1})
	req := benchEvent(b)
	s, err := tb.client.PublishStream(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	sendErr := make(chan error, 1)
	go func() { // ends after b.N sends, or the first that fails
		for range b.N {
			if err := s.Send(req); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- nil
	}()
	for range b.N {
		r, err := s.Recv()
		if err != nil {
			b.Fatal(err)
		}
		if r.GetStatus() != nil {
			b.Fatal(r)
		}
	}
	b.StopTimer()
	if err := <-sendErr; err != nil {
		b.Fatal(err)
	}
	_ = s.CloseSend()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
}
