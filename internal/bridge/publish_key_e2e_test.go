package bridge_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// keyed is a json event for stream with the idempotency key key.
func keyed(t *testing.T, stream, key string, v any) *bridgev1.PublishRequest {
	t.Helper()
	r := jsonReq(t, stream, v)
	r.IdempotencyKey = key
	return r
}

// publishKeyed publishes req with Publish and returns its response.
func (b *testBridge) publishKeyed(t *testing.T, req *bridgev1.PublishRequest) *bridgev1.PublishResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	res, err := b.client.Publish(ctx, req)
	if err != nil {
		t.Fatalf("Publish(%v) = %v, want success", req, err)
	}
	return res
}

// TestIdempotencySequential: a key seen again on its stream returns the
// first event's id as a duplicate, from Publish and from PublishBatch (in
// the same batch too), and nothing more is stored or sent; the same key
// on another stream names another event.
func TestIdempotencySequential(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{})
	sub := subscribe(t, b.baseURL, "stream=orders&stream=audit", "")

	first := b.publishKeyed(t, keyed(t, "orders", "k1", 1.0))
	if first.GetDuplicate() || first.GetId() == 0 {
		t.Fatalf("first Publish with key k1 = %v, want a new event", first)
	}
	again := b.publishKeyed(t, keyed(t, "orders", "k1", "a different payload"))
	if !again.GetDuplicate() || again.GetId() != first.GetId() {
		t.Errorf("second Publish with key k1 = %v, want duplicate of id %d", again, first.GetId())
	}
	results, err := b.publishBatch(t, nil,
		keyed(t, "orders", "k1", 2.0),
		keyed(t, "orders", "k2", 3.0),
		keyed(t, "orders", "k2", 4.0),
		keyed(t, "audit", "k1", 5.0),
	)
	if err != nil {
		t.Fatalf("PublishBatch = %v", err)
	}
	k2, audit := results[1].GetId(), results[3].GetId()
	want := []struct {
		id  uint64
		dup bool
	}{{first.GetId(), true}, {k2, false}, {k2, true}, {audit, false}}
	for i, r := range results {
		if r.GetStatus() != nil || r.GetId() != want[i].id || r.GetDuplicate() != want[i].dup || r.GetId() == 0 {
			t.Errorf("result %d = %v, want id %d duplicate %v", i, r, want[i].id, want[i].dup)
		}
	}
	b.publish(t, jsonReq(t, "orders", "end"))
	for _, w := range []uint64{first.GetId(), k2, audit} {
		if f := toFrame(t, sub.next(t)); f.ID != id(w) {
			t.Errorf("got event %+v, want id %d", f, w)
		}
	}
	if f := toFrame(t, sub.next(t)); f.Data != "end" {
		t.Errorf("got %+v, want the end marker: a duplicate was sent", f)
	}
	if n := scrape(t, b.baseURL)[`bridge_events_published_total{result="duplicate"}`]; n != 3 {
		t.Errorf("duplicates counted %v, want 3", n)
	}
}

// TestIdempotencyConcurrent: of concurrent publishes with one key, through
// Publish, PublishBatch and PublishStream, exactly one stores; every one
// gets its id.
func TestIdempotencyConcurrent(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{})
	const n = 24
	var wg sync.WaitGroup
	type answer struct {
		id  uint64
		dup bool
		err error
	}
	answers := make([]answer, n)
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
			defer cancel()
			req := keyed(t, "race", "the-key", float64(i))
			switch i % 3 {
			case 0:
				r, err := b.client.Publish(ctx, req)
				answers[i] = answer{r.GetId(), r.GetDuplicate(), err}
			case 1:
				r, err := b.client.PublishBatch(ctx, &bridgev1.PublishBatchRequest{Events: []*bridgev1.PublishRequest{req}})
				answers[i] = answer{r.GetResults()[0].GetId(), r.GetResults()[0].GetDuplicate(), err}
			default:
				s, err := b.client.PublishStream(ctx)
				if err == nil {
					err = s.Send(req)
				}
				var r *bridgev1.PublishResult
				if err == nil {
					r, err = s.Recv()
				}
				answers[i] = answer{r.GetId(), r.GetDuplicate(), err}
			}
		})
	}
	wg.Wait()
	stored := 0
	for i, a := range answers {
		if a.err != nil {
			t.Fatalf("publish %d = %v", i, a.err)
		}
		if a.id != answers[0].id {
			t.Errorf("publish %d got id %d, want %d as every other", i, a.id, answers[0].id)
		}
		if !a.dup {
			stored++
		}
	}
	if stored != 1 {
		t.Errorf("%d publishes stored, want exactly 1", stored)
	}
	if got := historyEvents(t, b.baseURL); got != 1 {
		t.Errorf("history holds %v events, want 1", got)
	}
}

// TestIdempotencyAfterTimeout: a publisher that gave up on its publish
// (its stream cancelled before the result came) and retries with the same
// key gets the id of the event stored the first time, as a duplicate.
func TestIdempotencyAfterTimeout(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{})
	sub := subscribe(t, b.baseURL, "stream=orders", "")
	ctx, cancel := context.WithCancel(t.Context())
	s, err := b.client.PublishStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(keyed(t, "orders", "retry-me", 1.0)); err != nil {
		t.Fatal(err)
	}
	stored := sub.next(t) // the bridge stored it; the publisher never reads its result
	cancel()
	retry := b.publishKeyed(t, keyed(t, "orders", "retry-me", 1.0))
	if !retry.GetDuplicate() || id(retry.GetId()) != stored.LastEventID {
		t.Errorf("retry = %v, want duplicate of id %s", retry, stored.LastEventID)
	}
}

// fakeClock is a clock a test moves.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// TestIdempotencyWindow: after --dedupe-window a key names a new event;
// within it, the newest one; with dedupe off (negative window) keys are
// checked but never dedupe.
func TestIdempotencyWindow(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	b := startBridge(t, bridge.WithDedupeClock(bridge.Config{DedupeWindow: time.Minute}, clock.Now))
	first := b.publishKeyed(t, keyed(t, "orders", "k", 1.0))
	clock.Advance(time.Minute - time.Nanosecond)
	if r := b.publishKeyed(t, keyed(t, "orders", "k", 1.0)); !r.GetDuplicate() || r.GetId() != first.GetId() {
		t.Errorf("Publish just within the window = %v, want duplicate of %d", r, first.GetId())
	}
	clock.Advance(time.Nanosecond)
	second := b.publishKeyed(t, keyed(t, "orders", "k", 1.0))
	if second.GetDuplicate() || second.GetId() <= first.GetId() {
		t.Errorf("Publish after the window = %v, want a new event after %d", second, first.GetId())
	}
	if r := b.publishKeyed(t, keyed(t, "orders", "k", 1.0)); !r.GetDuplicate() || r.GetId() != second.GetId() {
		t.Errorf("Publish again = %v, want duplicate of %d", r, second.GetId())
	}

	off := startBridge(t, bridge.Config{DedupeWindow: -1})
	a := off.publishKeyed(t, keyed(t, "orders", "k", 1.0))
	c := off.publishKeyed(t, keyed(t, "orders", "k", 1.0))
	if a.GetDuplicate() || c.GetDuplicate() || a.GetId() == c.GetId() {
		t.Errorf("with dedupe off: %v then %v, want two events", a, c)
	}
	_, err := off.client.Publish(t.Context(), keyed(t, "orders", "bad\x00key", 1.0))
	checkCall(t, "Publish with a NUL in its key, dedupe off", err, codes.InvalidArgument, "idempotency_key")
}

// TestIdempotencyKeysBound: the table never holds more than --dedupe-keys
// keys; when full the oldest go first, and are counted.
func TestIdempotencyKeysBound(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{DedupeKeys: 3})
	ids := make([]uint64, 5)
	for i, k := range []string{"a", "b", "c", "d", "e"} {
		ids[i] = b.publishKeyed(t, keyed(t, "orders", k, 1.0)).GetId()
	}
	m := scrape(t, b.baseURL)
	if m["bridge_dedupe_keys"] != 3 || m["bridge_dedupe_evicted_keys_total"] != 2 || m["bridge_dedupe_bytes"] <= 0 {
		t.Errorf("dedupe keys %v, evicted %v, bytes %v; want 3, 2, more than 0",
			m["bridge_dedupe_keys"], m["bridge_dedupe_evicted_keys_total"], m["bridge_dedupe_bytes"])
	}
	if r := b.publishKeyed(t, keyed(t, "orders", "e", 1.0)); !r.GetDuplicate() || r.GetId() != ids[4] {
		t.Errorf("newest key again = %v, want duplicate of %d", r, ids[4])
	}
	if r := b.publishKeyed(t, keyed(t, "orders", "a", 1.0)); r.GetDuplicate() {
		t.Errorf("evicted key again = %v, want a new event", r)
	}
}
