package bridge_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/sse-bridge/bridge/internal/bridge"
)

// TestHistoryMemoryEndToEnd gives a bridge whose history may take 1 MiB
// about 2.5 MiB of events over 200 streams, through gRPC: the budget
// evicts the oldest events of all. A browser resuming across the evicted
// range gets bridge.reset (history_trimmed), then live events; one resuming
// within what is left gets exactly what it missed; the metrics say so.
func TestHistoryMemoryEndToEnd(t *testing.T) {
	t.Parallel()
	const budget = 1 << 20
	b := startBridge(t, bridge.Config{HistoryMemory: budget})
	pad := strings.Repeat("x", 1000)
	const streams, events = 200, 2000
	ids := make([]uint64, events) // event i is on stream i%streams
	for i := range events {
		ids[i] = b.publish(t, jsonReq(t, fmt.Sprintf("user-%d", i%streams), map[string]any{"n": float64(i), "pad": pad}))
	}
	head := ids[events-1]
	m := scrape(t, b.baseURL)
	evicted := m[`bridge_history_evicted_events_total{reason="memory"}`]
	held := m[`bridge_history_events`]
	switch {
	case evicted == 0 || held == 0 || evicted+held != events:
		t.Fatalf("history holds %v events and evicted %v for memory, want some of each, %d in all", held, evicted, events)
	case m[`bridge_history_bytes`] > budget || m[`bridge_history_limit_bytes`] != budget:
		t.Fatalf("bridge_history_bytes %v, limit %v; want at most the limit, %d", m[`bridge_history_bytes`], m[`bridge_history_limit_bytes`], budget)
	case m[`bridge_history_streams`] != streams:
		t.Fatalf("bridge_history_streams %v, want %d (each stream still holds its newest events)", m[`bridge_history_streams`], streams)
	case m[`bridge_history_evicted_events_total{reason="size"}`] != 0 || m[`bridge_history_evicted_events_total{reason="age"}`] != 0:
		t.Fatalf("evicted for size or age: %v", m)
	}
	// The oldest events of all went: the first `evicted` ids, whatever
	// their stream. (The two resumes below go in turn: the live event of
	// the second evicts another.)
	oldestHeld := int(evicted)
	if oldestHeld < streams {
		t.Fatalf("%d events evicted, want at least %d: one on every stream", oldestHeld, streams)
	}

	// Within what is left: exactly what was missed.
	{
		s := oldestHeld % streams // a stream whose next event is the oldest held
		after := oldestHeld - streams
		c := subscribe(t, b.baseURL, fmt.Sprintf("stream=user-%d", s), id(ids[after]))
		for i := after + streams; i < events; i += streams {
			if ev := c.next(t); ev.LastEventID != id(ids[i]) || ev.Type == bridge.ResetEvent {
				t.Fatalf("replayed frame %+v, want event %d (id %d)", ev, i, ids[i])
			}
		}
	}
	// Across the evicted range: a reset, then live events.
	{
		c := subscribe(t, b.baseURL, "stream=user-0", id(ids[0]))
		reset := c.next(t)
		var data struct{ Reason, LastEventID string }
		if err := json.Unmarshal([]byte(reset.Data), &data); err != nil || reset.Type != bridge.ResetEvent ||
			data.Reason != bridge.ResetTrimmed || reset.LastEventID != id(head) {
			t.Fatalf("first frame %+v (%v), want bridge.reset with reason %q and id %d", reset, err, bridge.ResetTrimmed, head)
		}
		live := b.publish(t, jsonReq(t, "user-0", "live"))
		if ev := c.next(t); ev.LastEventID != id(live) {
			t.Fatalf("after the reset, frame %+v, want the live event %d", ev, live)
		}
	}
}
