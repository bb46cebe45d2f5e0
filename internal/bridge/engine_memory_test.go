package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

// t0 is where every fake clock starts: any wall time after 1970 will do.
var t0 = time.Date(2025, time.March, 1, 12, 0, 0, 0, time.UTC)

// start0 is the floor of an engine created at t0: its ids are all above it.
var start0 = t0.UnixMicro()

// fakeClock is a clock that moves only when the test moves it, or by step
// after every reading (step may be zero or negative).
type fakeClock struct {
	mu   sync.Mutex
	now  time.Time
	step time.Duration
}

func newFakeClock(now time.Time, step time.Duration) *fakeClock {
	return &fakeClock{now: now, step: step}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now
	c.now = c.now.Add(c.step)
	return now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// micros is t as the memory engine's id scheme reads it.
func micros(t time.Time) uint64 { return uint64(t.UnixMicro()) }

// publish publishes one event on stream and returns it, its ID and Time set.
func publish(t *testing.T, e *MemoryEngine, stream string) *Event {
	t.Helper()
	ev := &Event{Stream: stream, Data: []byte(`{}`)}
	id, err := e.Publish(t.Context(), ev)
	if err != nil {
		t.Fatalf("Publish(%q) error: %v", stream, err)
	}
	if id != ev.ID {
		t.Fatalf("Publish(%q) = %d, but the event's ID is %d", stream, id, ev.ID)
	}
	return ev
}

// replay calls e.Replay and fails the test on an error.
func replay(t *testing.T, e *MemoryEngine, streams []string, after uint64, limit int) Replay {
	t.Helper()
	r, err := e.Replay(t.Context(), streams, after, limit)
	if err != nil {
		t.Fatalf("Replay(%v, %d, %d) error: %v", streams, after, limit, err)
	}
	return r
}

// checkReplay checks that Replay(streams, after) returns exactly the events
// with ids want and no reset, or, when want is nil and reset is set, a reset
// and no events. Head must be head either way.
func checkReplay(t *testing.T, e *MemoryEngine, streams []string, after uint64, limit int, want []uint64, reset bool, head uint64) {
	t.Helper()
	r := replay(t, e, streams, after, limit)
	if got := r.Reset != ""; got != reset {
		t.Errorf("Replay(%v, %d, %d) reset = %t (%q), want %t", streams, after, limit, got, r.Reset, reset)
	}
	if diff := cmp.Diff(idsOf(r.Events), want); diff != "" {
		t.Errorf("Replay(%v, %d, %d) = %v, want %v (-got +want):\n%s", streams, after, limit, idsOf(r.Events), want, diff)
	}
	if r.Head != head {
		t.Errorf("Replay(%v, %d, %d).Head = %d, want %d (the last id assigned)", streams, after, limit, r.Head, head)
	}
}

// idsOf returns the ids of evs, in order; nil for none.
func idsOf(evs []*Event) []uint64 {
	var ids []uint64
	for _, ev := range evs {
		ids = append(ids, ev.ID)
	}
	return ids
}

// runEngine runs e.Run(deliver) on a goroutine until stop is called or the
// test ends; see suiteRun, which it is.
func runEngine(t *testing.T, e *MemoryEngine, deliver func(*Event)) (stop func() error) {
	t.Helper()
	return suiteRun(t, e, deliver)
}

// publishConcurrently has goroutines goroutines publish each events apiece,
// round-robin over streams, all starting together. It returns the ids each
// goroutine got, in its publish order.
func publishConcurrently(t *testing.T, e *MemoryEngine, goroutines, each int, streams []string) [][]uint64 {
	t.Helper()
	ids := make([][]uint64, goroutines)
	begin := make(chan struct{})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			<-begin
			for i := range each {
				ev := &Event{Stream: streams[(g+i)%len(streams)], Data: []byte(`{}`)}
				id, err := e.Publish(t.Context(), ev)
				if err != nil {
					t.Errorf("Publish(%q) error: %v", ev.Stream, err)
					return
				}
				ids[g] = append(ids[g], id)
			}
		})
	}
	close(begin)
	wg.Wait()
	return ids
}

func TestMemoryEngineIDs(t *testing.T) {
	t.Parallel()
	type step struct {
		move   time.Duration // clock move before this publish
		stream string
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name:  "clock stands still",
			steps: []step{{0, "a"}, {0, "a"}, {0, "a"}, {0, "a"}},
		},
		{
			name:  "clock stands still, several streams",
			steps: []step{{0, "a"}, {0, "b"}, {0, "c"}, {0, "a"}, {0, "b"}},
		},
		{
			name:  "clock moves forward",
			steps: []step{{time.Second, "a"}, {time.Microsecond, "b"}, {time.Hour, "a"}, {time.Nanosecond, "b"}},
		},
		{
			name:  "clock goes backwards",
			steps: []step{{0, "a"}, {-time.Second, "b"}, {-time.Hour, "a"}, {-time.Microsecond, "b"}},
		},
		{
			name:  "clock jumps forward, then back past the start",
			steps: []step{{time.Hour, "a"}, {-2 * time.Hour, "b"}, {0, "a"}, {time.Microsecond, "c"}, {time.Hour, "a"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock(t0, 0)
			e := newMemoryEngine(100, time.Hour, 0, clock.Now)
			prev := micros(t0) // the engine's start: every id is above it
			for i, s := range tt.steps {
				clock.Add(s.move)
				ev := publish(t, e, s.stream)
				if ev.ID <= prev {
					t.Errorf("publish #%d on %q: id %d, want greater than %d", i, s.stream, ev.ID, prev)
				}
				// Ids never fall behind the clock: that is what keeps them
				// increasing across a restart.
				if now := micros(clock.Now()); ev.ID < now {
					t.Errorf("publish #%d on %q: id %d is behind the clock (%d µs)", i, s.stream, ev.ID, now)
				}
				prev = ev.ID
			}
			if r := replay(t, e, []string{"a"}, prev, 10); r.Head != prev {
				t.Errorf("Replay().Head = %d, want %d (the last id assigned)", r.Head, prev)
			}
		})
	}
}

func TestMemoryEngineConcurrentIDs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		goroutines int
		each       int
		streams    []string
		step       time.Duration // clock move after every reading
	}{
		{name: "clock stands still, one stream", goroutines: 16, each: 100, streams: []string{"a"}},
		{name: "clock stands still, several streams", goroutines: 16, each: 100, streams: []string{"a", "b", "c", "d", "e"}},
		{name: "clock ticks a microsecond", goroutines: 16, each: 100, streams: []string{"a", "b", "c"}, step: time.Microsecond},
		{name: "clock races ahead", goroutines: 8, each: 100, streams: []string{"a", "b"}, step: time.Millisecond},
		{name: "clock goes backwards", goroutines: 16, each: 100, streams: []string{"a", "b", "c"}, step: -time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			total := tt.goroutines * tt.each
			e := newMemoryEngine(total, time.Hour, 0, newFakeClock(t0, tt.step).Now)
			perGoroutine := publishConcurrently(t, e, tt.goroutines, tt.each, tt.streams)

			var all []uint64
			seen := make(map[uint64]bool, total)
			for g, ids := range perGoroutine {
				if !slices.IsSorted(ids) {
					t.Errorf("goroutine %d got ids %v, want them increasing in publish order", g, ids)
				}
				for _, id := range ids {
					if seen[id] {
						t.Errorf("id %d assigned twice", id)
					}
					seen[id] = true
					if id <= micros(t0) {
						t.Errorf("id %d, want greater than the engine's start %d", id, micros(t0))
					}
				}
				all = append(all, ids...)
			}
			if len(all) != total {
				t.Fatalf("published %d events, want %d", len(all), total)
			}
			slices.Sort(all)
			// History holds them all: a resume from the start returns every
			// event once, in id order, across the streams.
			checkReplay(t, e, tt.streams, micros(t0), total, all, false, all[len(all)-1])
		})
	}
}

func TestMemoryEnginePublishTime(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		give time.Time
		want time.Time
	}{
		{name: "zero time is set to now", give: time.Time{}, want: t0.Add(time.Minute)},
		{name: "given time is kept", give: t0.Add(-time.Second), want: t0.Add(-time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock(t0, 0)
			e := newMemoryEngine(10, time.Hour, 0, clock.Now)
			clock.Add(time.Minute)
			ev := &Event{Stream: "a", Data: []byte(`{}`), Time: tt.give}
			if _, err := e.Publish(t.Context(), ev); err != nil {
				t.Fatalf("Publish() error: %v", err)
			}
			if !ev.Time.Equal(tt.want) {
				t.Errorf("Publish(Time: %v) set Time %v, want %v", tt.give, ev.Time, tt.want)
			}
		})
	}
}

func TestMemoryEngineRestart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		n        int           // events on the first engine
		move     time.Duration // clock move before each of them
		downtime time.Duration // from the first engine's last event to the second's start
	}{
		{name: "burst at one instant, restart a second later", n: 100, downtime: time.Second},
		{name: "burst at one instant, restart a millisecond later", n: 500, downtime: time.Millisecond},
		{name: "events spread over an hour", n: 10, move: 6 * time.Minute, downtime: time.Millisecond},
		{name: "first engine never published", n: 0, downtime: time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock(t0, 0)
			first := newMemoryEngine(tt.n+1, 2*time.Hour, 0, clock.Now)
			streams := []string{"a", "b", "c"}
			var firstIDs []uint64
			for i := range tt.n {
				clock.Add(tt.move)
				firstIDs = append(firstIDs, publish(t, first, streams[i%len(streams)]).ID)
			}
			firstMax := micros(t0)
			if len(firstIDs) > 0 {
				firstMax = slices.Max(firstIDs)
			}

			// The restart: history is lost, the clock has moved on.
			clock.Add(tt.downtime)
			second := newMemoryEngine(tt.n+1, 2*time.Hour, 0, clock.Now)
			var secondIDs []uint64
			for i := range 5 {
				secondIDs = append(secondIDs, publish(t, second, streams[i%len(streams)]).ID)
			}
			if got := secondIDs[0]; got <= firstMax {
				t.Errorf("after a restart, first id %d, want greater than %d (the first engine's last)", got, firstMax)
			}
			head := secondIDs[len(secondIDs)-1]
			// A client of the first engine lost what it missed: reset.
			for _, after := range firstIDs {
				checkReplay(t, second, streams, after, 100, nil, true, head)
			}
		})
	}
}

func TestMemoryEngineHistorySize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		size int      // zero means the default, 1000
		pubs []string // the stream of each event, in publish order
		keep int      // the effective size
	}{
		{name: "size 1", size: 1, pubs: []string{"a", "a", "a"}, keep: 1},
		{name: "size 3, ten events", size: 3, pubs: repeat("a", 10), keep: 3},
		{name: "exactly size events: nothing trimmed", size: 3, pubs: []string{"a", "a", "a"}, keep: 3},
		{name: "fewer than size", size: 5, pubs: []string{"a", "a"}, keep: 5},
		{
			name: "each stream bounded on its own",
			size: 2,
			pubs: []string{"a", "b", "a", "a", "c", "a", "b", "a"},
			keep: 2,
		},
		{name: "zero size means 1000", size: 0, pubs: repeat("a", 1001), keep: 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newMemoryEngine(tt.size, time.Hour, 0, newFakeClock(t0, 0).Now)
			byStream := map[string][]uint64{}
			var head uint64
			for _, s := range tt.pubs {
				head = publish(t, e, s).ID
				byStream[s] = append(byStream[s], head)
			}
			limit := len(tt.pubs)
			for s, ids := range byStream {
				if len(ids) <= tt.keep {
					checkReplay(t, e, []string{s}, micros(t0), limit, ids, false, head)
					continue
				}
				trimmed := ids[len(ids)-tt.keep-1] // the newest event dropped
				kept := ids[len(ids)-tt.keep:]
				// From the start, or from just before the newest trimmed
				// event: that event is gone, so reset.
				checkReplay(t, e, []string{s}, micros(t0), limit, nil, true, head)
				checkReplay(t, e, []string{s}, trimmed-1, limit, nil, true, head)
				// From the newest trimmed event on, history covers the gap.
				checkReplay(t, e, []string{s}, trimmed, limit, kept, false, head)
				checkReplay(t, e, []string{s}, kept[0]-1, limit, kept, false, head)
			}
		})
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestMemoryEngineHistoryAge(t *testing.T) {
	t.Parallel()
	const age = 30 * time.Second
	// Stream "a" gets events at t0, t0+10s, t0+20s and t0+30s; the clock
	// then stands at t0+30s and moves on by advance, so the event of t0+k
	// has expired when k < advance.
	tests := []struct {
		name    string
		advance time.Duration
		expired int // how many of a's four events are gone
	}{
		{name: "nothing expired, the oldest exactly age old", advance: 0, expired: 0},
		{name: "oldest a nanosecond past age", advance: time.Nanosecond, expired: 1},
		{name: "oldest expired, the next exactly age old", advance: 10 * time.Second, expired: 1},
		{name: "two expired, the third exactly age old", advance: 20 * time.Second, expired: 2},
		{name: "two expired, a nanosecond past", advance: 10*time.Second + time.Nanosecond, expired: 2},
		{name: "all expired", advance: time.Hour, expired: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock(t0, 0)
			e := newMemoryEngine(100, age, 0, clock.Now)
			var ids []uint64
			for i := range 4 {
				if i > 0 {
					clock.Add(10 * time.Second)
				}
				ids = append(ids, publish(t, e, "a").ID)
			}
			clock.Add(tt.advance)
			head := ids[len(ids)-1]
			kept := ids[tt.expired:]
			if len(kept) == 0 {
				kept = nil
			}
			if tt.expired == 0 {
				checkReplay(t, e, []string{"a"}, micros(t0), 100, ids, false, head)
				return
			}
			lastExpired := ids[tt.expired-1]
			// A resume from before an expired event is reset, never given
			// the rest with a silent gap.
			checkReplay(t, e, []string{"a"}, micros(t0), 100, nil, true, head)
			checkReplay(t, e, []string{"a"}, lastExpired-1, 100, nil, true, head)
			// From the newest expired event on, only live events come back.
			checkReplay(t, e, []string{"a"}, lastExpired, 100, kept, false, head)
			// A new event trims the stream too and keeps only the unexpired.
			next := publish(t, e, "a").ID
			checkReplay(t, e, []string{"a"}, lastExpired, 100, append(slices.Clone(kept), next), false, next)
		})
	}
}

func TestMemoryEngineReplay(t *testing.T) {
	t.Parallel()
	// Every engine below runs on a frozen clock, so by the documented id
	// scheme (max(previous+1, now in µs)) its n-th event has id start+n: the
	// cases name ids by their offset from the engine's start (offset 0).
	pubs := []string{"a", "b", "a", "c", "b", "a"} // events 1 to 6
	const head = 6
	all := []string{"a", "b", "c"}
	tests := []struct {
		name    string
		streams []string
		after   int64 // offset of the id the client saw last
		limit   int
		want    []int64 // offsets of the events replayed
		reset   bool
	}{
		{name: "one stream from the start", streams: []string{"a"}, after: 0, limit: 100, want: []int64{1, 3, 6}},
		{name: "merged across streams from the start", streams: all, after: 0, limit: 100, want: []int64{1, 2, 3, 4, 5, 6}},
		{name: "merged, streams in any order", streams: []string{"c", "b", "a"}, after: 0, limit: 100, want: []int64{1, 2, 3, 4, 5, 6}},
		{name: "two streams after an id in the middle", streams: []string{"b", "a"}, after: 3, limit: 100, want: []int64{5, 6}},
		{name: "after an id of another stream", streams: []string{"b"}, after: 1, limit: 100, want: []int64{2, 5}},
		{name: "stream with no events", streams: []string{"empty"}, after: 0, limit: 100},
		{name: "stream with no events, after its last id", streams: []string{"empty"}, after: 4, limit: 100},
		{name: "stream with no events among others", streams: []string{"empty", "c"}, after: 0, limit: 100, want: []int64{4}},
		{name: "no streams", streams: nil, after: 2, limit: 100},
		{name: "after equals Head", streams: all, after: head, limit: 100},
		{name: "after equals Head, limit 1", streams: all, after: head, limit: 1},
		{name: "after greater than Head", streams: all, after: head + 1, limit: 100, reset: true},
		{name: "after far in the future", streams: all, after: 1 << 40, limit: 100, reset: true},
		{name: "after below the floor", streams: all, after: -1, limit: 100, reset: true},
		{name: "after an hour before the start", streams: []string{"a"}, after: -time.Hour.Microseconds(), limit: 100, reset: true},
		{name: "after id zero", streams: all, after: -start0, limit: 100, reset: true},
		{name: "below the floor on a stream with no events", streams: []string{"empty"}, after: -1, limit: 100, reset: true},
		{name: "more events than limit", streams: all, after: 0, limit: 5, reset: true},
		{name: "more events than limit on one stream", streams: []string{"a"}, after: 0, limit: 2, reset: true},
		{name: "exactly limit events", streams: all, after: 0, limit: 6, want: []int64{1, 2, 3, 4, 5, 6}},
		{name: "limit counts only the gap", streams: all, after: 3, limit: 3, want: []int64{4, 5, 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newMemoryEngine(100, time.Hour, 0, newFakeClock(t0, 0).Now)
			start := micros(t0)
			for i, s := range pubs {
				if got, want := publish(t, e, s).ID, start+uint64(i+1); got != want {
					t.Fatalf("publish #%d on a frozen clock: id %d, want %d", i+1, got, want)
				}
			}
			var want []uint64
			for _, off := range tt.want {
				want = append(want, uint64(start0+off))
			}
			checkReplay(t, e, tt.streams, uint64(start0+tt.after), tt.limit, want, tt.reset, start+head)
		})
	}
}

func TestMemoryEngineRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		before     int // events published before Run starts
		goroutines int // publishers while Run runs
		each       int // events per publisher
		streams    []string
		step       time.Duration // fake clock move after every reading
	}{
		{name: "one publisher, one stream", goroutines: 1, each: 50, streams: []string{"a"}},
		{name: "one publisher, several streams", goroutines: 1, each: 50, streams: []string{"a", "b", "c"}, step: time.Microsecond},
		{name: "events stored before Run", before: 20, goroutines: 1, each: 20, streams: []string{"a", "b"}},
		{name: "many publishers, clock stands still", goroutines: 16, each: 100, streams: []string{"a", "b", "c", "d"}},
		{name: "many publishers, clock goes backwards", goroutines: 16, each: 100, streams: []string{"a", "b"}, step: -time.Microsecond},
		{name: "many publishers, one stream", goroutines: 32, each: 50, streams: []string{"a"}, step: time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			total := tt.before + tt.goroutines*tt.each
			e := newMemoryEngine(total, time.Hour, 0, newFakeClock(t0, tt.step).Now)
			var published []uint64
			for i := range tt.before {
				published = append(published, publish(t, e, tt.streams[i%len(tt.streams)]).ID)
			}

			var (
				inflight  atomic.Int32
				delivered []*Event // deliver's own: the race detector flags concurrent calls
				done      = make(chan struct{})
			)
			stop := runEngine(t, e, func(ev *Event) {
				if n := inflight.Add(1); n != 1 {
					t.Errorf("deliver called with %d calls in flight, want one at a time", n)
				}
				defer inflight.Add(-1)
				// An event is in history before it is delivered.
				r, err := e.Replay(t.Context(), []string{ev.Stream}, ev.ID-1, total)
				if err != nil || r.Reset != "" || len(r.Events) == 0 || r.Events[0] != ev {
					t.Errorf("event %d delivered before it was in history", ev.ID)
				}
				delivered = append(delivered, ev)
				if len(delivered) == total {
					close(done)
				}
			})
			for _, ids := range publishConcurrently(t, e, tt.goroutines, tt.each, tt.streams) {
				published = append(published, ids...)
			}
			slices.Sort(published)

			ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // only against a hang
			defer cancel()
			select {
			case <-done:
			case <-ctx.Done():
				t.Fatalf("Run delivered fewer than the %d events published", total)
			}
			if err := stop(); err != nil { // delivered is ours from here on
				t.Errorf("Run() = %v, want nil", err)
			}
			if diff := cmp.Diff(idsOf(delivered), published); diff != "" {
				t.Errorf("Run delivered %d events, want each of the %d published once, in id order (-got +want):\n%s",
					len(delivered), len(published), diff)
			}
		})
	}
}

// TestMemoryEngineRunStops is not parallel: goleak sees every goroutine of
// the test binary, and the other tests' engines would be in its way.
func TestMemoryEngineRunStops(t *testing.T) {
	tests := []struct {
		name        string
		before      int  // events published before Run starts
		during      int  // events published (and awaited) while Run runs
		cancelFirst bool // ctx ends before Run is called
	}{
		{name: "idle"},
		{name: "after delivering events", before: 3, during: 10},
		{name: "context ended before Run", cancelFirst: true},
		{name: "context ended before Run, events queued", before: 5, cancelFirst: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			e := newMemoryEngine(100, time.Hour, 0, newFakeClock(t0, 0).Now)
			for range tt.before {
				publish(t, e, "a")
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.cancelFirst {
				cancel()
			}
			delivered := make(chan *Event, tt.before+tt.during) // never blocks deliver
			done := make(chan error, 1)
			go func() {
				done <- e.Run(ctx, func(batch []*Event) {
					for _, ev := range batch {
						delivered <- ev
					}
				})
			}()
			for range tt.during {
				publish(t, e, "a")
			}
			if !tt.cancelFirst {
				for range tt.before + tt.during {
					<-delivered
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run() = %v, want nil once its context ended", err)
			}
		})
	}
}

func TestMemoryEngineSweep(t *testing.T) {
	t.Parallel()
	const age = time.Minute
	// Setup, per case: q1 and q2 on the quiet stream, b1 on the busy one, all
	// at t0; two minutes later b2 on the busy stream, then a sweep. Events
	// are named; "start" is the engine's start.
	tests := []struct {
		name      string
		republish bool // publish q3 on the quiet stream after the sweep
		streams   []string
		after     string
		want      []string
		reset     bool
	}{
		{name: "quiet stream, from its last trimmed id", streams: []string{"quiet"}, after: "q2"},
		{name: "quiet stream, from a later id of another stream", streams: []string{"quiet"}, after: "b1"},
		{name: "quiet stream, from Head", streams: []string{"quiet"}, after: "b2"},
		{name: "quiet stream, from before its last trimmed id", streams: []string{"quiet"}, after: "q1", reset: true},
		{name: "quiet stream, from the start", streams: []string{"quiet"}, after: "start", reset: true},
		{name: "both streams, from the busy stream's last trimmed id", streams: []string{"quiet", "busy"}, after: "b1", want: []string{"b2"}},
		{name: "both streams, from before the busy stream's trimmed id", streams: []string{"quiet", "busy"}, after: "q2", reset: true},
		{name: "quiet stream published again, from its last trimmed id", republish: true, streams: []string{"quiet"}, after: "q2", want: []string{"q3"}},
		{name: "quiet stream published again, from before it", republish: true, streams: []string{"quiet"}, after: "q1", reset: true},
		{name: "unknown stream", streams: []string{"never"}, after: "start"},
	}
	// The answers are the same whether the quiet stream has subscribers
	// (its entry stays, a tombstone) or not (its entry goes).
	for _, tt := range tests {
		for _, watched := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/subscribed=%t", tt.name, watched), func(t *testing.T) {
				t.Parallel()
				clock := newFakeClock(t0, 0)
				e := newMemoryEngine(100, age, 0, clock.Now)
				if watched {
					e.watch(func(stream string) bool { return stream == "quiet" })
				}
				ids := map[string]uint64{"start": micros(t0)}
				ids["q1"] = publish(t, e, "quiet").ID
				ids["q2"] = publish(t, e, "quiet").ID
				ids["b1"] = publish(t, e, "busy").ID
				clock.Add(2 * age)
				ids["b2"] = publish(t, e, "busy").ID
				e.sweep()

				e.mu.Lock()
				if h := e.streams["busy"]; h == nil || h.ring.len() != 1 {
					t.Errorf("after sweep, stream \"busy\" has entry %+v, want one with 1 event", h)
				}
				switch h := e.streams["quiet"]; {
				case watched && (h == nil || h.ring.len() != 0 || h.tomb < 0):
					t.Errorf("after sweep, subscribed stream \"quiet\" has entry %+v, want a tombstone", h)
				case !watched && h != nil:
					t.Errorf("after sweep, stream \"quiet\" with no subscribers has entry %+v, want none", h)
				}
				e.mu.Unlock()

				head := ids["b2"]
				if tt.republish {
					ids["q3"] = publish(t, e, "quiet").ID
					head = ids["q3"]
				}
				var want []uint64
				for _, name := range tt.want {
					want = append(want, ids[name])
				}
				checkReplay(t, e, tt.streams, ids[tt.after], 100, want, tt.reset, head)
			})
		}
	}
}

// TestMemoryEngineSweepManyTombstones folds more than maxTombstones expired
// streams away; resumes on them must still be reset, never given a gap.
func TestMemoryEngineSweepManyTombstones(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skipf("publishes %d events", maxTombstones+1)
	}
	clock := newFakeClock(t0, 0)
	e := newMemoryEngine(1, time.Minute, 0, clock.Now)
	runEngine(t, e, func(*Event) {}) // drains the dispatch queue
	s1 := publish(t, e, "s").ID
	var last uint64
	for i := range maxTombstones {
		last = publish(t, e, "t"+strconv.Itoa(i)).ID
	}
	clock.Add(time.Hour)
	e.sweep()
	e.mu.Lock()
	if n := len(e.streams); n != 0 {
		t.Errorf("after sweep of %d expired streams, %d history entries remain, want 0", maxTombstones+1, n)
	}
	e.mu.Unlock()
	s2 := publish(t, e, "s").ID

	tests := []struct {
		name    string
		streams []string
		after   uint64
		want    []uint64
		reset   bool
	}{
		{name: "folded stream published again, from before its trimmed event", streams: []string{"s"}, after: s1 - 1, reset: true},
		{name: "folded stream published again, from the fold's newest id", streams: []string{"s"}, after: last, want: []uint64{s2}},
		{name: "folded stream, from before the fold", streams: []string{"t7"}, after: s1, reset: true},
		{name: "folded stream, from the fold's newest id", streams: []string{"t7"}, after: last},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkReplay(t, e, tt.streams, tt.after, 10, tt.want, tt.reset, s2)
		})
	}
}

func TestMemoryEnginePublishQueueFull(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skipf("publishes %d events", maxDispatchQueue)
	}
	tests := []struct {
		name    string
		ctx     func(t *testing.T) context.Context
		wantErr error // nil: Run starts and the publish goes through
	}{
		{
			name: "context cancelled",
			ctx: func(t *testing.T) context.Context {
				t.Helper()
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				return ctx
			},
			wantErr: context.Canceled,
		},
		{
			name: "deadline passed",
			ctx: func(t *testing.T) context.Context {
				t.Helper()
				ctx, cancel := context.WithDeadline(t.Context(), t0) // long past
				t.Cleanup(cancel)
				return ctx
			},
			wantErr: context.DeadlineExceeded,
		},
		{
			name: "Run drains the queue",
			ctx: func(t *testing.T) context.Context {
				t.Helper()
				return t.Context()
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newMemoryEngine(1, time.Hour, 0, newFakeClock(t0, 0).Now)
			var head uint64
			for range maxDispatchQueue { // Run has not started: nothing drains
				head = publish(t, e, "a").ID
			}
			ev := &Event{Stream: "a", Data: []byte(`{}`)}
			type result struct {
				id  uint64
				err error
			}
			res := make(chan result, 1)
			ctx := tt.ctx(t)
			go func() {
				id, err := e.Publish(ctx, ev)
				res <- result{id, err}
			}()
			if tt.wantErr == nil {
				runEngine(t, e, func(*Event) {})
			}
			got := <-res
			if !errors.Is(got.err, tt.wantErr) {
				t.Fatalf("Publish() with a full queue = %d, %v, want error %v", got.id, got.err, tt.wantErr)
			}
			if tt.wantErr == nil {
				if got.id <= head || got.id != ev.ID {
					t.Errorf("Publish() = %d (event ID %d), want an id greater than %d", got.id, ev.ID, head)
				}
				return
			}
			if got.id != 0 || ev.ID != 0 {
				t.Errorf("Publish() = %d (event ID %d), want no id for a failed publish", got.id, ev.ID)
			}
			// The failed event is not in history.
			checkReplay(t, e, []string{"a"}, head-1, 10, []uint64{head}, false, head)
		})
	}
}

func TestRing(t *testing.T) {
	t.Parallel()
	// Each op pushes (positive) or pops (negative) that many events; pushed
	// events get ids 10, 20, 30, ... so after() is also asked about ids
	// between them.
	tests := []struct {
		name  string
		limit int
		ops   []int
		want  []uint64 // ids left, oldest first
	}{
		{name: "empty", limit: 4, ops: nil, want: nil},
		{name: "one", limit: 1, ops: []int{1}, want: []uint64{10}},
		{name: "limit 1, replaced", limit: 1, ops: []int{1, -1, 1, -1, 1}, want: []uint64{30}},
		{name: "fill to limit", limit: 5, ops: []int{5}, want: []uint64{10, 20, 30, 40, 50}},
		{name: "pop everything", limit: 3, ops: []int{3, -3}, want: nil},
		{name: "wraps around", limit: 4, ops: []int{4, -2, 2}, want: []uint64{30, 40, 50, 60}},
		{name: "wraps around many times", limit: 3, ops: []int{3, -1, 1, -2, 2, -3, 2, -1, 1}, want: []uint64{80, 90}},
		{name: "grows past 8", limit: 100, ops: []int{20}, want: ringIDs(1, 20)},
		{name: "grows while wrapped", limit: 100, ops: []int{8, -3, 10}, want: ringIDs(4, 15)},
		{name: "grows while wrapped, to limit", limit: 12, ops: []int{8, -5, 3, -2, 8}, want: ringIDs(8, 12)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var (
				r     ring
				model []uint64 // what r should hold
				next  uint64   = 10
			)
			for _, op := range tt.ops {
				for range op {
					r.push(&Event{ID: next}, tt.limit)
					model = append(model, next)
					next += 10
				}
				for range -op {
					want := model[0]
					model = model[1:]
					if got := r.popFront().ID; got != want {
						t.Fatalf("popFront() = %d, want %d", got, want)
					}
				}
				if len(r.buf) > tt.limit {
					t.Fatalf("ring buffer has %d slots, want at most the limit %d", len(r.buf), tt.limit)
				}
			}
			if r.len() != len(tt.want) {
				t.Errorf("len() = %d, want %d", r.len(), len(tt.want))
			}
			if diff := cmp.Diff(idsOf(r.after(0)), tt.want); diff != "" {
				t.Errorf("after(0) = %v, want %v (-got +want):\n%s", idsOf(r.after(0)), tt.want, diff)
			}
			for id := uint64(0); id <= next; id += 5 {
				var want []uint64
				for _, m := range tt.want {
					if m > id {
						want = append(want, m)
					}
				}
				if diff := cmp.Diff(idsOf(r.after(id)), want); diff != "" {
					t.Errorf("after(%d) = %v, want %v", id, idsOf(r.after(id)), want)
				}
			}
		})
	}
}

// ringIDs returns the ids of TestRing's events first to first+n-1 (event i has id 10*i).
func ringIDs(first, n int) []uint64 {
	var out []uint64
	for i := range n {
		out = append(out, uint64(10*(first+i)))
	}
	return out
}
