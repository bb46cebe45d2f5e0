package bridge

import (
	"slices"
	"unsafe"

	"github.com/r3labs/sse/v2"
)

// What the memory engine's history costs, in bytes of heap, for
// --history-memory (Config.HistoryMemory). The budget counts what history
// keeps alive, as the Go allocator hands it out (each object rounded up to
// its size class):
//
//   - an event: its Event struct, its data and its type name (whose memory
//     a typed event shares with the type registry: counted anyway, a few
//     dozen bytes at most); its stream name is the stream's (Publish makes
//     it so), not the event's;
//   - each frame of the event built while it is in history (Event.frame):
//     the library event, its id line, its event line, and, for the
//     envelope and cloudevents formats, their data. A frame is built the
//     first time a subscriber in that format needs it, and counted then:
//     counting all three formats up front would charge most events three
//     times what they hold, since most deployments use one format;
//   - a stream: its entry (a history struct), its name, its ring of event
//     slots (as allocated: it grows by doubling and shrinks by halving), its
//     slot in the map of streams (an estimate: see mapEntryCost) and in the
//     heap of stream heads;
//   - the tables of tombstones and stream heads, as allocated.
//
// Not counted: the engine's fixed tables (the forgotten ids, 32 KiB), and
// what holds events outside history for a while: the dispatch queue, the
// queues and replays of connections. Those are bounded by their own limits
// (the dispatch queue, --queue-size, --max-replay).

// mapEntryCost is what one entry of the map of streams costs, on average: a
// Go map (map[string]*history) measured at 35 to 55 bytes per entry from
// 1,000 to a million entries (slot, control byte, load factor, growth), so
// 56 is a bound for that range. A Go map keeps the memory of its largest
// size, so the engine counts the most entries the map held, not how many it
// holds, and rebuilds it when it shrinks to a quarter (MemoryEngine.forget).
const mapEntryCost = 56

// Costs of the structs history is made of, as allocated.
var (
	eventStructCost   = allocSize(int(unsafe.Sizeof(Event{})), true)
	frameStructCost   = allocSize(int(unsafe.Sizeof(frameBox{})), true)
	historyStructCost = allocSize(int(unsafe.Sizeof(history{})), true)
)

// eventCost is what ev costs in history, its frames aside (they are
// counted as they are built: frameCost). It depends only on what never
// changes once ev is stored, so the same value is counted in and out.
func eventCost(ev *Event) int64 {
	return eventStructCost + bytesCost(cap(ev.Data)) + bytesCost(len(ev.Type))
}

// frameCost is what the library event fr, ev's frame in format f, costs:
// its frameBox, which holds its id, and its event name. The data format's
// frame shares the event's data, counted with the event.
func frameCost(f Format, fr *sse.Event) int64 {
	n := frameStructCost + bytesCost(cap(fr.Event))
	if f != FormatData {
		n += bytesCost(cap(fr.Data))
	}
	return n
}

// streamCost is what the entry of a stream named name costs, its ring of
// events aside (ringCost) and its map slot (mapEntryCost).
func streamCost(name string) int64 {
	return historyStructCost + bytesCost(len(name))
}

// ringCost is what a ring of slots event slots costs.
func ringCost(slots int) int64 { return allocSize(slots*int(unsafe.Sizeof((*Event)(nil))), true) }

// headsCost and tombsCost are what the engine's heap of stream heads and its
// table of tombstones cost with capacity slots.
func headsCost(slots int) int64 { return allocSize(slots*int(unsafe.Sizeof(head{})), true) }
func tombsCost(slots int) int64 { return allocSize(slots*int(unsafe.Sizeof((*history)(nil))), true) }

// bytesCost is what a buffer of n bytes costs (data, names).
func bytesCost(n int) int64 { return allocSize(n, false) }

// Go's allocator rounds a small object (up to 32 KiB) up to one of its size
// classes, and a large one up to whole pages; a small object of more than
// 512 bytes that holds pointers carries an 8-byte header (Go 1.22 and
// later).
const (
	maxSmallSize   = 32 << 10
	mallocHeader   = 8
	minHeaderAlloc = 512
	allocPageSize  = 8 << 10
	sizeClassStep  = 8 // every size class is a multiple of 8
)

// sizeClass maps an object size, divided by 8 and rounded up, to its size
// class: built at start from the allocator itself (probeSizeClasses), so it
// follows the Go release the bridge is built with. 4 K entries, 16 KiB.
var sizeClass = probeSizeClasses()

// probeSizeClasses asks the allocator for its size classes: a slice grown
// to n bytes gets, as capacity, all of n's size class. About 70 probes, one
// per class.
func probeSizeClasses() []uint32 {
	table := make([]uint32, maxSmallSize/sizeClassStep+1)
	for lo := 0; lo < maxSmallSize; {
		class := min(cap(slices.Grow([]byte(nil), lo+1)), maxSmallSize)
		for i := lo/sizeClassStep + 1; i <= class/sizeClassStep; i++ {
			table[i] = uint32(class)
		}
		lo = class
	}
	return table
}

// allocSize is what an object of n bytes takes on the heap; pointers says
// whether it holds pointers (and so, when small and over 512 bytes, a
// header). Zero for zero.
func allocSize(n int, pointers bool) int64 {
	switch {
	case n <= 0:
		return 0
	case n > maxSmallSize-mallocHeader: // large: whole pages
		return int64(n+allocPageSize-1) &^ (allocPageSize - 1)
	case pointers && n > minHeaderAlloc:
		n += mallocHeader
	}
	return int64(sizeClass[(n+sizeClassStep-1)/sizeClassStep])
}
