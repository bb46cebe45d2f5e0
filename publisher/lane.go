package publisher

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// item is one event on its way.
type item struct {
	req      *bridgev1.PublishRequest
	res      *Result
	size     int       // proto.Size(req)
	charge   int       // what it holds of the flow's bytes
	added    time.Time // when Publish queued it
	seq      uint64    // its place in its lane, from 1
	attempts int
}

// lane gathers events into batches and sends them, one call at a time: a
// batch goes only once every event of the previous one has its result, so
// the events of a stream (always in one lane) are stored in order. Its
// goroutine, run, is started by New and ends once Close was called and
// the queue is empty, or at once when the Publisher aborts.
type lane struct {
	p      *Publisher
	wake   chan struct{} // capacity 1: something changed (an event, a flush, close)
	exited chan struct{} // closed when run returns

	mu       sync.Mutex
	queue    []*item       // not yet sent, oldest first
	bytes    int           // of the queue's events
	seq      uint64        // of the last event queued
	flushTo  uint64        // send without waiting up to this seq
	done     uint64        // every event up to this seq has its result
	progress chan struct{} // closed (and replaced) whenever done moves
	closing  bool
}

func newLane(p *Publisher) *lane {
	return &lane{
		p:        p,
		wake:     make(chan struct{}, 1),
		exited:   make(chan struct{}),
		progress: make(chan struct{}),
	}
}

// add queues it, unless the lane is closing.
func (l *lane) add(it *item) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing {
		return false
	}
	l.seq++
	it.seq = l.seq
	l.queue = append(l.queue, it)
	l.bytes += it.size
	l.poke()
	return true
}

// poke wakes run if it waits; never blocks.
func (l *lane) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// close makes run send the queue at once and return once it is empty.
func (l *lane) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closing = true
	l.poke()
}

// flush sends what is queued now at once and waits until it has results.
func (l *lane) flush(ctx context.Context) error {
	l.mu.Lock()
	target := l.seq
	l.flushTo = max(l.flushTo, target)
	l.poke()
	for l.done < target {
		progress := l.progress
		l.mu.Unlock()
		select {
		case <-progress:
		case <-l.exited:
			return nil // everything it held has a result
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		l.mu.Lock()
	}
	l.mu.Unlock()
	return nil
}

// run sends batches until the lane is closed and empty, or aborted.
func (l *lane) run() {
	defer close(l.exited)
	for {
		batch, ok := l.next()
		if !ok {
			return
		}
		l.send(batch)
		l.mu.Lock()
		l.done = batch[len(batch)-1].seq
		close(l.progress)
		l.progress = make(chan struct{})
		l.mu.Unlock()
	}
}

// next waits for a batch to be due and takes it from the queue: full (by
// events or bytes), its oldest event MaxDelay old, flushed, or closing.
// It returns false when the lane is closing and empty, or aborted (the
// queued events then get ErrClosed).
func (l *lane) next() ([]*item, bool) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if l.p.abortCtx.Err() != nil {
			for _, it := range l.queue {
				l.finish(it, 0, false, ErrClosed)
			}
			l.queue, l.bytes = nil, 0
			return nil, false
		}
		var wait time.Duration // zero: until woken
		switch {
		case len(l.queue) == 0 && l.closing:
			return nil, false
		case len(l.queue) == 0:
		case l.closing, l.queue[0].seq <= l.flushTo,
			len(l.queue) >= l.p.s.MaxEvents, l.bytes >= l.p.s.MaxBytes:
			return l.take(), true
		default:
			wait = l.p.s.MaxDelay - time.Since(l.queue[0].added)
			if wait <= 0 {
				return l.take(), true
			}
		}
		var fire <-chan time.Time
		if wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			fire = timer.C
		}
		l.mu.Unlock()
		select {
		case <-l.wake:
		case <-fire:
		case <-l.p.abortCtx.Done():
		}
		l.mu.Lock()
	}
}

// take removes a batch from the front of the queue: at most MaxEvents
// events and MaxBytes bytes, and at least one event.
func (l *lane) take() []*item {
	n, bytes := 0, 0
	for n < len(l.queue) && n < l.p.s.MaxEvents {
		if n > 0 && bytes+l.queue[n].size > l.p.s.MaxBytes {
			break
		}
		bytes += l.queue[n].size
		n++
	}
	batch := l.queue[:n:n]
	l.queue = l.queue[n:]
	l.bytes -= bytes
	return batch
}

// send publishes batch, retrying what may be retried, until every event
// has its result.
func (l *lane) send(batch []*item) {
	p := l.p
	backoff := retryFirst
	pending := batch
	var lastErr error
	for {
		pending = l.expire(pending, lastErr)
		if len(pending) == 0 {
			return
		}
		req := &bridgev1.PublishBatchRequest{Events: make([]*bridgev1.PublishRequest, len(pending))}
		for i, it := range pending {
			req.Events[i] = it.req
			it.attempts++
		}
		ctx, cancel := context.WithTimeout(p.abortCtx, p.s.CallTimeout)
		resp, err := p.client.PublishBatch(ctx, req)
		cancel()
		switch {
		case p.abortCtx.Err() != nil:
			for _, it := range pending {
				l.finish(it, 0, false, ErrClosed)
			}
			return
		case err != nil && retryable(status.Code(err)):
			lastErr = err
		case status.Code(err) == codes.ResourceExhausted && len(pending) > 1:
			// Over the bridge's message limit (its --max-payload sets it):
			// halves, in order, each split again if need be.
			h := len(pending) / 2
			l.send(pending[:h])
			l.send(pending[h:])
			return
		case err != nil:
			for _, it := range pending {
				l.finish(it, 0, false, err)
			}
			return
		case len(resp.GetResults()) != len(pending):
			err := status.Errorf(codes.Internal, "publisher: the bridge answered %d results for %d events", len(resp.GetResults()), len(pending))
			for _, it := range pending {
				l.finish(it, 0, false, err)
			}
			return
		default:
			again := pending[:0:0]
			for i, r := range resp.GetResults() {
				it := pending[i]
				code := codes.Code(r.GetStatus().GetCode()) //nolint:gosec // a gRPC code: small and non-negative
				switch {
				case code == codes.OK:
					l.finish(it, r.GetId(), r.GetDuplicate(), nil)
				case retryable(code):
					lastErr = status.Error(code, r.GetStatus().GetMessage())
					again = append(again, it)
				default:
					l.finish(it, 0, false, status.Error(code, r.GetStatus().GetMessage()))
				}
			}
			pending = again
			if len(pending) == 0 {
				return
			}
		}
		if !l.sleep(jitter(backoff)) {
			for _, it := range pending {
				l.finish(it, 0, false, ErrClosed)
			}
			return
		}
		backoff = min(2*backoff, retryLongest)
	}
}

// retryable reports whether a call or an event that failed with code may
// be sent again: UNAVAILABLE says it was not stored, or the connection
// failed; DEADLINE_EXCEEDED is an attempt that ran out of CallTimeout. The
// idempotency keys make both safe even when the first attempt was stored.
func retryable(code codes.Code) bool {
	return code == codes.Unavailable || code == codes.DeadlineExceeded
}

// jitter returns a duration between d/2 and d.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1) //nolint:gosec // spreading retries needs no secret randomness
}

// sleep waits d, or until the Publisher aborts (then false).
func (l *lane) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.p.abortCtx.Done():
		return false
	}
}

// expire gives up on the events of pending that are RetryTimeout old,
// with lastErr, and returns the others.
func (l *lane) expire(pending []*item, lastErr error) []*item {
	if lastErr == nil {
		return pending
	}
	keep := pending[:0:0]
	for _, it := range pending {
		if age := time.Since(it.added); age >= l.p.s.RetryTimeout {
			l.finish(it, 0, false, fmt.Errorf("publisher: gave up after %d attempts in %v (Settings.RetryTimeout): %w", it.attempts, age.Round(time.Millisecond), lastErr))
			continue
		}
		keep = append(keep, it)
	}
	return keep
}

// finish sets the result of it and gives its room back.
func (l *lane) finish(it *item, id uint64, duplicate bool, err error) {
	it.res.set(id, duplicate, err)
	l.p.flow.release(it.charge)
}
