package bridge

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/metadata"
)

const testTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// TestTraceparentInFrames pins where the traceparent goes in the envelope
// and cloudevents frames, and that a trace the bridge started stays out of
// them. (Without a trace, the golden files pin the frames.)
func TestTraceparentInFrames(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 25, 10, 0, 0, 123456000, time.UTC)
	for _, tc := range []struct {
		name            string
		root            bool
		envelope, cloud string
	}{
		{
			name:     "from the publisher",
			envelope: `{"id":"7","stream":"orders","type":"shop.v1.OrderCreated","time":"2026-11-25T10:00:00.123456Z","traceparent":"` + testTraceparent + `","data":{"a":1}}`,
			cloud:    `{"specversion":"1.0","id":"7","source":"/sse-bridge","type":"shop.v1.OrderCreated","subject":"orders","time":"2026-11-25T10:00:00.123456Z","datacontenttype":"application/json","traceparent":"` + testTraceparent + `","data":{"a":1}}`,
		},
		{
			name:     "started by the bridge",
			root:     true,
			envelope: `{"id":"7","stream":"orders","type":"shop.v1.OrderCreated","time":"2026-11-25T10:00:00.123456Z","data":{"a":1}}`,
			cloud:    `{"specversion":"1.0","id":"7","source":"/sse-bridge","type":"shop.v1.OrderCreated","subject":"orders","time":"2026-11-25T10:00:00.123456Z","datacontenttype":"application/json","data":{"a":1}}`,
		},
	} {
		ev := &Event{ID: 7, Stream: "orders", Type: "shop.v1.OrderCreated", Data: []byte(`{"a":1}`), Time: at, Trace: &EventTrace{Parent: testTraceparent, Root: tc.root}}
		if got := string(ev.frame(FormatEnvelope, defaultCloudEvents).Data); got != tc.envelope {
			t.Errorf("%s: envelope\n got %s\nwant %s", tc.name, got, tc.envelope)
		}
		if got := string(ev.frame(FormatCloudEvents, defaultCloudEvents).Data); got != tc.cloud {
			t.Errorf("%s: cloudevents\n got %s\nwant %s", tc.name, got, tc.cloud)
		}
		if got := string(ev.frame(FormatData, defaultCloudEvents).Data); got != `{"a":1}` {
			t.Errorf("%s: data frame %s, want the payload alone", tc.name, got)
		}
	}
}

// TestNATSTraceHeaders: the trace context survives the NATS headers, and a
// traceparent that does not parse is dropped rather than sent to browsers.
func TestNATSTraceHeaders(t *testing.T) {
	t.Parallel()
	for _, in := range []*EventTrace{
		nil,
		{Parent: testTraceparent},
		{Parent: testTraceparent, Root: true},
	} {
		h := nats.Header{}
		natsSetTrace(h, &Event{Trace: in})
		var out Event
		natsGetTrace(h, &out)
		if (in == nil) != (out.Trace == nil) || in != nil && *out.Trace != *in {
			t.Errorf("through NATS headers %v: %+v, want %+v", h, out.Trace, in)
		}
	}
	for _, bad := range []string{"nonsense", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","x":"`,
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"} {
		var out Event
		natsGetTrace(nats.Header{traceparentKey: {bad}}, &out)
		if out.Trace != nil {
			t.Errorf("traceparent header %q read as %+v, want dropped", bad, out.Trace)
		}
	}
}

// TestStartServerTraceContext: the server span continues a valid
// traceparent of the incoming metadata, and starts a trace of its own
// (which the frames leave out) for none or an invalid one.
func TestStartServerTraceContext(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tr := newTracing(tp, EngineMemory)
	for _, tc := range []struct {
		name string
		md   metadata.MD
		root bool
	}{
		{"traceparent", metadata.Pairs("traceparent", testTraceparent, "tracestate", "vendor=x"), false},
		{"none", nil, true},
		{"invalid", metadata.Pairs("traceparent", "00-xyz"), true},
	} {
		ctx := context.Background()
		if tc.md != nil {
			ctx = metadata.NewIncomingContext(ctx, tc.md)
		}
		ctx, span := tr.startServer(ctx, bridgeMethods+"Publish")
		et := tr.eventTrace(ctx)
		sc := span.SpanContext()
		if want := (EventTrace{Parent: "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01", Root: tc.root}); et == nil || *et != want {
			t.Errorf("%s: event trace %+v, want %+v", tc.name, et, want)
		}
		if !tc.root && (sc.TraceID().String() != testTraceparent[3:35] || sc.TraceState().Get("vendor") != "x") {
			t.Errorf("%s: span context %v, want trace %s with its tracestate", tc.name, sc, testTraceparent[3:35])
		}
		endServer(span, nil)
	}
}

// TestTracingOffAllocatesNothing: with tracing off, what a publish and a
// fan-out call of tracing.go costs is nil checks.
func TestTracingOffAllocatesNothing(t *testing.T) {
	var tr *tracing
	ev := &Event{Stream: "orders", Data: []byte(`{}`)}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		span := tr.startStep(ctx, spanValidate)
		endStep(span, nil)
		ev.Trace = tr.eventTrace(ctx)
		tr.annotate(ctx, ev)
		tr.annotateID(ctx, 1)
	})
	if allocs != 0 {
		t.Errorf("publish steps with tracing off: %v allocations, want 0", allocs)
	}
	if tr.delivery() != nil || tr.unaryInterceptors() != nil {
		t.Error("tracing off: a delivery tracer or an interceptor")
	}
}
