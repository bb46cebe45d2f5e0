package bridge

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Memory engine bounds.
const (
	// maxDispatchQueue bounds the events stored but not yet fanned out. A
	// publisher waits (for CPU-bound fan-out, never for a browser) past it.
	maxDispatchQueue = 1 << 16
	// maxTombstones bounds the entries kept for streams whose history expired
	// entirely; see MemoryEngine.sweep.
	maxTombstones = 100_000
)

// MemoryEngine is the embedded [Engine]: ids and history live in this process.
//
// Ids are max(previous+1, now in Unix microseconds), so they increase across
// streams and keep increasing after a restart (as long as the clock does not
// go back and the rate stays under a million events a second). A restart loses
// history: a client resuming with an id from before it gets a reset.
//
// A MemoryEngine is safe for concurrent use; Run must be called once.
type MemoryEngine struct {
	size int
	age  time.Duration
	now  func() time.Time

	mu      sync.Mutex
	last    uint64 // the last id assigned
	floor   uint64 // ids at or below floor were not assigned by this engine
	streams map[string]*history
	// forgotten is the highest id trimmed from a stream whose entry was
	// dropped; a resume from below it on an unknown stream is reset.
	forgotten uint64
	queue     []*Event      // stored, not yet delivered, in id order
	spare     []*Event      // the dispatcher's previous batch, reused
	wake      chan struct{} // capacity 1: the queue is not empty
	drained   chan struct{} // closed (and replaced) when the dispatcher takes the queue
}

// history is one stream's bounded history, oldest first.
type history struct {
	ring    ring
	trimmed uint64 // the highest id dropped from this stream, 0 if none
}

// NewMemoryEngine returns a memory engine that keeps, per stream, at most size
// events (zero means 1000) no older than age (zero means one hour).
func NewMemoryEngine(size int, age time.Duration) *MemoryEngine {
	return newMemoryEngine(size, age, time.Now)
}

func newMemoryEngine(size int, age time.Duration, now func() time.Time) *MemoryEngine {
	if size <= 0 {
		size = defaultHistorySize
	}
	if age <= 0 {
		age = defaultHistoryAge
	}
	start := uint64(now().UnixMicro())
	return &MemoryEngine{
		size:    size,
		age:     age,
		now:     now,
		last:    start,
		floor:   start,
		streams: make(map[string]*history),
		wake:    make(chan struct{}, 1),
		drained: make(chan struct{}),
	}
}

// Publish implements [Engine]. It waits only while the dispatcher is more than
// 65,536 events behind, and returns ctx's error if ctx ends first.
func (e *MemoryEngine) Publish(ctx context.Context, ev *Event) (uint64, error) {
	e.mu.Lock()
	for len(e.queue) >= maxDispatchQueue {
		drained := e.drained
		e.mu.Unlock()
		select {
		case <-drained:
		case <-ctx.Done():
			return 0, fmt.Errorf("wait for fan-out: %w", ctx.Err())
		}
		e.mu.Lock()
	}
	now := e.now()
	if ev.Time.IsZero() {
		ev.Time = now
	}
	e.last = max(e.last+1, uint64(now.UnixMicro()))
	ev.ID = e.last
	h := e.streams[ev.Stream]
	if h == nil {
		// The stream may be one that sweep folded into e.forgotten, its
		// trimmed ids then lost: start from forgotten, as Replay does for an
		// unknown stream, or a resume from before the fold would silently
		// miss the events dropped from it.
		h = &history{trimmed: e.forgotten}
		e.streams[ev.Stream] = h
	}
	h.trimAge(now.Add(-e.age))
	if h.ring.len() == e.size {
		h.trimmed = h.ring.popFront().ID
	}
	h.ring.push(ev, e.size)
	e.queue = append(e.queue, ev)
	e.mu.Unlock()

	select {
	case e.wake <- struct{}{}:
	default: // already woken
	}
	return ev.ID, nil
}

// Replay implements [Engine].
func (e *MemoryEngine) Replay(_ context.Context, streams []string, after uint64, limit int) (Replay, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := Replay{Head: e.last}
	switch {
	case after > e.last:
		r.Reset = ResetUnknownID
		return r, nil
	case after < e.floor:
		r.Reset = ResetHistoryLost
		return r, nil
	}
	cutoff := e.now().Add(-e.age)
	var found [][]*Event
	total := 0
	for _, name := range streams {
		h := e.streams[name]
		trimmed := e.forgotten
		if h != nil {
			h.trimAge(cutoff)
			trimmed = h.trimmed
		}
		if after < trimmed {
			r.Reset = ResetTrimmed
			return r, nil
		}
		if h == nil {
			continue
		}
		evs := h.ring.after(after)
		if len(evs) > 0 {
			found = append(found, evs)
			total += len(evs)
		}
	}
	if limit > 0 && total > limit {
		r.Reset = ResetTooFarBehind
		return r, nil
	}
	r.Events = make([]*Event, 0, total)
	for _, evs := range found {
		r.Events = append(r.Events, evs...)
	}
	if len(found) > 1 {
		slices.SortFunc(r.Events, func(a, b *Event) int { return compareIDs(a.ID, b.ID) })
	}
	return r, nil
}

func compareIDs(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// HistoryStats returns how many events all streams' histories hold and the
// size of their data, for metrics. It takes the engine's lock: call it at
// scrape time, not per event.
func (e *MemoryEngine) HistoryStats() (events, bytes int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, h := range e.streams {
		events += h.ring.len()
		bytes += h.ring.bytes
	}
	return events, bytes
}

// Run implements [Engine]: it is the single dispatcher. It also sweeps expired
// history once a minute (or once per history age, when shorter).
func (e *MemoryEngine) Run(ctx context.Context, deliver func([]*Event)) error {
	sweep := time.NewTicker(min(e.age, time.Minute))
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sweep.C:
			e.sweep()
		case <-e.wake:
			deliver(e.take())
		}
	}
}

// take swaps out the queue of undelivered events, handing the dispatcher's
// previous batch back for reuse, and releases publishers waiting for room.
func (e *MemoryEngine) take() []*Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.spare) // drop references to delivered events
	batch := e.queue
	e.queue = e.spare[:0]
	e.spare = batch
	close(e.drained)
	e.drained = make(chan struct{})
	return batch
}

// sweep drops expired events. A stream whose history became empty keeps a
// small entry (a tombstone) that remembers the highest id it dropped, so a
// client resuming on a quiet stream is not reset for nothing. Past
// maxTombstones, all tombstones fold into e.forgotten, which resets resumes
// from older ids on any stream the engine does not know.
func (e *MemoryEngine) sweep() {
	e.mu.Lock()
	defer e.mu.Unlock()
	cutoff := e.now().Add(-e.age)
	tombstones := 0
	for _, h := range e.streams {
		h.trimAge(cutoff)
		if h.ring.len() == 0 {
			h.ring = ring{}
			tombstones++
		}
	}
	if tombstones <= maxTombstones {
		return
	}
	for name, h := range e.streams {
		if h.ring.len() == 0 {
			e.forgotten = max(e.forgotten, h.trimmed)
			delete(e.streams, name)
		}
	}
}

// trimAge drops the events stored before cutoff.
func (h *history) trimAge(cutoff time.Time) {
	for h.ring.len() > 0 && h.ring.at(0).Time.Before(cutoff) {
		h.trimmed = h.ring.popFront().ID
	}
}

// ring is a FIFO of events in id order that grows up to the capacity its
// caller passes to push.
type ring struct {
	buf   []*Event
	start int
	n     int
	bytes int // sum of the events' data sizes
}

func (r *ring) len() int { return r.n }

func (r *ring) at(i int) *Event { return r.buf[(r.start+i)%len(r.buf)] }

// push appends ev; the caller has made room when r holds limit events.
func (r *ring) push(ev *Event, limit int) {
	if r.n == len(r.buf) {
		grown := make([]*Event, min(max(2*len(r.buf), 8), limit))
		for i := range r.n {
			grown[i] = r.at(i)
		}
		r.buf, r.start = grown, 0
	}
	r.buf[(r.start+r.n)%len(r.buf)] = ev
	r.n++
	r.bytes += len(ev.Data)
}

func (r *ring) popFront() *Event {
	ev := r.buf[r.start]
	r.buf[r.start] = nil
	r.start = (r.start + 1) % len(r.buf)
	r.n--
	r.bytes -= len(ev.Data)
	return ev
}

// after returns a copy of the events whose id is greater than id.
func (r *ring) after(id uint64) []*Event {
	lo, hi := 0, r.n
	for lo < hi { // first index with ID > id
		mid := int(uint(lo+hi) >> 1)
		if r.at(mid).ID <= id {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	out := make([]*Event, 0, r.n-lo)
	for i := lo; i < r.n; i++ {
		out = append(out, r.at(i))
	}
	return out
}
