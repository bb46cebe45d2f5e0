package bridge

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// PublishStream: a publisher's long-lived stream of events, each answered
// in order. Three goroutines serve one stream:
//
//   - a reader receives requests, each once it holds one of the stream's
//     --max-stream-inflight slots; with none free it stops reading, and
//     gRPC flow control holds the publisher back. It ends when Recv fails:
//     the publisher closed its side, the stream broke, or the handler
//     returned (gRPC then ends the stream); the service joins it at
//     shutdown (publishStreams.wait).
//     It hands them over, and learns of free slots, through the stream's
//     inbox (publish_stream_inbox.go): locks, not a channel per event.
//   - the handler takes what the reader has received, checks each event
//     as PublishBatch does, stores the accepted ones with one engine call
//     and hands the results, in order, to the writer;
//   - a writer sends the results and frees their slots. The handler closes
//     its queue and waits for it before returning.
//
// At shutdown the handler stops taking requests, the writer sends the
// results of every event already stored, and the stream ends with
// UNAVAILABLE: an event without a result was not stored.

// publishStreams is the service's bookkeeping of its publish streams.
type publishStreams struct {
	max      int // <= 0: no limit (--max-publish-streams)
	inflight int // --max-stream-inflight
	open     atomic.Int64
	// stopping is closed when shutdown starts: the handlers answer what
	// they stored and end their streams.
	stopping <-chan struct{}
	readers  sync.WaitGroup
}

// wait returns once every stream's reader has ended: after gRPC's stop,
// which ended every stream, that is at once.
func (s *publishStreams) wait() { s.readers.Wait() }

// received is one request the reader received, or the InvalidArgument of
// one that did not decode (its event's result; the stream goes on).
type received struct {
	req *bridgev1.PublishRequest
	err error
}

// PublishStream implements the bidirectional publish stream; see the
// comment above. It refuses a stream over --max-publish-streams with
// ResourceExhausted, and ends one with Unavailable at shutdown, with the
// receive's status when the stream breaks, and with OK once the publisher
// closed its side and every result was sent.
//
// Grants and rate are checked per event, with the credential as it stands
// when the events are taken (streamCaller): a stream whose token expired,
// or whose entry a reload of the publishers file dropped, ends with
// Unauthenticated, its events not taken yet unstored and unanswered.
func (p *publishService) PublishStream(ss bridgev1.BridgeService_PublishStreamServer) error {
	const method = bridgev1.BridgeService_PublishStream_FullMethodName
	ctx := ss.Context()
	if p.closing.Load() {
		return errShuttingDown
	}
	s := &p.streams
	if n := s.open.Add(1); s.max > 0 && n > int64(s.max) {
		s.open.Add(-1)
		return status.Errorf(codes.ResourceExhausted,
			"%d publish streams are open on this node: the limit is %d (--max-publish-streams); publish over a stream already open, with PublishBatch, or retry later", n-1, s.max)
	}
	p.metrics.publishStreams.Inc()
	defer func() {
		s.open.Add(-1)
		p.metrics.publishStreams.Dec()
	}()
	who, err := p.auth.streamCaller(ctx, method)
	if err != nil {
		return err
	}

	q := newInbox(s.inflight)
	done := make(chan struct{}) // closed when the handler returns
	defer close(done)
	s.readers.Add(1)
	go func() {
		defer s.readers.Done()
		for {
			req, ok := q.reserve(done)
			if !ok {
				q.end(nil)
				return
			}
			err := ss.RecvMsg(req)
			if err != nil && status.Code(err) != codes.InvalidArgument {
				q.end(err)
				return
			}
			// InvalidArgument: a message that did not decode
			// (rejectUndecodableStream); the next one may.
			q.put(received{req: req, err: err})
		}
	}()

	// out carries the results of one take at a time; never full: each
	// take holds at least one slot.
	out := make(chan []*bridgev1.PublishResult, s.inflight)
	sendErr := make(chan error, 1)
	var writer sync.WaitGroup
	writer.Go(func() {
		failed := false
		for results := range out {
			for _, r := range results {
				if failed {
					break
				}
				if err := ss.Send(r); err != nil {
					failed = true
					sendErr <- err
				}
			}
			q.answered(len(results))
		}
	})
	finish := func(err error) error {
		close(out)
		writer.Wait()
		return err
	}

	b := newEventBatch(s.inflight)
	var got []received
	for {
		select {
		case <-s.stopping: // first, however many requests wait
			return finish(errStreamShutdown)
		default:
		}
		select {
		case <-q.ready:
		case <-s.stopping:
			return finish(errStreamShutdown)
		case err := <-sendErr:
			return finish(err)
		case <-ctx.Done():
			return finish(status.FromContextError(ctx.Err()).Err())
		}
		// Everything received since the last take: one engine call
		// stores it all.
		var ended bool
		var recvErr error
		got, ended, recvErr = q.take(got)
		if len(got) > 0 {
			// The credential as of now: it may have expired, or a
			// reload changed what it may do, since the last take.
			caller, err := who.current(time.Now())
			if err != nil {
				return finish(err)
			}
			results := make([]*bridgev1.PublishResult, len(got))
			for i, r := range got {
				if r.err != nil {
					results[i] = p.refused(r.err)
				} else if ev, err := p.prepare(ctx, method, caller, r.req); err != nil {
					results[i] = p.refused(err)
				} else {
					b.add(i, ev)
				}
			}
			p.store(ctx, b, results)
			b.reset()
			q.recycle(got)
			clear(got)
			out <- results
		}
		if ended {
			if errors.Is(recvErr, io.EOF) {
				return finish(nil) // the publisher closed its side: all answered
			}
			return finish(recvErr)
		}
	}
}

// errStreamShutdown ends a publish stream at shutdown.
var errStreamShutdown = status.Error(codes.Unavailable,
	"the bridge is shutting down: every event answered before this was stored (or refused, as its result says); an event without a result was not stored: publish it again to another instance or later")
