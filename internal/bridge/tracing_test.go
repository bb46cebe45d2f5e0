package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// Span names of the bridge (tracing.go).
const (
	publishSpan  = "bridge.v1.BridgeService/Publish"
	validateSpan = "bridge.validate"
	encodeSpan   = "bridge.encode"
	storeSpan    = "bridge.store"
	deliverSpan  = "bridge.deliver"
)

// newTestTracing returns a tracer provider that hands every ended span to
// the returned in-memory exporter at once.
func newTestTracing(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, exp
}

// withTraceContext returns ctx with the span context of ctx's span in its
// outgoing gRPC metadata, as an instrumented publisher sends it.
func withTraceContext(ctx context.Context) context.Context {
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	return metadata.NewOutgoingContext(ctx, metadata.New(carrier))
}

// publishCtx publishes req under ctx and returns the id.
func publishCtx(ctx context.Context, t *testing.T, b *testBridge, req *bridgev1.PublishRequest) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	res, err := b.client.Publish(ctx, req)
	if err != nil {
		t.Fatalf("Publish = %v", err)
	}
	return res.GetId()
}

// spansOf waits until exp holds a span named name whose attribute
// bridge.event.id is id (a publish or delivery span of that event), then
// returns every span of that span's trace.
func spansOf(t *testing.T, exp *tracetest.InMemoryExporter, name string, id uint64) (trace.TraceID, tracetest.SpanStubs) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		all := exp.GetSpans()
		for _, s := range all {
			if s.Name == name && attr(s, "bridge.event.id").AsString() == fmt.Sprint(id) {
				tid := s.SpanContext.TraceID()
				var out tracetest.SpanStubs
				for _, x := range all {
					if x.SpanContext.TraceID() == tid {
						out = append(out, x)
					}
				}
				return tid, out
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s span of event %d within %v; spans: %v", name, id, waitLimit, spanNames(all))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func spanNames(spans tracetest.SpanStubs) []string {
	names := make([]string, len(spans))
	for i, s := range spans {
		names[i] = s.Name
	}
	return names
}

// attr returns the attribute key of s (an empty value when s has none).
func attr(s tracetest.SpanStub, key string) attribute.Value {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// only returns the one span of spans named name.
func only(t *testing.T, spans tracetest.SpanStubs, name string) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s spans in the trace, want 1; the trace: %v", len(found), name, spanNames(spans))
	}
	return found[0]
}

// traceparentOf returns the traceparent of an envelope or cloudevents
// frame's data, and whether it has one.
func traceparentOf(t *testing.T, data string) (string, bool) {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(data), &v); err != nil {
		t.Fatalf("frame data %q: %v", data, err)
	}
	tp, ok := v["traceparent"]
	if !ok {
		return "", false
	}
	s, _ := tp.(string)
	return s, true
}

// wantTraceparent checks that a frame's traceparent names span.
func wantTraceparent(t *testing.T, format, data string, span trace.SpanContext) {
	t.Helper()
	got, ok := traceparentOf(t, data)
	want := fmt.Sprintf("00-%s-%s-01", span.TraceID(), span.SpanID())
	if !ok || got != want {
		t.Errorf("%s frame %s: traceparent %q, want %q (the publish span)", format, data, got, want)
	}
}

// TestTracingPublishIsOneTrace: a publish carrying the caller's trace
// context is one trace: the caller's span, the publish span under it, its
// validate, encode and store steps, and the delivery span with the number
// of connections; the envelope and cloudevents frames carry the publish
// span's traceparent, the data frames nothing new.
func TestTracingPublishIsOneTrace(t *testing.T) {
	t.Parallel()
	tp, exp := newTestTracing(t)
	b := startBridge(t, bridge.Config{TracerProvider: tp})
	envelope := subscribe(t, b.baseURL, "stream=orders&format=envelope", "")
	cloudEvents := subscribe(t, b.baseURL, "stream=orders&format=cloudevents", "")
	data := subscribe(t, b.baseURL, "stream=orders", "")
	_ = subscribe(t, b.baseURL, "stream=users&format=envelope", "") // another stream: not counted

	ctx, caller := tp.Tracer("publisher").Start(t.Context(), "order service: place order")
	id := publishCtx(withTraceContext(ctx), t, b, jsonReq(t, "orders", map[string]any{"orderId": "o-1"}))
	caller.End()

	tid, spans := spansOf(t, exp, deliverSpan, id)
	if want := caller.SpanContext().TraceID(); tid != want {
		t.Fatalf("the delivery span is in trace %s, want the caller's, %s", tid, want)
	}
	pub := only(t, spans, publishSpan)
	if pub.Parent.SpanID() != caller.SpanContext().SpanID() || !pub.Parent.IsRemote() {
		t.Errorf("publish span's parent = %v, want the caller's span %v, remote", pub.Parent.SpanID(), caller.SpanContext().SpanID())
	}
	if pub.SpanKind != trace.SpanKindServer {
		t.Errorf("publish span kind = %v, want server", pub.SpanKind)
	}
	for key, want := range map[string]string{
		"rpc.system.name": "grpc", "rpc.method": publishSpan, "rpc.response.status_code": "OK",
		"bridge.stream": "orders", "bridge.event.id": fmt.Sprint(id),
	} {
		if got := attr(pub, key).String(); got != want {
			t.Errorf("publish span %s = %q, want %q", key, got, want)
		}
	}
	for _, name := range []string{validateSpan, encodeSpan, storeSpan, deliverSpan} {
		if s := only(t, spans, name); s.Parent.SpanID() != pub.SpanContext.SpanID() {
			t.Errorf("%s span's parent = %v, want the publish span %v", name, s.Parent.SpanID(), pub.SpanContext.SpanID())
		}
	}
	if got := attr(only(t, spans, storeSpan), "bridge.engine").AsString(); got != bridge.EngineMemory {
		t.Errorf("store span bridge.engine = %q, want %q", got, bridge.EngineMemory)
	}
	if got := attr(only(t, spans, deliverSpan), "bridge.connections").AsInt64(); got != 3 {
		t.Errorf("delivery span bridge.connections = %d, want 3 (the connections subscribed to orders)", got)
	}

	wantTraceparent(t, "envelope", envelope.next(t).Data, pub.SpanContext)
	wantTraceparent(t, "cloudevents", cloudEvents.next(t).Data, pub.SpanContext)
	if got := toFrame(t, data.next(t)); fmt.Sprint(got.Data) != fmt.Sprint(map[string]any{"orderId": "o-1"}) {
		t.Errorf("data frame = %+v, want the payload alone", got)
	}

	// No trace context: a trace of its own, whose context the frames do not
	// carry (the publisher knows nothing of it).
	id = b.publish(t, jsonReq(t, "orders", map[string]any{"orderId": "o-2"}))
	tid2, spans := spansOf(t, exp, deliverSpan, id)
	pub = only(t, spans, publishSpan)
	if tid2 == tid || pub.Parent.IsValid() {
		t.Errorf("publish without trace context: trace %s, parent %v; want a new trace, the publish span its root", tid2, pub.Parent)
	}
	if s := only(t, spans, deliverSpan); s.Parent.SpanID() != pub.SpanContext.SpanID() {
		t.Errorf("delivery span's parent = %v, want the publish span %v", s.Parent.SpanID(), pub.SpanContext.SpanID())
	}
	for name, c := range map[string]*sseClient{"envelope": envelope, "cloudevents": cloudEvents} {
		if f := c.next(t).Data; func() bool { _, ok := traceparentOf(t, f); return ok }() {
			t.Errorf("%s frame of a publish without trace context: %s, want no traceparent", name, f)
		}
	}
}

// TestTracingRefusedPublish: a publish refused as invalid is a publish span
// with its status code and a failed validate step, nothing stored.
func TestTracingRefusedPublish(t *testing.T) {
	t.Parallel()
	tp, exp := newTestTracing(t)
	b := startBridge(t, bridge.Config{TracerProvider: tp})
	ctx, caller := tp.Tracer("publisher").Start(t.Context(), "caller")
	_, err := b.client.Publish(withTraceContext(ctx), jsonReq(t, "no spaces allowed", map[string]any{}))
	caller.End()
	if err == nil {
		t.Fatal("Publish to an invalid stream name succeeded")
	}
	var spans tracetest.SpanStubs
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID() == caller.SpanContext().TraceID() {
			spans = append(spans, s)
		}
	}
	pub := only(t, spans, publishSpan)
	if got := attr(pub, "rpc.response.status_code").AsString(); got != "INVALID_ARGUMENT" {
		t.Errorf("publish span rpc.response.status_code = %q, want INVALID_ARGUMENT", got)
	}
	if v := only(t, spans, validateSpan); v.Status.Code.String() != "Error" {
		t.Errorf("validate span status = %v, want Error", v.Status)
	}
	for _, s := range spans {
		if s.Name == storeSpan || s.Name == encodeSpan {
			t.Errorf("span %s for a publish refused at validation", s.Name)
		}
	}
}

// TestTracingOffFramesCarryNoTraceparent: without a tracer provider, a
// publish that carries trace context changes nothing in the frames.
func TestTracingOffFramesCarryNoTraceparent(t *testing.T) {
	t.Parallel()
	tp, _ := newTestTracing(t) // the publisher's only
	b := startBridge(t, bridge.Config{})
	envelope := subscribe(t, b.baseURL, "stream=orders&format=envelope", "")
	cloudEvents := subscribe(t, b.baseURL, "stream=orders&format=cloudevents", "")
	ctx, caller := tp.Tracer("publisher").Start(t.Context(), "caller")
	defer caller.End()
	publishCtx(withTraceContext(ctx), t, b, jsonReq(t, "orders", map[string]any{"orderId": "o-1"}))
	for name, c := range map[string]*sseClient{"envelope": envelope, "cloudevents": cloudEvents} {
		if f := c.next(t).Data; func() bool { _, ok := traceparentOf(t, f); return ok }() {
			t.Errorf("%s frame with tracing off: %s, want no traceparent", name, f)
		}
	}
}

// TestTracingNATSCarriesTraceparent: with the nats engine the traceparent
// travels in the JetStream message, so the frames of another node carry it
// and that node's delivery span joins the publish span's trace.
func TestTracingNATSCarriesTraceparent(t *testing.T) {
	t.Parallel()
	ns := bridge.StartNATS(t)
	tpA, expA := newTestTracing(t)
	tpB, expB := newTestTracing(t)
	cfgA, cfgB := natsConfig(ns), natsConfig(ns)
	cfgA.TracerProvider, cfgB.TracerProvider = tpA, tpB
	a := startBridge(t, cfgA)
	b := startBridge(t, cfgB)
	onB := subscribe(t, b.baseURL, "stream=orders&format=envelope", "")
	onB2 := subscribe(t, b.baseURL, "stream=orders&format=cloudevents", "")
	onA := subscribe(t, a.baseURL, "stream=orders&format=envelope", "")

	ctx, caller := tpA.Tracer("publisher").Start(t.Context(), "caller")
	id := publishCtx(withTraceContext(ctx), t, a, jsonReq(t, "orders", map[string]any{"orderId": "o-1"}))
	caller.End()

	_, spansA := spansOf(t, expA, publishSpan, id)
	pub := only(t, spansA, publishSpan)
	if got := attr(only(t, spansA, storeSpan), "bridge.engine").AsString(); got != bridge.EngineNATS {
		t.Errorf("store span bridge.engine = %q, want %q", got, bridge.EngineNATS)
	}
	wantTraceparent(t, "envelope on B", onB.next(t).Data, pub.SpanContext)
	wantTraceparent(t, "cloudevents on B", onB2.next(t).Data, pub.SpanContext)
	wantTraceparent(t, "envelope on A", onA.next(t).Data, pub.SpanContext)
	for node, exp := range map[string]*tracetest.InMemoryExporter{"A": expA, "B": expB} {
		tid, spans := spansOf(t, exp, deliverSpan, id)
		d := only(t, spans, deliverSpan)
		want := map[string]int64{"A": 1, "B": 2}[node]
		if tid != pub.SpanContext.TraceID() || d.Parent.SpanID() != pub.SpanContext.SpanID() {
			t.Errorf("delivery span on %s: trace %s parent %s, want the publish span's %s %s", node, tid, d.Parent.SpanID(), pub.SpanContext.TraceID(), pub.SpanContext.SpanID())
		}
		if got := attr(d, "bridge.connections").AsInt64(); got != want {
			t.Errorf("delivery span on %s: bridge.connections = %d, want %d", node, got, want)
		}
	}

	// A trace the bridge started travels too, for the delivery spans, but
	// no node's frames carry it.
	id = a.publish(t, jsonReq(t, "orders", map[string]any{"orderId": "o-2"}))
	_, spansA = spansOf(t, expA, publishSpan, id)
	pub = only(t, spansA, publishSpan)
	tid, spansB := spansOf(t, expB, deliverSpan, id)
	if d := only(t, spansB, deliverSpan); tid != pub.SpanContext.TraceID() || d.Parent.SpanID() != pub.SpanContext.SpanID() {
		t.Errorf("delivery span on B of a trace A started: parent %s, want the publish span %s", d.Parent.SpanID(), pub.SpanContext.SpanID())
	}
	for name, c := range map[string]*sseClient{"envelope on B": onB, "envelope on A": onA} {
		if f := c.next(t).Data; func() bool { _, ok := traceparentOf(t, f); return ok }() {
			t.Errorf("%s of a publish without trace context: %s, want no traceparent", name, f)
		}
	}
}

// BenchmarkTracedPublish is BenchmarkPublish/serial with tracing on and a
// caller's trace context on every call: five spans per publish, batched to
// an exporter that drops them.
func BenchmarkTracedPublish(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tb := startBridge(b, bridge.Config{ConnectRate: -1, TracerProvider: tp})
	ctx, span := tp.Tracer("publisher").Start(b.Context(), "caller")
	defer span.End()
	ctx = withTraceContext(ctx)
	val, err := structpb.NewValue(map[string]any{"orderId": "o-1", "total": 1250.0, "tags": []any{"a", "b"}})
	if err != nil {
		b.Fatal(err)
	}
	req := &bridgev1.PublishRequest{Stream: "orders", Payload: &bridgev1.PublishRequest_Json{Json: val}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tb.client.Publish(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
