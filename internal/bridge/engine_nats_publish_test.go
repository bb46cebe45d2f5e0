package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// publishBatch runs e.PublishBatch within suiteWait and returns the results.
func publishBatch(t *testing.T, e Engine, evs []*Event) []Stored {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), suiteWait)
	defer cancel()
	res := make([]Stored, len(evs))
	e.PublishBatch(ctx, evs, res)
	return res
}

// numbered returns n events on streams, round robin, each with its index i
// as data {"i":i} and, when keyPrefix is set, key keyPrefix+i.
func numbered(n int, keyPrefix string, streams ...string) []*Event {
	evs := make([]*Event, n)
	for i := range evs {
		evs[i] = &Event{Stream: streams[i%len(streams)], Data: []byte(`{"i":` + strconv.Itoa(i) + `}`)}
		if keyPrefix != "" {
			evs[i].Key = keyPrefix + strconv.Itoa(i)
		}
	}
	return evs
}

// indexOf reads the index numbered put in an event's data.
func indexOf(t *testing.T, ev *Event) int {
	t.Helper()
	s, ok := strings.CutPrefix(string(ev.Data), `{"i":`)
	i, err := strconv.Atoi(strings.TrimSuffix(s, "}"))
	if !ok || err != nil {
		t.Fatalf("event %d has data %s, want {\"i\":N}", ev.ID, ev.Data)
	}
	return i
}

// TestNATSEnginePublishBatchInOrder: a pipelined batch is stored in request
// order, every event with its own id, and Run delivers it in that order;
// two batches published at the same time each keep their order.
func TestNATSEnginePublishBatchInOrder(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	e := newTestNATSEngine(t, NATSConfig{URLs: []string{ns.URL}}, 10000, time.Hour)
	got := make(chan *Event, 10000)
	suiteRun(t, e, func(ev *Event) { got <- ev })

	const n = 3 * natsBatchWindow // more than one window in flight
	batches := [][]*Event{numbered(n, "", "a", "b", "c"), numbered(n, "", "x")}
	results := make([][]Stored, len(batches))
	var wg sync.WaitGroup
	for b := range batches {
		wg.Go(func() {
			res := make([]Stored, n)
			ctx, cancel := context.WithTimeout(t.Context(), suiteWait)
			defer cancel()
			e.PublishBatch(ctx, batches[b], res)
			results[b] = res
		})
	}
	wg.Wait()
	want := map[uint64]*Event{}
	for b, res := range results {
		var last uint64
		for i, r := range res {
			if r.Err != nil || r.Duplicate || r.ID <= last || r.ID != batches[b][i].ID {
				t.Fatalf("batch %d event %d: result %+v (event ID %d) after id %d, want a new id above it", b, i, r, batches[b][i].ID, last)
			}
			last = r.ID
			want[r.ID] = batches[b][i]
		}
	}
	var prev uint64
	next := [2]int{} // the index each batch delivers next
	for range 2 * n {
		ev := recv(t, got)
		w, ok := want[ev.ID]
		if !ok || ev.ID <= prev || ev.Stream != w.Stream || string(ev.Data) != string(w.Data) {
			t.Fatalf("delivered %d %s %s after %d, want the next published event", ev.ID, ev.Stream, ev.Data, prev)
		}
		prev = ev.ID
		b := 0
		if ev.Stream == "x" {
			b = 1
		}
		if i := indexOf(t, ev); i != next[b] {
			t.Fatalf("batch %d delivered its event %d, want %d: out of order", b, i, next[b])
		}
		next[b]++
	}
}

// TestNATSEngineIdempotency: an event whose key names one stored on its
// stream within the window stores nothing and gets the first event's id,
// with Duplicate; JetStream answers a duplicate with the sequence of the
// event stored first.
func TestNATSEngineIdempotency(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	cfg := NATSConfig{URLs: []string{ns.URL}, Stream: "IDEM", SubjectPrefix: "idem"}
	e := newTestNATSEngine(t, cfg, 1000, time.Hour)
	other := newTestNATSEngine(t, cfg, 1000, time.Hour) // another node
	got := make(chan *Event, 1000)
	suiteRun(t, e, func(ev *Event) { got <- ev })

	key := func(stream, key string) *Event {
		return &Event{Stream: stream, Key: key, Data: []byte(`{"key":"` + key + `"}`)}
	}
	var stored []uint64 // every event stored, in order

	// One after the other, on one node and another, unary and in batches.
	first := publishBatch(t, e, []*Event{key("a", "k1")})[0]
	if first.Err != nil || first.Duplicate {
		t.Fatalf("first publish of k1 = %+v, want stored", first)
	}
	stored = append(stored, first.ID)
	for _, eng := range []*NATSEngine{e, other} {
		if r := publishBatch(t, eng, []*Event{key("a", "k1")})[0]; r != (Stored{ID: first.ID, Duplicate: true}) {
			t.Errorf("k1 again = %+v, want a duplicate of %d", r, first.ID)
		}
		if id, err := eng.Publish(t.Context(), key("a", "k1")); err != nil || id != first.ID {
			t.Errorf("Publish(k1) again = %d, %v; want %d", id, err, first.ID)
		}
	}

	// Within one batch, and the same key on another stream.
	res := publishBatch(t, other, []*Event{key("a", "k2"), key("a", "k2"), key("b", "k2"), key("a", "k1")})
	if res[0].Err != nil || res[0].Duplicate || res[2].Err != nil || res[2].Duplicate || res[2].ID <= res[0].ID {
		t.Fatalf("batch [a/k2 a/k2 b/k2 a/k1] = %+v, want a/k2 and b/k2 stored", res)
	}
	if res[1] != (Stored{ID: res[0].ID, Duplicate: true}) || res[3] != (Stored{ID: first.ID, Duplicate: true}) {
		t.Errorf("batch [a/k2 a/k2 b/k2 a/k1] = %+v, want the second a/k2 a duplicate of the first, a/k1 of %d", res, first.ID)
	}
	stored = append(stored, res[0].ID, res[2].ID)

	// At the same time, on two nodes: stored once.
	var wg sync.WaitGroup
	conc := make([]Stored, 16)
	for i := range conc {
		wg.Go(func() {
			conc[i] = publishBatch(t, []*NATSEngine{e, other}[i%2], []*Event{key("c", "k3")})[0]
		})
	}
	wg.Wait()
	fresh := 0
	for _, r := range conc {
		if r.Err != nil || r.ID != conc[0].ID {
			t.Fatalf("k3 published 16 times at once: %+v, want one id", conc)
		}
		if !r.Duplicate {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("k3 published 16 times at once: %d stored, want 1 (%+v)", fresh, conc)
	}
	stored = append(stored, conc[0].ID)

	// A key too long for a Nats-Msg-Id as is goes hashed, and dedupes.
	long := strings.Repeat("k", 128)
	a, b := publishBatch(t, e, []*Event{key(strings.Repeat("s", 200), long), key(strings.Repeat("s", 200), long)}), publishBatch(t, e, []*Event{key(strings.Repeat("s", 201), long)})
	if a[0].Err != nil || a[1] != (Stored{ID: a[0].ID, Duplicate: true}) || b[0].Err != nil || b[0].Duplicate {
		t.Errorf("long keys: %+v %+v, want the second a duplicate, the other stream's stored", a, b)
	}
	stored = append(stored, a[0].ID, b[0].ID)
	slices.Sort(stored)

	// Run delivered what was stored, once.
	var delivered []uint64
	for range stored {
		delivered = append(delivered, recv(t, got).ID)
	}
	if !slices.Equal(delivered, stored) {
		t.Errorf("delivered %v, want %v", delivered, stored)
	}
	if last := pub(t, e, "a"); recv(t, got).ID != last {
		t.Errorf("a duplicate was delivered: the next delivery is not %d", last)
	}
}

// TestNATSEngineDedupeWindow: the stream's duplicate window follows
// NATSConfig.DedupeWindow, at most the history age, at create and at
// every start; after the window a key stores a new event.
func TestNATSEngineDedupeWindow(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	admin := natsAdmin(t, ns.URL)
	cfg := NATSConfig{URLs: []string{ns.URL}, DedupeWindow: 3 * time.Second}
	newTestNATSEngine(t, cfg, 100, time.Hour)
	if d := streamInfo(t, admin, defaultNATSStream).Config.Duplicates; d != 3*time.Second {
		t.Errorf("created with a window of 3s: Duplicates = %v", d)
	}
	newTestNATSEngine(t, NATSConfig{URLs: cfg.URLs}, 100, time.Hour)
	if d := streamInfo(t, admin, defaultNATSStream).Config.Duplicates; d != defaultDedupeWindow {
		t.Errorf("started again with the default window: Duplicates = %v, want %v", d, defaultDedupeWindow)
	}
	newTestNATSEngine(t, NATSConfig{URLs: cfg.URLs}, 100, time.Minute)
	if d := streamInfo(t, admin, defaultNATSStream).Config.Duplicates; d != time.Minute {
		t.Errorf("started with history age 1m: Duplicates = %v, want the age", d)
	}
	cfg.DedupeWindow = time.Second
	e := newTestNATSEngine(t, cfg, 100, time.Hour)

	first := publishBatch(t, e, []*Event{{Stream: "a", Key: "k", Data: []byte(`{}`)}})[0]
	if first.Err != nil || first.Duplicate {
		t.Fatalf("first publish of k = %+v", first)
	}
	// Duplicates of first until the window passed, then a new event.
	for {
		r := publishBatch(t, e, []*Event{{Stream: "a", Key: "k", Data: []byte(`{}`)}})[0]
		if r.Err != nil {
			t.Fatalf("k again = %v", r.Err)
		}
		if !r.Duplicate {
			if r.ID <= first.ID {
				t.Errorf("k after the window = %d, want a new id above %d", r.ID, first.ID)
			}
			break
		}
		if r.ID != first.ID {
			t.Fatalf("k again = %+v, want a duplicate of %d", r, first.ID)
		}
		time.Sleep(100 * time.Millisecond) // no event to wait for: JetStream forgets the key
	}
}

// TestNATSEngineBatchOutage stops NATS in the middle of a batch with keys:
// every event that got an id is stored and delivered once, no event that
// was not sent is stored, and those whose fate the batch could not know are
// stored at most once. Publishing the batch again with the same keys then
// stores each event exactly once, all in request order.
func TestNATSEngineBatchOutage(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	e := newTestNATSEngine(t, NATSConfig{URLs: []string{ns.URL}}, 100000, time.Hour)
	var mu sync.Mutex
	deliveries := map[uint64]int{}
	firstDelivery := make(chan struct{}, 1)
	suiteRun(t, e, func(ev *Event) {
		mu.Lock()
		deliveries[ev.ID]++
		mu.Unlock()
		select {
		case firstDelivery <- struct{}{}:
		default:
		}
	})
	var before uint64 // the last event before the batch
	var evs []*Event
	var res []Stored
	for n := 20000; ; n *= 2 { // until the stop falls in the middle of the batch
		before = pub(t, e, "mark")
		mu.Lock()
		for deliveries[before] == 0 {
			mu.Unlock()
			recv(t, firstDelivery)
			mu.Lock()
		}
		seen := len(deliveries)
		mu.Unlock()
		evs = numbered(n, fmt.Sprintf("n%d-", n), "a", "b")
		res = make([]Stored, n)
		done := make(chan struct{})
		go func() {
			defer close(done)
			ctx, cancel := context.WithTimeout(t.Context(), suiteWait)
			defer cancel()
			e.PublishBatch(ctx, evs, res)
		}()
		for { // stop NATS once the batch's first event was delivered
			recv(t, firstDelivery)
			mu.Lock()
			started := len(deliveries) > seen
			mu.Unlock()
			if started {
				break
			}
		}
		ns.Stop()
		recv(t, done)
		if res[len(res)-1].Err != nil {
			break
		}
		t.Logf("the batch of %d ended before NATS stopped: again with a larger one", n)
		ns.Start(t)
		awaitReady(t, e, true)
	}

	var ids, notSent, unknown int
	var last uint64
	for i, r := range res {
		switch {
		case r.Err == nil:
			ids++
			if r.ID <= last || r.Duplicate {
				t.Fatalf("event %d: %+v after id %d: want a new, higher id", i, r, last)
			}
			last = r.ID
		case errors.Is(r.Err, errNotSent):
			notSent++
		case errors.Is(r.Err, ErrUnavailable) && strings.Contains(r.Err.Error(), "may or may not be stored"):
			unknown++
		default:
			t.Fatalf("event %d: error %v, want ErrUnavailable that says whether it may be stored", i, r.Err)
		}
		if r.Err != nil && !errors.Is(r.Err, ErrUnavailable) {
			t.Errorf("event %d: error %v does not wrap ErrUnavailable", i, r.Err)
		}
	}
	t.Logf("NATS stopped in a batch of %d: %d stored, %d unknown, %d not sent", len(evs), ids, unknown, notSent)
	if ids == 0 || notSent == 0 {
		t.Errorf("want events stored before NATS stopped and events not sent after it")
	}

	ns.Start(t)
	awaitReady(t, e, true)
	check := func(res []Stored, again bool) {
		t.Helper()
		r := suiteReplay(t, e, []string{"a", "b"}, before, 0)
		stored := map[int]uint64{}
		for _, ev := range r.Events {
			i := indexOf(t, ev)
			if _, dup := stored[i]; dup {
				t.Fatalf("event %d stored twice", i)
			}
			stored[i] = ev.ID
		}
		unknownStored := 0
		for i, r := range res {
			id, ok := stored[i]
			if ok && r.Err != nil {
				unknownStored++
			}
			switch {
			case r.Err == nil && id != r.ID:
				t.Fatalf("event %d: result %+v, stored under %d (stored: %t)", i, r, id, ok)
			case errors.Is(r.Err, errNotSent) && ok:
				t.Fatalf("event %d was not sent, but is stored under %d", i, id)
			case again && r.Err != nil:
				t.Fatalf("event %d published again: %v", i, r.Err)
			}
		}
		if !again {
			t.Logf("of the events whose fate was unknown, %d are stored", unknownStored)
		}
		if again && !slices.IsSortedFunc(r.Events, func(a, b *Event) int { return indexOf(t, a) - indexOf(t, b) }) {
			t.Errorf("events stored out of request order")
		}
		for _, ev := range r.Events { // every stored event delivered once
			for {
				mu.Lock()
				n := deliveries[ev.ID]
				mu.Unlock()
				if n > 1 {
					t.Fatalf("event %d delivered %d times", ev.ID, n)
				}
				if n == 1 {
					break
				}
				recv(t, firstDelivery)
			}
		}
	}
	check(res, false)

	again := make([]Stored, len(evs))
	for i, ev := range evs {
		evs[i] = &Event{Stream: ev.Stream, Key: ev.Key, Data: ev.Data}
	}
	ctx, cancel := context.WithTimeout(t.Context(), suiteWait)
	defer cancel()
	e.PublishBatch(ctx, evs, again)
	for i, r := range again {
		if res[i].Err == nil && r != (Stored{ID: res[i].ID, Duplicate: true}) {
			t.Fatalf("event %d again: %+v, want a duplicate of %d", i, r, res[i].ID)
		}
		if errors.Is(res[i].Err, errNotSent) && (r.Err != nil || r.Duplicate) {
			t.Fatalf("event %d (not sent) again: %+v, want stored", i, r)
		}
	}
	check(again, true)
}

// TestNATSEngineClusterIdempotency publishes keys at the same time on two
// engines connected to different servers of a cluster with three replicas,
// where a duplicate may arrive while the first event is still being
// replicated (JetStream then answers that its id is in process): each key is
// stored once, and every publish of it gets that id. Not parallel: the
// cluster's ports are chosen free, then released for its servers, and the
// connections of tests running meanwhile may take them.
func TestNATSEngineClusterIdempotency(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS cluster")
	}
	urls := urlsOf(startNATSCluster(t, 3)...)
	cfg := NATSConfig{URLs: urls[:1], Replicas: 3, ConnectTimeout: suiteWait}
	a := newTestNATSEngine(t, cfg, 100, time.Hour)
	cfg.URLs = urls[2:]
	b := newTestNATSEngine(t, cfg, 100, time.Hour)
	for k := range 20 {
		key := "k" + strconv.Itoa(k)
		var wg sync.WaitGroup
		res := make([]Stored, 8)
		for i := range res {
			wg.Go(func() {
				res[i] = publishBatch(t, []*NATSEngine{a, b}[i%2], []*Event{{Stream: "a", Key: key, Data: []byte(`{}`)}})[0]
			})
		}
		wg.Wait()
		fresh := 0
		for _, r := range res {
			if r.Err != nil || r.ID != res[0].ID {
				t.Fatalf("%s published 8 times at once: %+v, want one id", key, res)
			}
			if !r.Duplicate {
				fresh++
			}
		}
		if fresh != 1 {
			t.Fatalf("%s published 8 times at once: stored %d times, want once (%+v)", key, fresh, res)
		}
	}
}

// TestNATSEngineMaxPending: with room for two events awaiting their acks,
// two batches published at once still store every event once, in order,
// each waiting for room; the metrics say how many waited and that nothing
// awaits an ack once both are done.
func TestNATSEngineMaxPending(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	e := newTestNATSEngine(t, NATSConfig{URLs: []string{ns.URL}, MaxPending: 2}, 10000, time.Hour)
	const n = 200
	batches := [][]*Event{numbered(n, "", "a"), numbered(n, "", "b")}
	results := make([][]Stored, len(batches))
	var wg sync.WaitGroup
	for b := range batches {
		wg.Go(func() { results[b] = publishBatch(t, e, batches[b]) })
	}
	wg.Wait()
	for b, res := range results {
		var last uint64
		for i, r := range res {
			if r.Err != nil || r.Duplicate || r.ID <= last {
				t.Fatalf("batch %d event %d: result %+v after id %d, want a new id above it", b, i, r, last)
			}
			last = r.ID
		}
	}
	s := e.Stats()
	if s.PublishPending != 0 || s.PublishPendingLimit != 2 || s.PublishWaited == 0 || s.PublishRefused != 0 {
		t.Errorf("Stats() = %+v, want nothing pending of a limit of 2, some events waited, none refused", s)
	}
	m := newMetrics(newHub(e, 8, 100, nil), e)
	if got := gauge(t, m, "bridge_nats_publish_pending_limit_events"); got != 2 {
		t.Errorf("bridge_nats_publish_pending_limit_events = %v, want 2", got)
	}
	if got := gauge(t, m, "bridge_nats_publish_pending_events"); got != 0 {
		t.Errorf("bridge_nats_publish_pending_events = %v, want 0", got)
	}
}
