package bridge

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Memory engine bounds.
const (
	// maxDispatchQueue bounds the events stored but not yet fanned out. A
	// publisher waits (for CPU-bound fan-out, never for a browser) past it.
	maxDispatchQueue = 1 << 16
	// maxTombstones bounds the entries kept for streams that have
	// subscribers but no events left; see MemoryEngine.settle.
	maxTombstones = 100_000
	// forgetBuckets is the size of the table that remembers, by a hash of
	// the stream name, the highest id dropped from the streams whose entry
	// went (MemoryEngine.forgotten): 32 KiB. One value for all of them
	// would reset every resume from before the newest such id on every
	// unknown stream; a bucket resets only those on streams that share it.
	forgetBuckets = 1 << 12
	// minShrink is the fewest slots a table (the stream map, the heap, the
	// tombstones) must have before the engine rebuilds it smaller: below that,
	// shrinking saves less than it costs.
	minShrink = 64
	// minRing is the most slots a ring keeps however few events it holds.
	minRing = 8
)

// Why events leave the memory engine's history: the values of the reason
// label of bridge_history_evicted_events_total, in the order of the
// evicted counters.
const (
	trimSize   = iota // more than --history-size on the stream
	trimAge           // older than --history-age
	trimMemory        // the oldest of all when history is over --history-memory
	numTrimReasons
)

var trimReasons = [numTrimReasons]string{"size", "age", "memory"}

// MemoryEngine is the embedded [Engine]: ids and history live in this process.
//
// Ids are max(previous+1, now in Unix microseconds), so they increase across
// streams and keep increasing after a restart (as long as the clock does not
// go back and the rate stays under a million events a second). A restart loses
// history: a client resuming with an id from before it gets a reset.
//
// History is bounded three ways: per stream by count and age, and in all by
// the bytes it holds (engine_memory_cost.go says what counts). Over that
// budget the oldest events of all go first, whatever their stream: ids
// increase across streams, so they are the ones with the smallest ids, kept
// at the top of a heap of stream heads. A stream whose history emptied keeps
// its entry only while a connection subscribes to it (a tombstone); any
// other goes, its highest trimmed id folded into a small table, so a stream
// with no events and no subscribers costs nothing.
//
// A MemoryEngine is safe for concurrent use; Run must be called once.
type MemoryEngine struct {
	size   int
	age    time.Duration
	budget int64
	now    func() time.Time
	seed   maphash.Seed

	mu      sync.Mutex
	last    uint64 // the last id assigned
	floor   uint64 // ids at or below floor were not assigned by this engine
	streams map[string]*history
	// mapSlots is the most entries streams held since it was made, which
	// its memory follows (Go maps do not give memory back): forget
	// rebuilds the map when it holds a quarter of that.
	mapSlots int
	// heads is a min-heap of the streams with events, keyed by the id of
	// their oldest event, so its top holds the oldest event of all. A key
	// may be stale (lower than the stream's oldest id, trimmed since by count
	// or age) and an entry may be of a stream left with no events: oldest
	// sets both right when they reach the top, so trimming a stream, on
	// every publish to a full one, costs no heap work. Each stream is in it
	// at most once (history.inHeap).
	heads []head
	// tombs are the streams with subscribers and no events left: they keep
	// their entry, which remembers the highest id they dropped, so that a
	// client resuming on a quiet stream is not reset for nothing.
	tombs []*history
	// forgotten is, per bucket of stream names (by hash), the highest id
	// dropped from a stream whose entry went: a resume from below it on a
	// stream without an entry is reset, and a stream that comes back starts
	// from it.
	forgotten [forgetBuckets]uint64
	// watched reports whether a connection subscribes to a stream (the
	// hub's answer, see watch); nil means none does. Called under mu.
	watched func(stream string) bool
	bytes   int64 // what history costs but the frames of its events
	events  int
	evicted [numTrimReasons]int64
	// frameBytes is what the frames of the events in history cost: they are
	// built outside the lock (Event.frame), so the count is atomic.
	frameBytes atomic.Int64

	// dedupe is the table of idempotency keys; nil when dedupe is off
	// (engine_memory_dedupe.go).
	dedupe *dedupeTable

	queue   []*Event      // stored, not yet delivered, in id order
	spare   []*Event      // the dispatcher's previous batch, reused
	wake    chan struct{} // capacity 1: the queue is not empty
	drained chan struct{} // closed (and replaced) when the dispatcher takes the queue
}

// history is one stream's bounded history, oldest first.
type history struct {
	name    string // the map key, which the stream's events share
	ring    ring
	trimmed uint64 // the highest id dropped from this stream, 0 if none
	inHeap  bool   // in MemoryEngine.heads
	gone    bool   // its entry went (forget); a stale heap entry may remain
	tomb    int    // index in MemoryEngine.tombs, -1 when not a tombstone
}

// head is an entry of MemoryEngine.heads.
type head struct {
	key uint64 // at most the id of h's oldest event
	h   *history
}

// NewMemoryEngine returns a memory engine that keeps, per stream, at most size
// events (zero means 1000) no older than age (zero means one hour), within
// the default memory budget (256 MiB): see [NewMemoryEngineBudget].
func NewMemoryEngine(size int, age time.Duration) *MemoryEngine {
	return newMemoryEngine(size, age, 0, time.Now)
}

// NewMemoryEngineBudget returns a memory engine like [NewMemoryEngine] whose
// histories together cost at most budget bytes of memory (zero or negative
// means 256 MiB; see [Config.HistoryMemory]).
func NewMemoryEngineBudget(size int, age time.Duration, budget int64) *MemoryEngine {
	return newMemoryEngine(size, age, budget, time.Now)
}

// MemoryConfig configures [NewMemoryEngineConfig]. Zero fields mean the
// defaults of the [Config] fields of the same names.
type MemoryConfig struct {
	HistorySize   int
	HistoryAge    time.Duration
	HistoryMemory int64
	// DedupeWindow is how long an idempotency key names its event;
	// negative turns dedupe off (Event.Key is ignored).
	DedupeWindow time.Duration
	// DedupeKeys bounds the keys remembered, all streams together.
	DedupeKeys int

	// dedupeClock, when set, is the dedupe table's clock (tests).
	dedupeClock func() time.Time
}

// NewMemoryEngineConfig returns a memory engine configured by c.
func NewMemoryEngineConfig(c MemoryConfig) *MemoryEngine {
	e := newMemoryEngine(c.HistorySize, c.HistoryAge, c.HistoryMemory, time.Now)
	e.setDedupe(c.DedupeWindow, c.DedupeKeys, c.dedupeClock)
	return e
}

// setDedupe turns the dedupe table on (window zero means the default, and
// negative off). now nil means the engine's clock. Call it before the
// engine is used.
func (e *MemoryEngine) setDedupe(window time.Duration, keys int, now func() time.Time) {
	if window < 0 {
		e.dedupe = nil
		return
	}
	if window == 0 {
		window = defaultDedupeWindow
	}
	if keys <= 0 {
		keys = defaultDedupeKeys
	}
	if now == nil {
		now = e.now
	}
	e.dedupe = newDedupeTable(window, keys, now)
}

func newMemoryEngine(size int, age time.Duration, budget int64, now func() time.Time) *MemoryEngine {
	if size <= 0 {
		size = defaultHistorySize
	}
	if age <= 0 {
		age = defaultHistoryAge
	}
	if budget <= 0 {
		budget = defaultHistoryMemory
	}
	start := uint64(now().UnixMicro())
	e := &MemoryEngine{
		size:    size,
		age:     age,
		budget:  budget,
		now:     now,
		seed:    maphash.MakeSeed(),
		last:    start,
		floor:   start,
		streams: make(map[string]*history),
		wake:    make(chan struct{}, 1),
		drained: make(chan struct{}),
	}
	e.setDedupe(0, 0, nil)
	return e
}

// watch tells e whether a connection subscribes to a stream: the hub's
// hub.watched. e calls it under its own lock, only when a stream's history
// empties and at each sweep, to keep the entry of a stream that
// subscribers will resume on.
func (e *MemoryEngine) watch(watched func(stream string) bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.watched = watched
}

// Publish implements [Engine]. It waits only while the dispatcher is more than
// 65,536 events behind, and returns ctx's error if ctx ends first. An event
// with a Key that names one already stored is not stored: Publish returns
// that event's id (PublishBatch also says it was a duplicate).
func (e *MemoryEngine) Publish(ctx context.Context, ev *Event) (uint64, error) {
	if ev.Key != "" && e.dedupe != nil {
		var res [1]Stored
		e.PublishBatch(ctx, []*Event{ev}, res[:])
		return res[0].ID, res[0].Err
	}
	if err := e.lockRoom(ctx); err != nil {
		return 0, err
	}
	now := e.now()
	e.add(ev, now)
	if e.over() {
		e.enforce()
	}
	e.mu.Unlock()
	e.wakeDispatcher()
	return ev.ID, nil
}

// PublishBatch implements [Engine]: the whole batch is stored under one
// acquisition of the lock, and joins the dispatch queue at once, so the hub
// hands each stream's events of the batch to a connection as one group.
// It waits, before storing anything, only while the dispatcher is more than
// 65,536 events behind (a batch may take the queue past that by its own
// size, which --max-batch bounds); if ctx ends first, every result has
// ctx's error.
//
// An event whose Key names one stored on its stream within the dedupe
// window (earlier in the same batch included) is not stored: its result is
// that event's id with Duplicate set. Keys are checked and recorded under
// the same lock as the store, so of concurrent publishes with one key
// exactly one stores.
func (e *MemoryEngine) PublishBatch(ctx context.Context, evs []*Event, res []Stored) {
	if len(evs) == 0 {
		return
	}
	res = res[:len(evs)] // the contract; and the bound is checked once
	if err := e.lockRoom(ctx); err != nil {
		for i := range res {
			res[i] = Stored{Err: err}
		}
		return
	}
	now := e.now()
	var dedupeNow time.Time
	if e.dedupe != nil {
		dedupeNow = e.dedupe.now()
	}
	stored := 0
	for i, ev := range evs {
		if ev.Key != "" && e.dedupe != nil {
			k := dedupeKey{stream: ev.Stream, key: ev.Key}
			if id, ok := e.dedupe.lookup(k, dedupeNow); ok {
				res[i] = Stored{ID: id, Duplicate: true}
				continue
			}
			e.add(ev, now)
			k.stream = ev.Stream // the history's copy of the name
			e.dedupe.add(k, ev.ID, dedupeNow)
		} else {
			e.add(ev, now)
		}
		res[i] = Stored{ID: ev.ID} //nolint:gosec // G602: res was sliced to len(evs) above
		stored++
	}
	if e.over() {
		e.enforce()
	}
	e.mu.Unlock()
	if stored > 0 {
		e.wakeDispatcher()
	}
}

// lockRoom takes the lock once the dispatch queue has room (fewer than
// maxDispatchQueue events), and returns with it held; or, when ctx ends
// first, returns ctx's error without it.
func (e *MemoryEngine) lockRoom(ctx context.Context) error {
	e.mu.Lock()
	for len(e.queue) >= maxDispatchQueue {
		drained := e.drained
		e.mu.Unlock()
		select {
		case <-drained:
		case <-ctx.Done():
			return fmt.Errorf("wait for fan-out: %w", ctx.Err())
		}
		e.mu.Lock()
	}
	return nil
}

// add assigns ev its id (and time), stores it in its stream's history and
// queues it for the dispatcher. Called under the lock; the caller enforces
// the budget and wakes the dispatcher.
func (e *MemoryEngine) add(ev *Event, now time.Time) {
	if ev.Time.IsZero() {
		ev.Time = now
	}
	e.last = max(e.last+1, uint64(now.UnixMicro()))
	ev.ID = e.last
	h := e.history(ev.Stream)
	ev.Stream = h.name // one copy of the name per stream, not one per event
	h.trimAge(e, now.Add(-e.age))
	if h.ring.len() == e.size {
		e.drop(h, trimSize)
	}
	e.store(h, ev)
	e.queue = append(e.queue, ev)
}

// wakeDispatcher tells Run the queue is not empty.
func (e *MemoryEngine) wakeDispatcher() {
	select {
	case e.wake <- struct{}{}:
	default: // already woken
	}
}

// history returns the entry of stream, making one if there is none, and
// keeps it (it is no longer a tombstone): an event is about to be stored.
func (e *MemoryEngine) history(stream string) *history {
	h := e.streams[stream]
	if h == nil {
		// The stream may be one whose entry went, its trimmed ids folded
		// into forgotten: start from there, as Replay does for an unknown
		// stream, or a resume from before would silently miss the events
		// dropped from it.
		h = &history{name: stream, trimmed: e.forgotten[e.bucket(stream)], tomb: -1}
		e.streams[stream] = h
		e.bytes += streamCost(stream)
		if n := len(e.streams); n > e.mapSlots {
			e.bytes += int64(n-e.mapSlots) * mapEntryCost
			e.mapSlots = n
		}
		return h
	}
	if h.tomb >= 0 {
		e.untomb(h)
	}
	return h
}

// store appends ev to h and counts it.
func (e *MemoryEngine) store(h *history, ev *Event) {
	if !h.inHeap {
		e.heapPush(h, ev.ID)
	}
	slots := len(h.ring.buf)
	h.ring.push(ev, e.size)
	e.resized(slots, len(h.ring.buf))
	ev.charge = &e.frameBytes
	e.bytes += eventCost(ev)
	e.events++
}

// drop removes h's oldest event from history, for reason. h's heap key is
// stale from then on, which oldest sets right; h may be left with no event,
// for its caller to settle, or to refill.
func (e *MemoryEngine) drop(h *history, reason int) {
	slots := len(h.ring.buf)
	ev := h.ring.popFront()
	e.resized(slots, len(h.ring.buf))
	h.trimmed = ev.ID
	ev.uncharge()
	e.bytes -= eventCost(ev)
	e.events--
	e.evicted[reason]++
}

// resized counts a ring that went from was slots to is.
func (e *MemoryEngine) resized(was, is int) {
	if was != is {
		e.bytes += ringCost(is) - ringCost(was)
	}
}

// over reports whether history costs more than its budget.
func (e *MemoryEngine) over() bool { return e.bytes+e.frameBytes.Load() > e.budget }

// enforce evicts the oldest events of all, whatever their stream, until
// history fits its budget; when no event is left, the tombstones go too.
func (e *MemoryEngine) enforce() {
	for e.over() {
		h := e.oldest()
		if h == nil {
			if len(e.tombs) == 0 {
				return // only the tables' own slack is left, which shrinks as they do
			}
			e.forget(e.tombs[len(e.tombs)-1])
			continue
		}
		e.drop(h, trimMemory)
		if h.ring.len() == 0 {
			e.settle(h)
		}
	}
}

// oldest returns the stream whose oldest event is the oldest event in
// history (the smallest id), or nil when history holds none. On its way it
// sets right what trims left at the top of the heap: a stale key is raised
// to the stream's oldest id and sifted down, and the entry of a stream
// with no events is removed (and the stream settled). Keys are never above
// their stream's oldest id, so once the top's key is right, no event is
// older than it. Each fix was paid for by a trim, which did no heap work.
func (e *MemoryEngine) oldest() *history {
	for len(e.heads) > 0 {
		top := &e.heads[0]
		h := top.h
		if h.ring.len() == 0 {
			e.heapPop()
			e.settle(h)
			continue
		}
		if id := h.ring.at(0).ID; id != top.key {
			top.key = id
			e.heapDown(0)
			continue
		}
		return h
	}
	return nil
}

// settle decides what becomes of h, whose history is empty and which is
// not about to get an event: it stays as a tombstone while a connection
// subscribes to it (there are at most maxTombstones), else its entry goes.
func (e *MemoryEngine) settle(h *history) {
	if h.ring.len() > 0 || h.tomb >= 0 || h.gone {
		return
	}
	e.resized(len(h.ring.buf), 0)
	h.ring = ring{}
	if len(e.tombs) < maxTombstones && e.watched != nil && e.watched(h.name) {
		h.tomb = len(e.tombs)
		slots := cap(e.tombs)
		e.tombs = append(e.tombs, h)
		if cap(e.tombs) != slots {
			e.bytes += tombsCost(cap(e.tombs)) - tombsCost(slots)
		}
		return
	}
	e.forget(h)
}

// forget drops the entry of h, a stream with no events, folding the
// highest id it dropped into its bucket of forgotten, so a resume from
// before it on that stream is still reset, never given a gap.
func (e *MemoryEngine) forget(h *history) {
	if h.tomb >= 0 {
		e.untomb(h)
	}
	b := &e.forgotten[e.bucket(h.name)]
	*b = max(*b, h.trimmed)
	delete(e.streams, h.name)
	h.gone = true
	e.bytes -= streamCost(h.name)
	if len(e.streams) == 0 && e.mapSlots > 0 || e.mapSlots > minShrink && len(e.streams) < e.mapSlots/4 {
		// A map's memory stays that of its largest size: a burst of
		// streams would hold it for good. Copying a quarter of the
		// entries, once per three quarters deleted, is O(1) per delete.
		m := make(map[string]*history, len(e.streams))
		for name, h := range e.streams {
			m[name] = h
		}
		e.streams = m
		e.bytes -= int64(e.mapSlots-len(m)) * mapEntryCost
		e.mapSlots = len(m)
	}
}

// untomb removes h from the tombstones.
func (e *MemoryEngine) untomb(h *history) {
	last := len(e.tombs) - 1
	moved := e.tombs[last]
	e.tombs[h.tomb] = moved
	moved.tomb = h.tomb
	e.tombs[last] = nil
	e.tombs = e.tombs[:last]
	h.tomb = -1
	if len(e.tombs) == 0 {
		e.bytes -= tombsCost(cap(e.tombs))
		e.tombs = nil
	} else if c := cap(e.tombs); c > minShrink && len(e.tombs) < c/4 {
		e.tombs = append(make([]*history, 0, c/2), e.tombs...)
		e.bytes += tombsCost(cap(e.tombs)) - tombsCost(c)
	}
}

// bucket returns the bucket of forgotten that stream falls in.
func (e *MemoryEngine) bucket(stream string) int {
	return int(maphash.String(e.seed, stream) % forgetBuckets)
}

// heapPush adds h, whose oldest event has id key, to the heap.
func (e *MemoryEngine) heapPush(h *history, key uint64) {
	slots := cap(e.heads)
	e.heads = append(e.heads, head{key: key, h: h})
	if cap(e.heads) != slots {
		e.bytes += headsCost(cap(e.heads)) - headsCost(slots)
	}
	h.inHeap = true
	// Up: a new key is usually the largest (ids increase), so this stops at
	// once.
	for i := len(e.heads) - 1; i > 0; {
		parent := (i - 1) / 2
		if e.heads[parent].key <= e.heads[i].key {
			break
		}
		e.heads[parent], e.heads[i] = e.heads[i], e.heads[parent]
		i = parent
	}
}

// heapPop removes the top of the heap.
func (e *MemoryEngine) heapPop() {
	last := len(e.heads) - 1
	e.heads[0].h.inHeap = false
	e.heads[0] = e.heads[last]
	e.heads[last] = head{}
	e.heads = e.heads[:last]
	e.heapDown(0)
	if len(e.heads) == 0 {
		e.bytes -= headsCost(cap(e.heads))
		e.heads = nil
	} else if c := cap(e.heads); c > minShrink && len(e.heads) < c/4 {
		e.heads = append(make([]head, 0, c/2), e.heads...)
		e.bytes += headsCost(cap(e.heads)) - headsCost(c)
	}
}

// heapDown moves the entry at i down to its place.
func (e *MemoryEngine) heapDown(i int) {
	n := len(e.heads)
	for {
		least := i
		if l := 2*i + 1; l < n && e.heads[l].key < e.heads[least].key {
			least = l
		}
		if r := 2*i + 2; r < n && e.heads[r].key < e.heads[least].key {
			least = r
		}
		if least == i {
			return
		}
		e.heads[least], e.heads[i] = e.heads[i], e.heads[least]
		i = least
	}
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
		var trimmed uint64
		if h != nil {
			h.trimAge(e, cutoff)
			trimmed = h.trimmed
		} else {
			trimmed = e.forgotten[e.bucket(name)]
		}
		if after < trimmed {
			r.Reset = ResetTrimmed
			return r, nil
		}
		if h == nil {
			continue
		}
		if h.ring.len() == 0 {
			e.settle(h)
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

// Latest implements [Engine]: the last n events of stream in its ring, read
// under the lock that Publish holds while it assigns an id and stores the
// event, so Head covers them all.
func (e *MemoryEngine) Latest(_ context.Context, stream string, n int) (Replay, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := Replay{Head: e.last}
	h := e.streams[stream]
	if h == nil {
		return r, nil
	}
	h.trimAge(e, e.now().Add(-e.age))
	k := min(n, h.ring.len())
	r.Events = make([]*Event, 0, k)
	for i := h.ring.len() - k; i < h.ring.len(); i++ {
		r.Events = append(r.Events, h.ring.at(i))
	}
	if h.ring.len() == 0 {
		e.settle(h)
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

// HistoryStats are the memory engine's figures, for metrics.
type HistoryStats struct {
	// Events is how many events history holds, all streams.
	Events int
	// Streams is how many streams have an entry: those with events, and the
	// tombstones of those with subscribers but no events left.
	Streams int
	// Bytes is what history costs, as counted against Limit
	// (engine_memory_cost.go).
	Bytes int64
	// Limit is the budget, --history-memory.
	Limit int64
	// EvictedSize, EvictedAge and EvictedMemory count the events that left
	// history because their stream held --history-size events, because
	// they were older than --history-age, and because they were the oldest
	// of all when history was over --history-memory.
	EvictedSize, EvictedAge, EvictedMemory int64
	// DedupeKeys is how many idempotency keys the dedupe table holds,
	// DedupeBytes what it costs (beside Bytes, not in it), and
	// DedupeEvicted how many keys left it because it was full
	// (--dedupe-keys) before their window ended.
	DedupeKeys    int
	DedupeBytes   int64
	DedupeEvicted int64
}

// HistoryStats returns the engine's figures. They are kept as history
// changes: reading them costs the engine's lock and nothing more.
func (e *MemoryEngine) HistoryStats() HistoryStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	var keys int
	var keyBytes, keysEvicted int64
	if d := e.dedupe; d != nil {
		keys, keyBytes, keysEvicted = len(d.keys), d.cost(), d.evicted
	}
	return HistoryStats{
		DedupeKeys:    keys,
		DedupeBytes:   keyBytes,
		DedupeEvicted: keysEvicted,
		Events:        e.events,
		Streams:       len(e.streams),
		Bytes:         e.bytes + e.frameBytes.Load(),
		Limit:         e.budget,
		EvictedSize:   e.evicted[trimSize],
		EvictedAge:    e.evicted[trimAge],
		EvictedMemory: e.evicted[trimMemory],
	}
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
			batch, frames := e.take()
			deliver(batch)
			// Fan-out built frames, which count: bring history back under
			// its budget now, not at the next publish. No frame built (no
			// subscriber), no lock.
			if e.frameBytes.Load() > frames {
				e.mu.Lock()
				if e.over() {
					e.enforce()
				}
				e.mu.Unlock()
			}
		}
	}
}

// take swaps out the queue of undelivered events, handing the dispatcher's
// previous batch back for reuse, and releases publishers waiting for room.
// frames is what the frames in history cost then.
func (e *MemoryEngine) take() (batch []*Event, frames int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.spare) // drop references to delivered events
	batch = e.queue
	e.queue = e.spare[:0]
	e.spare = batch
	close(e.drained)
	e.drained = make(chan struct{})
	return batch, e.frameBytes.Load()
}

// sweep drops expired events, oldest first, without visiting the streams
// that have none: the heap of stream heads is in id order, which is the
// order of time but for a clock that went back (such events go once those
// before them did, and a read or publish on their stream trims them
// anyway). The tombstones of streams nobody subscribes to any more go, and
// the budget is enforced (frames built by replays since count).
func (e *MemoryEngine) sweep() {
	e.mu.Lock()
	defer e.mu.Unlock()
	cutoff := e.now().Add(-e.age)
	for h := e.oldest(); h != nil && h.ring.at(0).Time.Before(cutoff); h = e.oldest() {
		h.trimAge(e, cutoff)
		if h.ring.len() == 0 {
			e.settle(h)
		}
	}
	for i := len(e.tombs) - 1; i >= 0; i-- { // forget moves the last one to i
		if h := e.tombs[i]; e.watched == nil || !e.watched(h.name) {
			e.forget(h)
		}
	}
	if e.dedupe != nil {
		e.dedupe.expire(e.dedupe.now())
	}
	if e.over() {
		e.enforce()
	}
}

// trimAge drops the events of h stored before cutoff.
func (h *history) trimAge(e *MemoryEngine, cutoff time.Time) {
	for h.ring.len() > 0 && h.ring.at(0).Time.Before(cutoff) {
		e.drop(h, trimAge)
	}
}

// ring is a FIFO of events in id order that grows up to the capacity its
// caller passes to push, doubling, and halves when a quarter full.
type ring struct {
	buf   []*Event
	start int
	n     int
}

func (r *ring) len() int { return r.n }

func (r *ring) at(i int) *Event { return r.buf[(r.start+i)%len(r.buf)] }

// push appends ev; the caller has made room when r holds limit events.
func (r *ring) push(ev *Event, limit int) {
	if r.n == len(r.buf) {
		// From one slot: most streams hold a few events, many hold one.
		r.resize(min(max(2*len(r.buf), 1), limit))
	}
	r.buf[(r.start+r.n)%len(r.buf)] = ev
	r.n++
}

// popFront removes the oldest event and returns it. A ring of more than
// minRing slots left a quarter full halves, and one left empty lets its
// slots go, so a stream that held many events and holds few (trimmed by the
// budget, or by age) does not keep their slots; a small ring keeps its
// slots, so that a stream of --history-size 1 does not allocate on every
// publish.
func (r *ring) popFront() *Event {
	ev := r.buf[r.start]
	r.buf[r.start] = nil
	r.start = (r.start + 1) % len(r.buf)
	r.n--
	switch {
	case len(r.buf) <= minRing:
	case r.n == 0:
		r.buf, r.start = nil, 0
	case r.n <= len(r.buf)/4:
		r.resize(len(r.buf) / 2)
	}
	return ev
}

// resize moves the events to a buffer of size slots.
func (r *ring) resize(size int) {
	buf := make([]*Event, size)
	for i := range r.n {
		buf[i] = r.at(i)
	}
	r.buf, r.start = buf, 0
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
