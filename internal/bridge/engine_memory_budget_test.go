package bridge

import (
	"math"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
)

// checkBooks recounts what e's history costs from scratch, walking every
// structure, and fails the test unless the engine's running counts are
// exactly that: bytes, frame bytes, events, and every event's own share.
// It also checks the heap: every stream with events is in it once, no key
// is above its stream's oldest id, and each parent's key is at most its
// children's.
func checkBooks(t *testing.T, e *MemoryEngine) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	var bytes, frames int64
	events := 0
	for name, h := range e.streams {
		if h.name != name || h.gone {
			t.Fatalf("entry %q holds history %q (gone %t)", name, h.name, h.gone)
		}
		bytes += streamCost(name) + ringCost(len(h.ring.buf))
		for i := range h.ring.len() {
			ev := h.ring.at(i)
			if ev.Stream != name {
				t.Fatalf("event %d of stream %q names stream %q", ev.ID, name, ev.Stream)
			}
			bytes += eventCost(ev)
			var own int64
			for f := range numFormats {
				if fr := ev.frames[f].Load(); fr != nil {
					own += frameCost(f, fr)
				}
			}
			if got := ev.charged.Load(); got != own {
				t.Errorf("event %d charged %d bytes of frames, its frames cost %d", ev.ID, got, own)
			}
			frames += own
		}
		events += h.ring.len()
		if h.ring.len() > 0 && !h.inHeap {
			t.Errorf("stream %q holds %d events but is not in the heap", name, h.ring.len())
		}
		if h.ring.len() == 0 && h.tomb < 0 && !h.inHeap {
			t.Errorf("stream %q holds no events, is no tombstone, and is not in the heap to be settled", name)
		}
	}
	bytes += int64(e.mapSlots)*mapEntryCost + headsCost(cap(e.heads)) + tombsCost(cap(e.tombs))
	if e.bytes != bytes || e.frameBytes.Load() != frames || e.events != events {
		t.Errorf("engine counts %d bytes, %d bytes of frames, %d events; recounted %d, %d, %d",
			e.bytes, e.frameBytes.Load(), e.events, bytes, frames, events)
	}
	if e.mapSlots < len(e.streams) {
		t.Errorf("map slots %d, fewer than its %d entries", e.mapSlots, len(e.streams))
	}
	seen := map[*history]bool{}
	for i, hd := range e.heads {
		if seen[hd.h] {
			t.Errorf("stream %q is in the heap twice", hd.h.name)
		}
		seen[hd.h] = true
		if !hd.h.inHeap {
			t.Errorf("heap entry of %q, which says it is not in the heap", hd.h.name)
		}
		if hd.h.ring.len() > 0 && hd.key > hd.h.ring.at(0).ID {
			t.Errorf("heap key %d of %q is above its oldest id %d", hd.key, hd.h.name, hd.h.ring.at(0).ID)
		}
		if i > 0 && e.heads[(i-1)/2].key > hd.key {
			t.Errorf("heap entry %d (key %d) is below its parent (key %d)", i, hd.key, e.heads[(i-1)/2].key)
		}
	}
	for i, h := range e.tombs {
		if h.tomb != i || h.ring.len() != 0 || e.streams[h.name] != h {
			t.Errorf("tombstone %d: %q at index %d with %d events", i, h.name, h.tomb, h.ring.len())
		}
	}
}

// heldIDs returns the ids of every event in e's history, in id order.
func heldIDs(e *MemoryEngine) []uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	var ids []uint64
	for _, h := range e.streams {
		for i := range h.ring.len() {
			ids = append(ids, h.ring.at(i).ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// publishData publishes an event of n bytes of data on stream.
func publishData(t *testing.T, e *MemoryEngine, stream string, n int) *Event {
	t.Helper()
	ev := &Event{Stream: stream, Data: make([]byte, n)}
	if _, err := e.Publish(t.Context(), ev); err != nil {
		t.Fatalf("Publish(%q) error: %v", stream, err)
	}
	return ev
}

// TestAllocSize checks the cost model against the heap: what allocSize says
// an object takes is what allocating many of them takes. Not parallel: it
// reads the process's allocation counters.
func TestAllocSize(t *testing.T) {
	const n = 10_000
	// Whatever else allocates meanwhile only adds: the least of three
	// measures is the one to trust.
	measure := func(alloc func() any) float64 {
		least := math.Inf(1)
		for range 3 {
			keep := make([]any, n)
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for i := range keep {
				keep[i] = alloc()
			}
			runtime.ReadMemStats(&after)
			runtime.KeepAlive(keep)
			least = min(least, float64(after.TotalAlloc-before.TotalAlloc)/n)
		}
		return least
	}
	// A slice put in an interface costs its header too, boxed: subtracted.
	boxed := float64(allocSize(int(unsafe.Sizeof([]byte(nil))), false))
	tests := []struct {
		name  string
		model int64
		slice bool
		alloc func() any
	}{
		{"Event", eventStructCost, false, func() any { return new(Event) }},
		{"frameBox", frameStructCost, false, func() any { return new(frameBox) }},
		{"history", historyStructCost, false, func() any { return new(history) }},
		{"data, 100 bytes", bytesCost(100), true, func() any { return make([]byte, 100) }},
		{"data, 4000 bytes", bytesCost(4000), true, func() any { return make([]byte, 4000) }},
		{"data, 5000 bytes", bytesCost(5000), true, func() any { return make([]byte, 5000) }},
		{"data, 40000 bytes", bytesCost(40000), true, func() any { return make([]byte, 40000) }},
		{"ring of 64 slots", ringCost(64), true, func() any { return make([]*Event, 64) }},
		{"ring of 65 slots", ringCost(65), true, func() any { return make([]*Event, 65) }},
		{"ring of 1000 slots", ringCost(1000), true, func() any { return make([]*Event, 1000) }},
		{"heap of 100 heads", headsCost(100), true, func() any { return make([]head, 100) }},
	}
	for _, tt := range tests {
		got := measure(tt.alloc)
		if tt.slice {
			got -= boxed
		}
		if diff := got - float64(tt.model); diff < -0.02*float64(tt.model) || diff > 0.02*float64(tt.model) {
			t.Errorf("%s: the heap takes %.1f bytes each, the cost model says %d", tt.name, got, tt.model)
		}
	}
}

func TestMemoryEngineBudgetEvictsOldestAcrossStreams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		pubs func(i int) (stream string, size int) // the i-th event
		n    int
	}{
		{name: "round robin over three streams", n: 300, pubs: func(i int) (string, int) { return "s" + strconv.Itoa(i%3), 100 }},
		{name: "one busy stream and quiet ones", n: 300, pubs: func(i int) (string, int) {
			if i%10 == 0 {
				return "quiet" + strconv.Itoa(i/10), 50
			}
			return "busy", 200
		}},
		{name: "a new stream for every event", n: 300, pubs: func(i int) (string, int) { return "user-" + strconv.Itoa(i), 100 }},
		{name: "bursts of one stream at a time", n: 300, pubs: func(i int) (string, int) { return "b" + strconv.Itoa(i/25), 10 + i%7*100 }},
		{name: "events of every size", n: 200, pubs: func(i int) (string, int) { return "s" + strconv.Itoa(i%5), i * 37 % 5000 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const budget = 16 << 10
			e := newMemoryEngine(1000, time.Hour, budget, newFakeClock(t0, 0).Now)
			var published []uint64
			for i := range tt.n {
				stream, size := tt.pubs(i)
				published = append(published, publishData(t, e, stream, size).ID)
				checkBooks(t, e)
				if s := e.HistoryStats(); s.Bytes > budget {
					t.Fatalf("after event %d, history costs %d bytes, over its budget of %d", i, s.Bytes, budget)
				}
			}
			// What is left is the newest events of all, whatever their
			// stream: every event newer than the newest evicted one.
			held := heldIDs(e)
			if len(held) == 0 || len(held) == len(published) {
				t.Fatalf("history holds %d of %d events, want the budget to have evicted some and kept some", len(held), len(published))
			}
			if diff := cmp.Diff(held, published[len(published)-len(held):]); diff != "" {
				t.Errorf("history holds %v, want the %d newest events published (-got +want):\n%s", held, len(held), diff)
			}
			s := e.HistoryStats()
			if s.EvictedMemory != int64(len(published)-len(held)) || s.EvictedSize != 0 || s.EvictedAge != 0 || s.Events != len(held) {
				t.Errorf("HistoryStats() = %+v, want %d events held and %d evicted for memory", s, len(held), len(published)-len(held))
			}
		})
	}
}

func TestMemoryEngineBudgetReplay(t *testing.T) {
	t.Parallel()
	// Streams a, b and c get events in turn, 1 KiB each, until the budget
	// evicted the first dozens; then x gets one event.
	const budget = 24 << 10
	e := newMemoryEngine(1000, time.Hour, budget, newFakeClock(t0, 0).Now)
	byStream := map[string][]uint64{}
	var all []uint64
	for i := range 60 {
		s := string(rune('a' + i%3))
		id := publishData(t, e, s, 1024).ID
		byStream[s] = append(byStream[s], id)
		all = append(all, id)
	}
	x := publishData(t, e, "x", 10).ID
	head := x
	held := heldIDs(e)
	oldest := held[0] // the oldest event left; every older one was evicted
	if oldest == all[0] {
		t.Fatalf("nothing was evicted: history holds %d events", len(held))
	}
	newer := func(ids []uint64, after uint64) []uint64 {
		var out []uint64
		for _, id := range ids {
			if id > after {
				out = append(out, id)
			}
		}
		return out
	}
	tests := []struct {
		name    string
		streams []string
		after   uint64
		want    []uint64
		reset   bool
	}{
		{name: "across the evicted range", streams: []string{"a"}, after: all[0], reset: true},
		{name: "across the evicted range, several streams", streams: []string{"b", "c"}, after: all[0], reset: true},
		{name: "from the engine's start", streams: []string{"a", "b", "c"}, after: micros(t0), reset: true},
		{name: "from the last evicted event", streams: []string{"a", "b", "c"}, after: oldest - 1, want: newer(all, oldest-1)},
		{name: "one stream, from the last evicted event", streams: []string{"b"}, after: oldest - 1, want: newer(byStream["b"], oldest-1)},
		{name: "stream with nothing evicted, from the start", streams: []string{"x"}, after: micros(t0), want: []uint64{x}},
		{name: "stream never published, from the start", streams: []string{"never"}, after: micros(t0)},
		{name: "caught up", streams: []string{"a", "b", "c", "x"}, after: head},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkReplay(t, e, tt.streams, tt.after, 1000, tt.want, tt.reset, head)
		})
	}
	r := replay(t, e, []string{"a"}, all[0], 1000)
	if r.Reset != ResetTrimmed {
		t.Errorf("Replay across the evicted range: reset %q, want %q: the budget trims history as count and age do", r.Reset, ResetTrimmed)
	}
}

func TestMemoryEngineBudgetEntries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		watched bool
	}{
		{name: "no subscribers: the entry goes"},
		{name: "subscribers: the entry stays, a tombstone", watched: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			subscribed := tt.watched
			e := newMemoryEngine(1000, time.Hour, 8<<10, newFakeClock(t0, 0).Now)
			e.watch(func(stream string) bool {
				mu.Lock()
				defer mu.Unlock()
				return stream == "quiet" && subscribed
			})
			q := publishData(t, e, "quiet", 1000).ID
			var last uint64
			for range 20 { // enough to evict quiet's only event
				last = publishData(t, e, "busy", 1000).ID
			}
			checkBooks(t, e)
			e.mu.Lock()
			h := e.streams["quiet"]
			e.mu.Unlock()
			switch {
			case tt.watched && (h == nil || h.tomb < 0 || h.trimmed != q):
				t.Fatalf("quiet stream, subscribed, emptied by the budget: entry %+v, want a tombstone that dropped %d", h, q)
			case !tt.watched && h != nil:
				t.Fatalf("quiet stream, not subscribed, emptied by the budget: entry %+v, want none", h)
			}
			// Either way: not reset from its last id, reset from before it.
			checkReplay(t, e, []string{"quiet"}, q, 100, nil, false, last)
			checkReplay(t, e, []string{"quiet"}, q-1, 100, nil, true, last)

			// The subscribers leave: the next sweep lets the entry go.
			mu.Lock()
			subscribed = false
			mu.Unlock()
			e.sweep()
			checkBooks(t, e)
			e.mu.Lock()
			h, tombs := e.streams["quiet"], len(e.tombs)
			e.mu.Unlock()
			if h != nil || tombs != 0 {
				t.Errorf("after the subscribers left and a sweep: entry %+v and %d tombstones, want none", h, tombs)
			}
			checkReplay(t, e, []string{"quiet"}, q, 100, nil, false, last)
			checkReplay(t, e, []string{"quiet"}, q-1, 100, nil, true, last)
			// Published again, the stream starts from what it dropped.
			again := publishData(t, e, "quiet", 10).ID
			checkReplay(t, e, []string{"quiet"}, q, 100, []uint64{again}, false, again)
			checkReplay(t, e, []string{"quiet"}, q-1, 100, nil, true, again)
			checkBooks(t, e)
		})
	}
}

// TestMemoryEngineBudgetTombstonesGoLast: over budget with no event left,
// the tombstones of subscribed streams go too, and history fits.
func TestMemoryEngineBudgetTombstonesGoLast(t *testing.T) {
	t.Parallel()
	e := newMemoryEngine(1000, time.Hour, 4<<10, newFakeClock(t0, 0).Now)
	e.watch(func(string) bool { return true })
	var dropped []uint64
	for i := range 30 {
		dropped = append(dropped, publishData(t, e, "s"+strconv.Itoa(i), 10).ID)
	}
	big := publishData(t, e, "big", 3500).ID // evicts the others, then itself
	checkBooks(t, e)
	s := e.HistoryStats()
	if s.Bytes > 4<<10 || s.Events != 0 {
		t.Fatalf("HistoryStats() = %+v, want no event left and at most 4 KiB", s)
	}
	for i, id := range dropped { // folded or tombstones: never a silent gap
		checkReplay(t, e, []string{"s" + strconv.Itoa(i)}, id-1, 100, nil, true, big)
		checkReplay(t, e, []string{"s" + strconv.Itoa(i)}, id, 100, nil, false, big)
	}
	checkReplay(t, e, []string{"big"}, big-1, 100, nil, true, big)
}

func TestMemoryEngineBudgetCountsFrames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		formats []Format
	}{
		{name: "data", formats: []Format{FormatData}},
		{name: "envelope", formats: []Format{FormatEnvelope}},
		{name: "every format", formats: []Format{FormatData, FormatEnvelope, FormatCloudEvents}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newMemoryEngine(1000, time.Hour, 64<<10, newFakeClock(t0, 0).Now)
			ev := publishData(t, e, "a", 1000)
			before := e.HistoryStats().Bytes
			var want int64
			for _, f := range tt.formats {
				want += frameCost(f, ev.frame(f, defaultCloudEvents))
				ev.frame(f, defaultCloudEvents) // built once: asking again charges nothing
			}
			if got := e.HistoryStats().Bytes - before; got != want {
				t.Errorf("building frames %v added %d bytes, want %d", tt.formats, got, want)
			}
			checkBooks(t, e)
			// Evicted, the event takes its frames out of the count; a frame
			// built afterwards is not history's to count.
			for e.HistoryStats().EvictedMemory == 0 {
				publishData(t, e, "b", 1000)
			}
			checkBooks(t, e)
			after := e.HistoryStats().Bytes
			ev.frame(FormatCloudEvents, defaultCloudEvents)
			if got := e.HistoryStats().Bytes; got != after {
				t.Errorf("a frame of an evicted event changed history's bytes from %d to %d", after, got)
			}
		})
	}
}

// TestMemoryEngineBudgetFramesRace builds frames while the budget evicts
// their events: the count ends exact however the two interleave.
func TestMemoryEngineBudgetFramesRace(t *testing.T) {
	t.Parallel()
	e := newMemoryEngine(1000, time.Hour, 32<<10, newFakeClock(t0, 0).Now)
	evs := make(chan *Event, 64)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ev := range evs {
				for f := range numFormats {
					ev.frame(f, defaultCloudEvents)
				}
			}
		})
	}
	for i := range 500 {
		evs <- publishData(t, e, "s"+strconv.Itoa(i%7), 300)
	}
	close(evs)
	wg.Wait()
	checkBooks(t, e)
	if s := e.HistoryStats(); s.EvictedMemory == 0 {
		t.Errorf("HistoryStats() = %+v, want events evicted for memory", s)
	}
}

func TestMemoryEngineBudgetWithCountAndAge(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(t0, 0)
	e := newMemoryEngine(3, time.Minute, 16<<10, clock.Now)
	// Count: "c" gets 5 events and keeps 3.
	var c []uint64
	for range 5 {
		c = append(c, publishData(t, e, "c", 100).ID)
	}
	// Age: "old" gets 2, which expire.
	var old []uint64
	for range 2 {
		old = append(old, publishData(t, e, "old", 100).ID)
	}
	clock.Add(2 * time.Minute)
	// Memory: 3 KiB events round robin over 3 new streams, three times the
	// budget, evict whatever is oldest: first c's events and old's.
	var last uint64
	for i := range 16 {
		last = publishData(t, e, "m"+strconv.Itoa(i%3), 3000).ID
		checkBooks(t, e)
	}
	e.sweep()
	checkBooks(t, e)
	s := e.HistoryStats()
	if s.EvictedSize != 2 {
		t.Errorf("evicted for size: %d, want 2 (c's first two)", s.EvictedSize)
	}
	if s.EvictedAge+s.EvictedMemory != int64(16+len(c)+len(old)-2-s.Events) {
		t.Errorf("HistoryStats() = %+v: %d events published, the evictions and what is left do not add up", s, 16+len(c)+len(old))
	}
	if s.Bytes > 16<<10 {
		t.Errorf("history costs %d bytes, over its budget of %d", s.Bytes, 16<<10)
	}
	// Whichever bound dropped them, a resume across them is reset.
	checkReplay(t, e, []string{"c"}, c[0], 10, nil, true, last)
	checkReplay(t, e, []string{"old"}, old[0], 10, nil, true, last)
}

// TestMemoryEngineReleasesEverything publishes to thousands of distinct
// streams, then lets all of it expire: history goes back to costing
// nothing, its map of streams rebuilt small.
func TestMemoryEngineReleasesEverything(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(t0, 0)
	const budget = 256 << 10
	e := newMemoryEngine(1000, time.Minute, budget, clock.Now)
	most := 0
	for i := range 5000 {
		publishData(t, e, "user-"+strconv.Itoa(i), 64)
		if i%1000 == 0 {
			checkBooks(t, e)
		}
		most = max(most, e.HistoryStats().Streams)
	}
	checkBooks(t, e)
	if s := e.HistoryStats(); s.Bytes > budget || s.Streams >= 5000 || s.EvictedMemory == 0 {
		t.Errorf("after 5000 streams: %+v, want at most %d bytes and some streams' entries gone", s, budget)
	}
	clock.Add(2 * time.Minute)
	e.sweep()
	checkBooks(t, e)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.bytes != 0 || e.frameBytes.Load() != 0 || e.events != 0 || len(e.streams) != 0 || e.mapSlots != 0 || e.heads != nil || e.tombs != nil {
		t.Errorf("all expired: %d bytes, %d of frames, %d events, %d entries, %d map slots, %d heads, %d tombstones; want nothing (the map held %d at most)",
			e.bytes, e.frameBytes.Load(), e.events, len(e.streams), e.mapSlots, len(e.heads), len(e.tombs), most)
	}
}

// TestMemoryEngineRingShrinks: a stream trimmed from many events to few
// gives back the slots of its ring.
func TestMemoryEngineRingShrinks(t *testing.T) {
	t.Parallel()
	e := newMemoryEngine(1000, time.Hour, 300<<10, newFakeClock(t0, 0).Now)
	for range 1000 {
		publishData(t, e, "big", 100)
	}
	e.mu.Lock()
	full := len(e.streams["big"].ring.buf)
	e.mu.Unlock()
	for i := 0; e.HistoryStats().EvictedMemory < 900; i++ { // evicts big's oldest
		publishData(t, e, "other"+strconv.Itoa(i%3), 2000)
	}
	checkBooks(t, e)
	e.mu.Lock()
	defer e.mu.Unlock()
	h := e.streams["big"]
	if h == nil {
		return // emptied and gone: nothing held at all
	}
	if h.ring.len() > len(h.ring.buf)/2 && len(h.ring.buf) > minRing || len(h.ring.buf) >= full {
		t.Errorf("stream holds %d events in %d slots (%d when full), want the ring shrunk to at most 4 times its events", h.ring.len(), len(h.ring.buf), full)
	}
}
