package publisher

import (
	"container/list"
	"context"
	"fmt"
	"sync"
)

// flow bounds the outstanding events and bytes. Waiters are served first
// come, first served, so a large event is not starved by small ones, and
// events published one after the other by one goroutine keep their order.
type flow struct {
	maxEvents, maxBytes int

	mu      sync.Mutex
	events  int
	bytes   int
	waiters list.List // of *waiter, oldest first
}

type waiter struct {
	bytes int
	ready chan struct{} // closed when granted
}

func newFlow(maxEvents, maxBytes int) *flow {
	return &flow{maxEvents: maxEvents, maxBytes: maxBytes}
}

// charge is what an event of size bytes counts against maxBytes: at most
// maxBytes, so that an event larger than the bound goes through once
// nothing else is outstanding instead of never.
func (f *flow) charge(size int) int { return min(size, f.maxBytes) }

// acquire takes room for one event of n bytes (a charge), waiting until
// there is some, ctx ends (its error, wrapped) or stop is closed
// (ErrClosed).
func (f *flow) acquire(ctx context.Context, stop <-chan struct{}, n int) error {
	f.mu.Lock()
	if f.waiters.Len() == 0 && f.fits(n) {
		f.take(n)
		f.mu.Unlock()
		return nil
	}
	w := &waiter{bytes: n, ready: make(chan struct{})}
	elem := f.waiters.PushBack(w)
	events, bytes := f.events, f.bytes
	f.mu.Unlock()

	var err error
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		err = fmt.Errorf("publisher: no room for the event (%d events, %d bytes outstanding): %w", events, bytes, context.Cause(ctx))
	case <-stop:
		err = ErrClosed
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-w.ready: // granted meanwhile: give the room back
		f.events--
		f.bytes -= n
	default:
		f.waiters.Remove(elem)
	}
	f.grant() // the next waiters may fit now
	return err
}

// release gives back the room of one event of n bytes.
func (f *flow) release(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events--
	f.bytes -= n
	f.grant()
}

func (f *flow) fits(n int) bool {
	return f.events < f.maxEvents && f.bytes+n <= f.maxBytes
}

func (f *flow) take(n int) {
	f.events++
	f.bytes += n
}

// grant hands room to the waiters at the front, in order, while they fit.
func (f *flow) grant() {
	for e := f.waiters.Front(); e != nil; e = f.waiters.Front() {
		w := e.Value.(*waiter)
		if !f.fits(w.bytes) {
			return
		}
		f.take(w.bytes)
		f.waiters.Remove(e)
		close(w.ready)
	}
}
