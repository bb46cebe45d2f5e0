package bridge

import (
	"time"
	"unsafe"
)

// dedupeTable is the memory engine's table of idempotency keys: which event
// each (stream, key) named, for the dedupe window (--dedupe-window), and
// never more than max keys (--dedupe-keys). Keys are kept in the order they
// were first stored, which is the order of their time (but for a clock that
// went back, whose keys then leave a little late or early), so expiring
// and evicting both take from the front of one queue: O(1) a key.
//
// A duplicate does not extend its key's window: the window is the time a
// retry of the first publish may take, counted from that publish.
//
// Its memory is not counted against --history-memory: the table has its
// own bound, --dedupe-keys, and its cost (dedupeEntryCost a key, plus the
// key's bytes) is reported beside history's (bridge_dedupe_bytes). Counting
// it in the history budget would let a flood of keyed publishes evict
// history, or the other way round, which neither operator would expect.
//
// Not safe for concurrent use: the engine calls it under its lock.
type dedupeTable struct {
	window time.Duration
	max    int
	now    func() time.Time

	keys  map[dedupeKey]*dedupeEntry
	queue []*dedupeEntry // oldest first, from head
	head  int
	bytes int64 // what the keys' strings cost, their entries aside
	// evicted counts keys that went because the table was full, before
	// their window ended: a retry of their event after that is stored
	// again.
	evicted int64
}

// dedupeKey names an event: its stream and its idempotency key.
type dedupeKey struct{ stream, key string }

type dedupeEntry struct {
	k  dedupeKey
	id uint64
	at time.Time
}

// dedupeEntryCost is what one key costs besides its bytes: its entry, its
// slot in the queue and in the map (an estimate, as for mapEntryCost: a map
// of 32-byte string pairs to pointers).
var dedupeEntryCost = allocSize(int(unsafe.Sizeof(dedupeEntry{})), true) + 8 + 2*mapEntryCost

func newDedupeTable(window time.Duration, maxKeys int, now func() time.Time) *dedupeTable {
	return &dedupeTable{window: window, max: maxKeys, now: now, keys: make(map[dedupeKey]*dedupeEntry)}
}

// lookup returns the id of the event k names, if it was stored within the
// window.
func (t *dedupeTable) lookup(k dedupeKey, now time.Time) (uint64, bool) {
	e := t.keys[k]
	if e == nil || !now.Before(e.at.Add(t.window)) {
		return 0, false
	}
	return e.id, true
}

// add records that k names the event id, stored at now. The caller checked
// that k names no event within the window.
func (t *dedupeTable) add(k dedupeKey, id uint64, now time.Time) {
	t.expire(now)
	if t.len() >= t.max {
		t.pop()
		t.evicted++
	}
	e := &dedupeEntry{k: k, id: id, at: now}
	if old := t.keys[k]; old != nil {
		// An expired entry still queued: it goes from the map now and
		// from the queue in its turn (pop leaves the map alone then).
		t.bytes -= keyCost(old.k)
	}
	t.keys[k] = e
	t.bytes += keyCost(k)
	t.queue = append(t.queue, e)
}

// expire drops the keys whose window ended.
func (t *dedupeTable) expire(now time.Time) {
	for t.len() > 0 && !now.Before(t.queue[t.head].at.Add(t.window)) {
		t.pop()
	}
}

// pop drops the oldest key.
func (t *dedupeTable) pop() {
	e := t.queue[t.head]
	t.queue[t.head] = nil
	t.head++
	if t.keys[e.k] == e {
		delete(t.keys, e.k)
		t.bytes -= keyCost(e.k)
	}
	// Compact once the dead front is half the slice: O(1) a key.
	if t.head > len(t.queue)/2 && t.head > minShrink {
		n := copy(t.queue, t.queue[t.head:])
		clear(t.queue[n:])
		t.queue = t.queue[:n]
		t.head = 0
		if cap(t.queue) > minShrink && n < cap(t.queue)/4 {
			t.queue = append(make([]*dedupeEntry, 0, cap(t.queue)/2), t.queue...)
		}
	}
}

// len is how many keys the queue holds: those in the map, and those an
// expired key left behind until they reach the front.
func (t *dedupeTable) len() int { return len(t.queue) - t.head }

// cost is what the table costs, as reported by bridge_dedupe_bytes.
func (t *dedupeTable) cost() int64 {
	return int64(t.len())*dedupeEntryCost + t.bytes
}

// keyCost is what the strings of k cost. The stream name is the history's
// (one copy a stream), so only the key counts.
func keyCost(k dedupeKey) int64 { return bytesCost(len(k.key)) }
