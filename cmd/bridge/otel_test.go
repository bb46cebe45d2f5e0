package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// otlpReceiver is a minimal OTLP/gRPC trace receiver: it keeps every span
// it is sent, with its resource's service.name.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer

	mu    sync.Mutex
	spans []receivedSpan
}

type receivedSpan struct {
	service, name, traceID, parentID string
}

func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		var service string
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, receivedSpan{
					service:  service,
					name:     s.GetName(),
					traceID:  hex.EncodeToString(s.GetTraceId()),
					parentID: hex.EncodeToString(s.GetParentSpanId()),
				})
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) received() []receivedSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedSpan(nil), r.spans...)
}

// startOTLPReceiver serves an otlpReceiver on loopback for the test and
// returns it with its address.
func startOTLPReceiver(t *testing.T) (*otlpReceiver, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{}
	gs := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(gs, r)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() { gs.Stop(); <-done })
	return r, lis.Addr().String()
}

// TestTracingExportsOverOTLP runs the environment path of `bridge serve`
// (startTracing, with the OTEL_* variables set) against a real OTLP/gRPC
// receiver: once the bridge stopped and tracing was shut down, the receiver
// has the publish span, under the publisher's span, and its steps, all of
// service sse-bridge. Not parallel: the SDK reads the process's environment.
func TestTracingExportsOverOTLP(t *testing.T) {
	receiver, addr := startOTLPReceiver(t)
	_, port, _ := net.SplitHostPort(addr)
	for name, value := range map[string]string{
		// No scheme (a URL with http:// would make it insecure by itself):
		// OTEL_EXPORTER_OTLP_INSECURE must be read for this to work.
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "localhost:" + port,
		"OTEL_EXPORTER_OTLP_INSECURE":        "true",
		"OTEL_EXPORTER_OTLP_ENDPOINT":        "",
		"OTEL_EXPORTER_OTLP_PROTOCOL":        "",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "",
		"OTEL_SERVICE_NAME":                  "",
		"OTEL_RESOURCE_ATTRIBUTES":           "",
		"OTEL_SDK_DISABLED":                  "",
		"OTEL_TRACES_EXPORTER":               "",
		"OTEL_TRACES_SAMPLER":                "",
	} {
		t.Setenv(name, value)
	}
	var logs syncBuf
	tp, shutdown, err := startTracing(t.Context(), os.LookupEnv, newTestLogger(&logs))
	if err != nil || tp == nil {
		t.Fatalf("startTracing = %v, %v; want a tracer provider", tp, err)
	}
	if got := logs.String(); !strings.Contains(got, "tracing on") || !strings.Contains(got, "localhost:"+port) || !strings.Contains(got, "service=sse-bridge") {
		t.Errorf("log %q: want tracing on, the endpoint and the service", got)
	}
	grpcAddr, _, stop := startBridge(t, bridge.Config{TracerProvider: tp})

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	ctx := metadata.AppendToOutgoingContext(t.Context(), "traceparent", "00-"+traceID+"-"+parentID+"-01")
	val, _ := structpb.NewValue(map[string]any{"hello": "otlp"})
	if _, err := bridgev1.NewBridgeServiceClient(conn).Publish(ctx, &bridgev1.PublishRequest{Stream: "orders", Payload: &bridgev1.PublishRequest_Json{Json: val}}); err != nil {
		t.Fatalf("Publish = %v", err)
	}
	stop()
	shutdown() // flushes: the batch processor had not exported yet

	names := map[string]bool{}
	for _, s := range receiver.received() {
		if s.traceID != traceID {
			continue
		}
		if s.service != defaultServiceName {
			t.Errorf("span %s of service %q, want %q", s.name, s.service, defaultServiceName)
		}
		if s.name == "bridge.v1.BridgeService/Publish" && s.parentID != parentID {
			t.Errorf("publish span's parent = %s, want the publisher's span %s", s.parentID, parentID)
		}
		names[s.name] = true
	}
	for _, want := range []string{"bridge.v1.BridgeService/Publish", "bridge.validate", "bridge.encode", "bridge.store"} {
		if !names[want] {
			t.Errorf("the receiver has no %s span of the publish's trace; it has %v", want, receiver.received())
		}
	}
}

// TestStartTracingFromEnvironment: when the environment turns tracing on,
// off, or asks for what the bridge cannot do.
func TestStartTracingFromEnvironment(t *testing.T) {
	t.Parallel()
	const endpoint = "OTEL_EXPORTER_OTLP_ENDPOINT"
	for _, tc := range []struct {
		name    string
		env     map[string]string
		log     string // in the log, when off
		wantErr string // the error's start, when refused
	}{
		{name: "nothing set", log: "tracing off: set OTEL_EXPORTER_OTLP_ENDPOINT"},
		{name: "empty endpoint", env: map[string]string{endpoint: " "}, log: "tracing off: set"},
		{name: "SDK disabled", env: map[string]string{endpoint: "localhost:4317", "OTEL_SDK_DISABLED": "TRUE"}, log: "tracing off: OTEL_SDK_DISABLED"},
		{name: "exporter none", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "localhost:4317", "OTEL_TRACES_EXPORTER": "none"}, log: "tracing off: OTEL_TRACES_EXPORTER is none"},
		{name: "endpoint not a URL", env: map[string]string{endpoint: "10.0.0.5:4317"}, wantErr: `OTLP endpoint "10.0.0.5:4317"`},
		{name: "exporter zipkin", env: map[string]string{endpoint: "localhost:4317", "OTEL_TRACES_EXPORTER": "zipkin"}, wantErr: `OTEL_TRACES_EXPORTER="zipkin"`},
		{name: "protocol http", env: map[string]string{endpoint: "localhost:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, wantErr: `OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf"`},
		{name: "traces protocol http", env: map[string]string{endpoint: "localhost:4318", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, wantErr: `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/json"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs syncBuf
			lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			tp, shutdown, err := startTracing(t.Context(), lookup, newTestLogger(&logs))
			if tc.wantErr != "" {
				var exit *exitError
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) || !errors.As(err, &exit) || exit.code != exitCommandLine {
					t.Fatalf("startTracing = %v, want a command line error starting %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || tp != nil {
				t.Fatalf("startTracing = %v, %v; want tracing off", tp, err)
			}
			shutdown()
			if !strings.Contains(logs.String(), tc.log) {
				t.Errorf("log %q, want %q", logs.String(), tc.log)
			}
		})
	}
}

// syncBuf is a log destination safe for concurrent writes.
type syncBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newTestLogger(w *syncBuf) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
