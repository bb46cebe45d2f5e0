package bridge_test

import (
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// BenchmarkPublish measures a Publish call over loopback gRPC to a bridge
// with the memory engine and no subscriber: the client's and the server's
// codec, the interceptors, validation, encoding and the engine, the whole
// path a publisher waits for. serial is one call at a time (ns/op is its
// latency); parallel keeps GOMAXPROCS callers busy.
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
}
