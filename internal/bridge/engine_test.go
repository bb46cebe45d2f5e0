package bridge

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// suiteWait bounds every wait of the suite: a failure guard, never a timing
// assumption.
const suiteWait = 30 * time.Second

// newEngineFunc returns a fresh engine that keeps at most size events per
// stream, none older than age; it is closed when the test ends.
type newEngineFunc func(t *testing.T, size int, age time.Duration) Engine

// runEngineSuite checks the contract of [Engine] that the hub relies on. Every
// engine must pass it; what an engine adds (the memory engine's clock, the
// nats engine's outages) has its own tests.
func runEngineSuite(t *testing.T, newEngine newEngineFunc) {
	t.Helper()
	t.Run("ids increase across streams", func(t *testing.T) {
		t.Parallel()
		e := newEngine(t, 100, time.Hour)
		var prev uint64
		for i := range 30 {
			ev := &Event{Stream: []string{"a", "b", "c.d"}[i%3], Data: []byte(`{}`)}
			id := suitePublish(t, e, ev)
			if id <= prev {
				t.Fatalf("publish #%d on %q: id %d, want greater than %d", i, ev.Stream, id, prev)
			}
			prev = id
		}
	})

	t.Run("publish sets time when zero", func(t *testing.T) {
		t.Parallel()
		e := newEngine(t, 100, time.Hour)
		before := time.Now()
		zero := &Event{Stream: "a", Data: []byte(`1`)}
		suitePublish(t, e, zero)
		if zero.Time.Before(before.Add(-time.Second)) || zero.Time.After(time.Now().Add(time.Second)) {
			t.Errorf("Publish with zero Time set %v, want about now (%v)", zero.Time, before)
		}
		given := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
		kept := &Event{Stream: "a", Data: []byte(`2`), Time: given}
		suitePublish(t, e, kept)
		r := suiteReplay(t, e, []string{"a"}, zero.ID, 10)
		if len(r.Events) != 1 || !r.Events[0].Time.Equal(given) {
			t.Errorf("Replay after publishing Time %v = %v, want the event with that time", given, r.Events)
		}
	})

	t.Run("replay is exact across streams", func(t *testing.T) {
		t.Parallel()
		e := newEngine(t, 100, time.Hour)
		streams := []string{"a", "b", "c.d", "quiet"}
		var all []*Event
		for i := range 24 {
			ev := &Event{Stream: streams[i%3], Data: fmt.Appendf(nil, `{"n":%d}`, i)}
			if i%4 == 1 {
				ev.Type = "shop.v1.Thing"
			}
			suitePublish(t, e, ev)
			all = append(all, ev)
		}
		head := all[len(all)-1].ID
		subsets := [][]string{{"a"}, {"b", "a"}, {"a", "b", "c.d"}, {"c.d", "quiet"}, {"quiet"}, {"never"}}
		for _, subset := range subsets {
			// From just before the first event, and from every event on.
			afters := []uint64{all[0].ID - 1}
			for _, ev := range all {
				afters = append(afters, ev.ID)
			}
			for _, after := range afters {
				var want []*Event
				for _, ev := range all {
					if ev.ID > after && slices.Contains(subset, ev.Stream) {
						want = append(want, ev)
					}
				}
				r := suiteReplay(t, e, subset, after, 100)
				if r.Reset != "" || r.Head != head {
					t.Fatalf("Replay(%v, %d) = reset %q, head %d; want no reset, head %d", subset, after, r.Reset, r.Head, head)
				}
				if diff := cmp.Diff(want, r.Events, eventCmp...); diff != "" {
					t.Fatalf("Replay(%v, %d) events (-want +got):\n%s", subset, after, diff)
				}
			}
		}
	})

	t.Run("replay after head gives nothing", func(t *testing.T) {
		t.Parallel()
		e := newEngine(t, 100, time.Hour)
		var head uint64
		for i := range 5 {
			head = suitePublish(t, e, &Event{Stream: []string{"a", "b"}[i%2], Data: []byte(`{}`)})
		}
		for _, limit := range []int{1, 100} {
			r := suiteReplay(t, e, []string{"a", "b"}, head, limit)
			if r.Reset != "" || len(r.Events) != 0 || r.Head != head {
				t.Errorf("Replay(after head %d, limit %d) = %d events, reset %q, head %d; want nothing, head %d", head, limit, len(r.Events), r.Reset, r.Head, head)
			}
		}
		r := suiteReplay(t, e, []string{"a"}, head+1000, 100)
		if r.Reset != ResetUnknownID || len(r.Events) != 0 || r.Head != head {
			t.Errorf("Replay(after an id newer than head) = %d events, reset %q, head %d; want reset %q, head %d", len(r.Events), r.Reset, r.Head, ResetUnknownID, head)
		}
	})

	t.Run("more than limit resets", func(t *testing.T) {
		t.Parallel()
		e := newEngine(t, 100, time.Hour)
		var ids []uint64
		for i := range 6 {
			ids = append(ids, suitePublish(t, e, &Event{Stream: []string{"a", "b", "a"}[i%3], Data: []byte(`{}`)}))
		}
		head := ids[len(ids)-1]
		from := ids[0] - 1
		for _, tc := range []struct {
			streams []string
			limit   int
			want    []uint64 // nil: reset
		}{
			{streams: []string{"a", "b"}, limit: 5},
			{streams: []string{"a"}, limit: 3},
			{streams: []string{"a", "b"}, limit: 6, want: ids},
			{streams: []string{"a"}, limit: 4, want: []uint64{ids[0], ids[2], ids[3], ids[5]}},
			{streams: []string{"b"}, limit: 2, want: []uint64{ids[1], ids[4]}},
		} {
			r := suiteReplay(t, e, tc.streams, from, tc.limit)
			if tc.want == nil {
				if r.Reset != ResetTooFarBehind || len(r.Events) != 0 || r.Head < head {
					t.Errorf("Replay(%v, limit %d) = %v, reset %q, head %d; want reset %q and no events, head from %d", tc.streams, tc.limit, idsOf(r.Events), r.Reset, r.Head, ResetTooFarBehind, head)
				}
				continue
			}
			if r.Reset != "" || !slices.Equal(idsOf(r.Events), tc.want) {
				t.Errorf("Replay(%v, limit %d) = %v, reset %q; want %v", tc.streams, tc.limit, idsOf(r.Events), r.Reset, tc.want)
			}
		}
	})

	t.Run("trimmed history resets", func(t *testing.T) {
		t.Parallel()
		const size = 3
		e := newEngine(t, size, time.Hour)
		var a, b []uint64
		for i := range 10 {
			a = append(a, suitePublish(t, e, &Event{Stream: "a", Data: []byte(`{}`)}))
			if i < 2 {
				b = append(b, suitePublish(t, e, &Event{Stream: "b", Data: []byte(`{}`)}))
			}
		}
		newestTrimmed := a[len(a)-size-1]
		kept := a[len(a)-size:]
		// Events of a after these ids are gone: reset, whatever else the
		// replay could give.
		for _, after := range []uint64{a[0] - 1, a[0], b[1], newestTrimmed - 1} {
			for _, streams := range [][]string{{"a"}, {"b", "a"}} {
				r := suiteReplay(t, e, streams, after, 100)
				if (r.Reset != ResetTrimmed && r.Reset != ResetHistoryLost) || len(r.Events) != 0 {
					t.Errorf("Replay(%v, %d) after trimming = %v, reset %q; want reset %q and no events", streams, after, idsOf(r.Events), r.Reset, ResetTrimmed)
				}
			}
		}
		// From the first kept event on, history covers the gap exactly.
		r := suiteReplay(t, e, []string{"a", "b"}, kept[0], 100)
		if r.Reset != "" || !slices.Equal(idsOf(r.Events), kept[1:]) {
			t.Errorf("Replay(a+b, first kept %d) = %v, reset %q; want %v", kept[0], idsOf(r.Events), r.Reset, kept[1:])
		}
		// From the newest trimmed event, nothing of a is lost: an engine
		// that can prove it replays the kept events, one that cannot (the
		// nats engine) resets; never anything partial.
		r = suiteReplay(t, e, []string{"a"}, newestTrimmed, 100)
		if r.Reset == "" && !slices.Equal(idsOf(r.Events), kept) {
			t.Errorf("Replay(a, newest trimmed %d) = %v; want %v or a reset", newestTrimmed, idsOf(r.Events), kept)
		}
		// b kept both its events: replayed exactly from before them.
		r = suiteReplay(t, e, []string{"b"}, b[0]-1, 100)
		if r.Reset != "" || !slices.Equal(idsOf(r.Events), b) {
			t.Errorf("Replay(b, %d) = %v, reset %q; want %v", b[0]-1, idsOf(r.Events), r.Reset, b)
		}
	})

	t.Run("run delivers every event once in order", func(t *testing.T) {
		t.Parallel()
		const before, publishers, each = 10, 8, 40
		const total = before + publishers*each
		e := newEngine(t, total, time.Hour)
		streams := []string{"a", "b", "c", "d.e"}
		var published []uint64
		for i := range before { // after the engine started, before Run: delivered too
			published = append(published, suitePublish(t, e, &Event{Stream: streams[i%len(streams)], Data: []byte(`{}`)}))
		}

		var (
			inflight  atomic.Int32
			delivered []*Event // deliver's own
			done      = make(chan struct{})
		)
		stop := suiteRun(t, e, func(ev *Event) {
			if n := inflight.Add(1); n != 1 {
				t.Errorf("deliver called with %d calls in flight, want one at a time", n)
			}
			defer inflight.Add(-1)
			delivered = append(delivered, ev)
			if len(delivered) == total {
				close(done)
			}
		})
		var mu sync.Mutex
		var wg sync.WaitGroup
		for g := range publishers {
			wg.Go(func() {
				for i := range each {
					ev := &Event{Stream: streams[(g+i)%len(streams)], Data: fmt.Appendf(nil, `{"g":%d,"i":%d}`, g, i)}
					id, err := e.Publish(t.Context(), ev)
					if err != nil {
						t.Errorf("Publish(%q) error: %v", ev.Stream, err)
						return
					}
					mu.Lock()
					published = append(published, id)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		select {
		case <-done:
		case <-time.After(suiteWait):
			t.Fatalf("Run delivered fewer than the %d events published within %v", total, suiteWait)
		}
		if err := stop(); err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
		slices.Sort(published)
		if diff := cmp.Diff(published, idsOf(delivered)); diff != "" {
			t.Errorf("Run delivered %d events, want each of the %d published once, in id order (-want +got):\n%s", len(delivered), total, diff)
		}
	})
}

// eventCmp compares events as a client sees them: the engine may return
// copies (nats) or the published values (memory). Times agree within a
// second: the nats engine's events carry the time JetStream stored them,
// and Publish, which its ack does not tell, sets a time of its own to an
// event published without one.
var eventCmp = []cmp.Option{
	cmpopts.IgnoreUnexported(Event{}),
	cmpopts.EquateEmpty(),
	cmp.Comparer(func(a, b time.Time) bool { return a.Sub(b).Abs() < time.Second }),
}

func suitePublish(t *testing.T, e Engine, ev *Event) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), suiteWait)
	defer cancel()
	id, err := e.Publish(ctx, ev)
	if err != nil {
		t.Fatalf("Publish(%q) error: %v", ev.Stream, err)
	}
	if id != ev.ID || id == 0 {
		t.Fatalf("Publish(%q) = %d, event ID %d: want the same non-zero id", ev.Stream, id, ev.ID)
	}
	return id
}

func suiteReplay(t *testing.T, e Engine, streams []string, after uint64, limit int) Replay {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), suiteWait)
	defer cancel()
	r, err := e.Replay(ctx, streams, after, limit)
	if err != nil {
		t.Fatalf("Replay(%v, %d, %d) error: %v", streams, after, limit, err)
	}
	if r.Reset != "" && (len(r.Events) != 0 || !slices.Contains([]string{ResetTooFarBehind, ResetTrimmed, ResetHistoryLost, ResetUnknownID}, r.Reset)) {
		t.Fatalf("Replay(%v, %d, %d) = %d events with reset %q: a reset comes without events, with a known reason", streams, after, limit, len(r.Events), r.Reset)
	}
	return r
}

// suiteRun runs e.Run(deliver) until stop is called or the test ends; stop
// cancels Run, waits for it and returns its error.
func suiteRun(t *testing.T, e Engine, deliver func(*Event)) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- e.Run(ctx, func(batch []*Event) {
			for _, ev := range batch {
				deliver(ev)
			}
		})
	}()
	stop = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(suiteWait):
			return fmt.Errorf("Run did not return within %v of cancel", suiteWait)
		}
	})
	t.Cleanup(func() { _ = stop() })
	return stop
}

func TestMemoryEngineSuite(t *testing.T) {
	t.Parallel()
	runEngineSuite(t, func(_ *testing.T, size int, age time.Duration) Engine {
		return NewMemoryEngine(size, age)
	})
}

func TestNATSEngineSuite(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	var n atomic.Int64
	runEngineSuite(t, func(t *testing.T, size int, age time.Duration) Engine {
		t.Helper()
		// One server, a JetStream stream and subject prefix per engine.
		k := n.Add(1)
		return newTestNATSEngine(t, NATSConfig{
			URLs:          []string{ns.URL},
			Stream:        fmt.Sprintf("SUITE%d", k),
			SubjectPrefix: fmt.Sprintf("suite%d", k),
		}, size, age)
	})
}

// newTestNATSEngine starts a nats engine, closed when the test ends.
func newTestNATSEngine(tb testing.TB, cfg NATSConfig, size int, age time.Duration) *NATSEngine {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), suiteWait)
	defer cancel()
	e, err := NewNATSEngine(ctx, cfg, size, age, 0, nil)
	if err != nil {
		tb.Fatalf("NewNATSEngine: %v", err)
	}
	tb.Cleanup(e.Close)
	return e
}
