package bridge

import (
	"context"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/payload"
)

// publishService implements bridge.v1.BridgeService.
type publishService struct {
	bridgev1.UnimplementedBridgeServiceServer

	engine     Engine
	enc        *payload.Encoder
	maxPayload int
	maxName    int // longest stream name, in bytes; zero means MaxStreamName
	log        *slog.Logger
	closing    *atomic.Bool // set when shutdown starts
	metrics    *metrics
	tracing    *tracing // nil: tracing off
	presence   *presence

	// Batches, publish streams and idempotency keys (publish_batch.go,
	// publish_stream.go, publish_key.go).
	auth     *grpcAuth // each event's grants and rate
	maxBatch int
	dedupe   bool // idempotency keys are honoured
	streams  publishStreams
}

var _ bridgev1.BridgeServiceServer = (*publishService)(nil)

// Publish validates req, encodes its payload once and stores it through the
// engine. Errors are gRPC statuses: InvalidArgument for anything the caller
// must fix (never retried with success), Unavailable while shutting down or
// while the engine is down, DeadlineExceeded or Canceled from ctx.
func (p *publishService) Publish(ctx context.Context, req *bridgev1.PublishRequest) (*bridgev1.PublishResponse, error) {
	start := time.Now()
	res, err := p.publish(ctx, req)
	result := publishOK
	switch status.Code(err) {
	case codes.OK:
		p.metrics.publishSeconds.Observe(time.Since(start).Seconds())
		if res.GetDuplicate() {
			result = publishDuplicate
		}
	case codes.InvalidArgument:
		result = publishInvalid
	case codes.Unavailable:
		result = publishUnavailable
	default:
		result = publishError
	}
	p.metrics.countPublish(result)
	return res, err
}

func (p *publishService) publish(ctx context.Context, req *bridgev1.PublishRequest) (*bridgev1.PublishResponse, error) {
	if p.closing.Load() {
		return nil, errShuttingDown
	}
	span := p.tracing.startStep(ctx, spanValidate)
	err := p.validate(req)
	endStep(span, err)
	if err != nil {
		return nil, err
	}
	span = p.tracing.startStep(ctx, spanEncode)
	data, name, err := p.encode(req)
	endStep(span, err)
	if err != nil {
		return nil, err
	}
	ev := &Event{Stream: req.GetStream(), Type: name, Data: data, Key: p.key(req)}
	ev.Trace = p.tracing.eventTrace(ctx)
	p.tracing.annotate(ctx, ev)
	span = p.tracing.startStep(ctx, spanStore)
	var id uint64
	var dup bool
	if ev.Key == "" {
		id, err = p.engine.Publish(ctx, ev)
	} else {
		id, dup, err = p.storeKeyed(ctx, ev)
	}
	endStep(span, err)
	if err != nil {
		return nil, p.storeError(ctx, req.GetStream(), err)
	}
	p.tracing.annotateID(ctx, id)
	return &bridgev1.PublishResponse{Id: id, Duplicate: dup}, nil
}

// validate checks the stream name and the type of req.
func (p *publishService) validate(req *bridgev1.PublishRequest) error {
	if !validStreamName(req.GetStream(), p.maxName) {
		return status.Error(codes.InvalidArgument, streamNameError(req.GetStream(), p.maxName).Error())
	}
	if err := typeNameError(req.GetType()); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if err := keyError(req.GetIdempotencyKey()); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return nil
}

// encode renders the payload of req, validated, to its frame data, and
// returns it with the event's type.
func (p *publishService) encode(req *bridgev1.PublishRequest) (data []byte, name string, err error) {
	data, name, err = p.enc.Payload(req)
	if err != nil {
		return nil, "", status.Error(codes.InvalidArgument, err.Error())
	}
	if len(data) > p.maxPayload {
		return nil, "", status.Errorf(codes.InvalidArgument, "payload is %d bytes as JSON: the limit is %d (--max-payload); send a smaller event or a reference to the data", len(data), p.maxPayload)
	}
	if t := req.GetType(); t != "" {
		name = t
	}
	return data, name, nil
}

// Presence answers the subscriber counts of req's streams (presence.go).
// Errors: InvalidArgument for no stream, too many or an invalid name;
// Unavailable while shutting down. Grants are checked before (grpc_auth.go).
func (p *publishService) Presence(_ context.Context, req *bridgev1.PresenceRequest) (*bridgev1.PresenceResponse, error) {
	if p.closing.Load() {
		return nil, status.Error(codes.Unavailable, "the bridge is shutting down: ask another instance or later")
	}
	streams, err := presenceStreams(req.GetStreams(), p.maxName)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	counts, nodes := p.presence.counts(streams)
	res := &bridgev1.PresenceResponse{Nodes: clampUint32(nodes), Streams: make([]*bridgev1.StreamPresence, len(counts))}
	for i, c := range counts {
		res.Streams[i] = &bridgev1.StreamPresence{Stream: c.Stream, NodeCount: clampUint32(c.Node), ClusterCount: clampUint32(c.Cluster)}
	}
	return res, nil
}

// clampUint32 is n as a uint32: counts are never negative, and a sum over
// many nodes beyond its range is reported as its largest value.
func clampUint32(n int) uint32 {
	return uint32(min(max(int64(n), 0), math.MaxUint32))
}
