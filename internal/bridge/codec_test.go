package bridge

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// statusCodec is grpc-go's proto codec whose Unmarshal always fails with an
// INVALID_ARGUMENT status.
type statusCodec struct{ encoding.CodecV2 }

func (statusCodec) Unmarshal(mem.BufferSlice, any) error {
	return status.Error(codes.InvalidArgument, "the codec's own status")
}

// TestGRPCMakesCodecErrorsInternal pins the grpc-go behaviour codec.go works
// around: a status error from the server codec's Unmarshal reaches the
// client as INTERNAL, and no interceptor runs. When this fails, grpc-go
// passes a codec's status through, and requestCodec could return its
// status instead of marking the message.
func TestGRPCMakesCodecErrorsInternal(t *testing.T) {
	t.Parallel()
	var intercepted atomic.Int32
	gs := grpc.NewServer(
		grpc.ForceServerCodecV2(statusCodec{newRequestCodec().CodecV2}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			intercepted.Add(1)
			return handler(ctx, req)
		}),
	)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { // ends with Stop, below
		defer close(served)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-served
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if st := status.Convert(err); st.Code() != codes.Internal || intercepted.Load() != 0 {
		t.Fatalf("Check with a codec failing with INVALID_ARGUMENT = %v %q, %d interceptor calls; want %v and none",
			st.Code(), st.Message(), intercepted.Load(), codes.Internal)
	}
}

// BenchmarkRequestCodec compares decoding a typical Publish request with
// grpc-go's proto codec and with requestCodec, which decodes it with
// payload.DecodeRequest and renders its data on the way (the "bridge"
// figure includes what the encoder later does no more).
func BenchmarkRequestCodec(b *testing.B) {
	val, err := structpb.NewValue(map[string]any{"orderId": "o-1", "total": 1250.0, "tags": []any{"a", "b"}})
	if err != nil {
		b.Fatal(err)
	}
	raw, err := proto.Marshal(&bridgev1.PublishRequest{Stream: "orders", Payload: &bridgev1.PublishRequest_Json{Json: val}})
	if err != nil {
		b.Fatal(err)
	}
	data := mem.BufferSlice{mem.SliceBuffer(raw)}
	for _, bc := range []struct {
		name  string
		codec encoding.CodecV2
	}{{"grpc", newRequestCodec().CodecV2}, {"bridge", newRequestCodec()}} {
		b.Run("unmarshal/"+bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var req bridgev1.PublishRequest
				if err := bc.codec.Unmarshal(data, &req); err != nil {
					b.Fatal(err)
				}
			}
		})
		req := &bridgev1.PublishResponse{Id: 1795633221073629}
		b.Run("marshal/"+bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				out, err := bc.codec.Marshal(req)
				if err != nil {
					b.Fatal(err)
				}
				out.Free()
			}
		})
	}
}
