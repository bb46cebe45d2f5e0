package bridge

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// PublishBatch and the per-event path it shares with PublishStream: each
// event is checked (grants, rate, validation, encoding) on its own, as
// Publish would check it alone, and the accepted ones are stored with one
// engine call.

// PublishBatch publishes req's events: one result per event, in request
// order. A refused event gets the status Publish would have answered for it
// alone, and does not stop the others; the accepted ones are stored in
// order with one engine call. The call itself fails only with
// InvalidArgument for more than --max-batch events, Unavailable while
// shutting down, or the publisher's Unauthenticated should its credential
// have gone since the call was let in. (gRPC refuses a request over
// --max-batch-bytes, unread, with ResourceExhausted.)
func (p *publishService) PublishBatch(ctx context.Context, req *bridgev1.PublishBatchRequest) (*bridgev1.PublishBatchResponse, error) {
	if p.closing.Load() {
		return nil, errShuttingDown
	}
	reqs := req.GetEvents()
	if len(reqs) > p.maxBatch {
		return nil, status.Errorf(codes.InvalidArgument,
			"the batch has %d events: the limit is %d (--max-batch); send at most %d events per PublishBatch", len(reqs), p.maxBatch, p.maxBatch)
	}
	caller, err := p.auth.caller(ctx, bridgev1.BridgeService_PublishBatch_FullMethodName)
	if err != nil {
		return nil, err
	}
	p.metrics.batchSize.Observe(float64(len(reqs)))
	results := make([]*bridgev1.PublishResult, len(reqs))
	b := newEventBatch(len(reqs))
	for i, r := range reqs {
		ev, err := p.prepare(ctx, bridgev1.BridgeService_PublishBatch_FullMethodName, caller, r)
		if err != nil {
			results[i] = p.refused(err)
			continue
		}
		b.add(i, ev)
	}
	p.store(ctx, b, results)
	return &bridgev1.PublishBatchResponse{Results: results}, nil
}

// errShuttingDown is the status of a publish while the bridge shuts down.
var errShuttingDown = status.Error(codes.Unavailable, "the bridge is shutting down: retry against another instance or later")

// eventBatch is the accepted events of a batch (or of what a publish stream
// received together), with the index of each in the request.
type eventBatch struct {
	evs    []*Event
	index  []int
	stored []Stored
}

func newEventBatch(n int) *eventBatch {
	return &eventBatch{evs: make([]*Event, 0, n), index: make([]int, 0, n)}
}

func (b *eventBatch) add(i int, ev *Event) {
	b.evs = append(b.evs, ev)
	b.index = append(b.index, i)
}

func (b *eventBatch) reset() {
	clear(b.evs)
	b.evs, b.index = b.evs[:0], b.index[:0]
}

// prepare checks one event of a batch or a stream as Publish checks an
// event alone, in the same order (grants and rate, as the auth interceptor
// does for Publish, then shutdown, validation and encoding), and returns
// the event to store, or the status Publish would have answered. caller is
// the publisher (nil when publisher auth is off).
func (p *publishService) prepare(ctx context.Context, method string, caller *publisher, req *bridgev1.PublishRequest) (*Event, error) {
	// As authorize: an invalid stream name is never publishable, and gets
	// validate's InvalidArgument without spending the publisher's rate.
	if caller != nil && ValidStreamName(req.GetStream()) {
		if err := p.auth.allowEvent(ctx, method, caller, req.GetStream()); err != nil {
			return nil, err
		}
	}
	if p.closing.Load() {
		return nil, errShuttingDown
	}
	if err := p.validate(req); err != nil {
		return nil, err
	}
	data, name, err := p.encode(req)
	if err != nil {
		return nil, err
	}
	ev := &Event{Stream: req.GetStream(), Type: name, Data: data, Key: p.key(req)}
	ev.Trace = p.tracing.eventTrace(ctx)
	return ev, nil
}

// store stores b's events with one engine call and sets the result of each.
func (p *publishService) store(ctx context.Context, b *eventBatch, results []*bridgev1.PublishResult) {
	if len(b.evs) == 0 {
		return
	}
	if cap(b.stored) < len(b.evs) {
		b.stored = make([]Stored, len(b.evs))
	}
	stored := b.stored[:len(b.evs)]
	p.engine.PublishBatch(ctx, b.evs, stored)
	for j, s := range stored {
		results[b.index[j]] = p.storedResult(ctx, b.evs[j], s)
	}
	clear(stored)
}

// storedResult is the result of an event the engine was given, counted as
// Publish counts its own.
func (p *publishService) storedResult(ctx context.Context, ev *Event, s Stored) *bridgev1.PublishResult {
	switch {
	case s.Err == nil && s.Duplicate:
		p.metrics.countPublish(publishDuplicate)
		return &bridgev1.PublishResult{Id: s.ID, Duplicate: true}
	case s.Err == nil:
		p.metrics.countPublish(publishOK)
		return &bridgev1.PublishResult{Id: s.ID}
	}
	return p.refused(p.storeError(ctx, ev.Stream, s.Err))
}

// storeError is the status of an engine's failure to store an event of
// stream, as Publish answers it.
func (p *publishService) storeError(ctx context.Context, stream string, err error) error {
	switch {
	case errors.Is(err, ErrUnavailable):
		return status.Error(codes.Unavailable, "event store unavailable: retry later")
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	default:
		p.log.Error("publish", "stream", stream, "err", err)
		return status.Error(codes.Internal, "the event could not be stored")
	}
}

// refused is the result of an event refused with err, a gRPC status,
// counted as Publish counts its refusals (those of auth are counted by
// bridge_auth_failures_total instead, as for Publish).
func (p *publishService) refused(err error) *bridgev1.PublishResult {
	s := status.Convert(err)
	switch s.Code() {
	case codes.InvalidArgument:
		p.metrics.countPublish(publishInvalid)
	case codes.Unavailable:
		p.metrics.countPublish(publishUnavailable)
	case codes.PermissionDenied, codes.ResourceExhausted, codes.Unauthenticated:
		// counted by auth (refuse)
	default:
		p.metrics.countPublish(publishError)
	}
	code := int32(s.Code()) //nolint:gosec // gRPC codes are 0 to 16
	return &bridgev1.PublishResult{Status: &bridgev1.Status{Code: code, Message: s.Message()}}
}
