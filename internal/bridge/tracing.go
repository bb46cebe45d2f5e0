package bridge

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// Tracing (OpenTelemetry), on when Config.TracerProvider is set; cmd/bridge
// builds the provider from the OTEL_* environment.
//
// One trace per published event:
//
//	bridge.v1.BridgeService/Publish   server span, child of the caller's span (traceparent in the gRPC metadata)
//	├── bridge.validate               stream name and type
//	├── bridge.encode                 payload to JSON, size
//	├── bridge.store                  Engine.Publish: id and history
//	└── bridge.deliver                per event, per node: offered to N connections (bridge.connections)
//
// The publish span's context travels with the event as Event.Trace
// (with the NATS engine, in the message's traceparent header), so the
// delivery spans of every node join the publish span's trace, and the
// envelope and cloudevents frames carry it as `traceparent` (the
// CloudEvents distributed tracing extension) when the publish carried a
// trace context of its own.
//
// The server span comes from a unary interceptor on the methods of
// bridge.v1.BridgeService, so a batch RPC gets it for free: its events go
// through the same steps under it and carry its context. A streaming RPC
// would call startServer (and endServer) per message, with the stream's
// context, for a trace per event. Per event, a handler calls startStep and
// endStep around each step, and eventTrace before the store.
//
// With tracing off, the tracing and deliveryTracer pointers are nil: no
// interceptor is installed, a step costs a nil check and fan-out a nil
// check per group of events.

// Span names and attributes.
const (
	spanValidate = "bridge.validate"
	spanEncode   = "bridge.encode"
	spanStore    = "bridge.store"
	spanDeliver  = "bridge.deliver"

	attrStream      = attribute.Key("bridge.stream")
	attrEventType   = attribute.Key("bridge.event.type")
	attrEventID     = attribute.Key("bridge.event.id")
	attrEventBytes  = attribute.Key("bridge.event.bytes")
	attrEngine      = attribute.Key("bridge.engine")
	attrConnections = attribute.Key("bridge.connections")
)

// tracerName is the instrumentation scope of the bridge's spans.
const tracerName = "github.com/sse-bridge/bridge"

// traceparentKey is the W3C header, gRPC metadata key and NATS header that
// carries a span context.
const traceparentKey = "traceparent"

// traceContext is the one propagator: W3C trace context (traceparent and
// tracestate).
var traceContext propagation.TraceContext

// tracing is the instrumentation of one Serve; nil when tracing is off.
type tracing struct {
	tracer trace.Tracer
	engine attribute.KeyValue
}

// newTracing returns the tracing of a bridge whose engine is engine, or nil
// when tp is nil (tracing off).
func newTracing(tp trace.TracerProvider, engine string) *tracing {
	if tp == nil {
		return nil
	}
	return &tracing{
		tracer: tp.Tracer(tracerName, trace.WithInstrumentationVersion(buildVersion()), trace.WithSchemaURL(semconv.SchemaURL)),
		engine: attrEngine.String(engine),
	}
}

// unaryInterceptors returns the interceptor that starts the server span of
// every call to bridge.v1.BridgeService, to put first in the chain; none
// when tracing is off.
func (t *tracing) unaryInterceptors() []grpc.UnaryServerInterceptor {
	if t == nil {
		return nil
	}
	return []grpc.UnaryServerInterceptor{t.unary}
}

// bridgeMethods is the prefix of the full method names of
// bridge.v1.BridgeService: health and reflection calls are not traced.
var bridgeMethods = "/" + bridgev1.BridgeService_ServiceDesc.ServiceName + "/"

func (t *tracing) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !strings.HasPrefix(info.FullMethod, bridgeMethods) {
		return handler(ctx, req)
	}
	ctx, span := t.startServer(ctx, info.FullMethod)
	res, err := handler(ctx, req)
	endServer(span, err)
	return res, err
}

// newTraceKey marks the context of a server span that started a new trace:
// the call carried no trace context.
type newTraceKey struct{}

// startServer starts the server span of a call to fullMethod, a child of
// the span context in ctx's incoming gRPC metadata (traceparent,
// tracestate), or the root of a new trace when there is none.
func (t *tracing) startServer(ctx context.Context, fullMethod string) (context.Context, trace.Span) {
	md, _ := metadata.FromIncomingContext(ctx)
	ctx = traceContext.Extract(ctx, metadataCarrier(md))
	started := !trace.SpanContextFromContext(ctx).IsValid()
	method := strings.TrimPrefix(fullMethod, "/")
	ctx, span := t.tracer.Start(ctx, method,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(semconv.RPCSystemNameGRPC, semconv.RPCMethod(method)))
	if started {
		ctx = context.WithValue(ctx, newTraceKey{}, true)
	}
	return ctx, span
}

// endServer ends a server span with the call's gRPC status. As the
// semantic conventions of gRPC servers say, only codes that are the
// server's fault make the span an error.
func endServer(span trace.Span, err error) {
	code := status.Code(err)
	name := code.String()
	if int(code) < len(grpcCodeNames) {
		name = grpcCodeNames[code]
	}
	span.SetAttributes(semconv.RPCResponseStatusCode(name))
	if err != nil {
		span.SetAttributes(semconv.ErrorTypeKey.String(name))
	}
	switch code {
	case grpccodes.Unknown, grpccodes.DeadlineExceeded, grpccodes.Unimplemented,
		grpccodes.Internal, grpccodes.Unavailable, grpccodes.DataLoss:
		span.SetStatus(codes.Error, status.Convert(err).Message())
	}
	span.End()
}

// grpcCodeNames are the names of the gRPC status codes as the semantic
// conventions write them (those of the protocol's enum).
var grpcCodeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

// startStep starts the span of one step of a publish (spanValidate, ...),
// a child of ctx's span; nil when tracing is off. End it with endStep.
func (t *tracing) startStep(ctx context.Context, name string) trace.Span {
	if t == nil {
		return nil
	}
	_, span := t.tracer.Start(ctx, name)
	if name == spanStore {
		span.SetAttributes(t.engine)
	}
	return span
}

// endStep ends a span of startStep, an error when err is not nil.
func endStep(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		msg := err.Error()
		if s, ok := status.FromError(err); ok {
			msg = s.Message()
		}
		span.SetStatus(codes.Error, msg)
	}
	span.End()
}

// annotate adds the attributes of ev, about to be stored, to ctx's span
// (the server span); nothing when tracing is off.
func (t *tracing) annotate(ctx context.Context, ev *Event) {
	if t == nil {
		return
	}
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attrStream.String(ev.Stream), attrEventBytes.Int(len(ev.Data)))
	if ev.Type != "" {
		span.SetAttributes(attrEventType.String(ev.Type))
	}
}

// annotateID adds the id of the event stored to ctx's span.
func (t *tracing) annotateID(ctx context.Context, id uint64) {
	if t == nil {
		return
	}
	trace.SpanFromContext(ctx).SetAttributes(eventIDAttr(id))
}

// EventTrace is the trace context an [Event] carries from its publish to
// its deliveries, on every node.
type EventTrace struct {
	// Parent is the W3C traceparent of the span that published the event.
	// The envelope and cloudevents frames carry it, unless Root.
	Parent string
	// Root says that the publish carried no trace context and the bridge
	// started the trace: delivery spans join it, frames do not carry it
	// (the publisher knows nothing of that trace).
	Root bool
}

// eventTrace returns the trace context of an event published under ctx:
// that of ctx's span (the server span). Nil when tracing is off.
func (t *tracing) eventTrace(ctx context.Context) *EventTrace {
	if t == nil {
		return nil
	}
	var c traceparentCarrier
	traceContext.Inject(ctx, &c)
	if c == "" {
		return nil
	}
	return &EventTrace{Parent: string(c), Root: ctx.Value(newTraceKey{}) != nil}
}

// deliveryTracer makes the delivery spans of fan-out (hub.deliver): one per
// event that carries a trace, a child of its publish span, with the number
// of connections its group was offered to. Like deliver, it is used by one
// goroutine at a time; nil when tracing is off.
type deliveryTracer struct {
	tracer trace.Tracer
	open   []trace.Span // started by start, ended by end
}

// delivery returns the delivery tracer of a hub; nil when tracing is off.
func (t *tracing) delivery() *deliveryTracer {
	if t == nil {
		return nil
	}
	return &deliveryTracer{tracer: t.tracer}
}

// start starts the delivery span of every event of group that carries a
// trace, about to be offered to conns connections.
func (d *deliveryTracer) start(group []*Event, conns int) {
	now := time.Now()
	for _, ev := range group {
		if ev.Trace == nil {
			continue
		}
		parent := parseTraceParent(ev.Trace.Parent)
		if !parent.IsValid() {
			continue
		}
		_, span := d.tracer.Start(trace.ContextWithRemoteSpanContext(context.Background(), parent), spanDeliver, trace.WithTimestamp(now), trace.WithAttributes(
			attrStream.String(ev.Stream),
			eventIDAttr(ev.ID),
			attrConnections.Int(conns),
		))
		d.open = append(d.open, span)
	}
}

// end ends the spans start started.
func (d *deliveryTracer) end() {
	if len(d.open) == 0 {
		return
	}
	opt := trace.WithTimestamp(time.Now())
	for _, span := range d.open {
		span.End(opt)
	}
	clear(d.open)
	d.open = d.open[:0]
}

// eventIDAttr is the bridge.event.id attribute: the id as a string, as
// frames send it (ids, Unix microseconds or JetStream sequences, would fit
// an int64, but a string is what a page and the logs show).
func eventIDAttr(id uint64) attribute.KeyValue {
	return attrEventID.String(strconv.FormatUint(id, 10))
}

// pageTraceParent is the traceparent the envelope and cloudevents frames
// of e carry: empty when its publish carried no trace context (or tracing
// was off where it was published).
func (e *Event) pageTraceParent() string {
	if e.Trace == nil || e.Trace.Root {
		return ""
	}
	return e.Trace.Parent
}

// natsHeaderTraceRoot marks a message whose traceparent header the bridge
// started (see EventTrace.Root).
const natsHeaderTraceRoot = "Bridge-Trace-Root"

// natsSetTrace puts ev's trace context in the headers of its message.
func natsSetTrace(h nats.Header, ev *Event) {
	if ev.Trace == nil {
		return
	}
	h.Set(traceparentKey, ev.Trace.Parent)
	if ev.Trace.Root {
		h.Set(natsHeaderTraceRoot, "1")
	}
}

// natsGetTrace reads what natsSetTrace wrote into ev. A traceparent that
// does not parse is dropped: it would reach browsers.
func natsGetTrace(h nats.Header, ev *Event) {
	tp := h.Get(traceparentKey)
	if tp == "" || !parseTraceParent(tp).IsValid() {
		return
	}
	ev.Trace = &EventTrace{Parent: tp, Root: h.Get(natsHeaderTraceRoot) != ""}
}

// parseTraceParent returns the remote span context of a traceparent of
// version 00 (what eventTrace makes), not valid when it does not parse.
func parseTraceParent(tp string) trace.SpanContext {
	if len(tp) != 55 || tp[:3] != "00-" || tp[35] != '-' || tp[52] != '-' {
		return trace.SpanContext{}
	}
	tid, err := trace.TraceIDFromHex(tp[3:35])
	if err != nil {
		return trace.SpanContext{}
	}
	sid, err := trace.SpanIDFromHex(tp[36:52])
	if err != nil {
		return trace.SpanContext{}
	}
	flags, err := strconv.ParseUint(tp[53:], 16, 8)
	if err != nil {
		return trace.SpanContext{}
	}
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, Remote: true,
		TraceFlags: trace.TraceFlags(flags) & (trace.FlagsSampled | trace.FlagsRandom),
	})
}

// metadataCarrier reads and writes W3C trace context in gRPC metadata.
type metadataCarrier metadata.MD

func (c metadataCarrier) Get(key string) string {
	if vs := metadata.MD(c).Get(key); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

func (c metadataCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// traceparentCarrier carries a traceparent alone (tracestate is not
// carried with events).
type traceparentCarrier string

func (c *traceparentCarrier) Get(key string) string {
	if key == traceparentKey {
		return string(*c)
	}
	return ""
}

func (c *traceparentCarrier) Set(key, value string) {
	if key == traceparentKey {
		*c = traceparentCarrier(value)
	}
}

func (*traceparentCarrier) Keys() []string { return []string{traceparentKey} }
