package bridge

import (
	"context"
	"testing"

	"google.golang.org/grpc"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// BenchmarkUnaryMetrics measures what the metrics interceptor adds to a
// unary call: timing it and counting it by method and code.
func BenchmarkUnaryMetrics(b *testing.B) {
	m := newMetrics(nil, nil) // the hub and engine are read only at scrape time
	info := &grpc.UnaryServerInfo{FullMethod: bridgev1.BridgeService_Publish_FullMethodName}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	b.ReportAllocs()
	for b.Loop() {
		_, _ = m.unaryInterceptor(context.Background(), nil, info, handler)
	}
}
