package publisher_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
	"github.com/sse-bridge/bridge/publisher"
)

// Every test ends with no goroutine left: the Publisher's lanes, the
// bridges, their NATS servers and the connections are all stopped.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newPublisher returns a Publisher on conn, closed when the test ends.
func newPublisher(t *testing.T, conn grpc.ClientConnInterface, s publisher.Settings) *publisher.Publisher {
	t.Helper()
	p, err := publisher.New(conn, s)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), waitLimit)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Errorf("Close = %v", err)
		}
	})
	return p
}

// get waits for r and fails the test when the event was not stored.
func get(t *testing.T, r *publisher.Result) (id uint64, duplicate bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	id, duplicate, err := r.Get(ctx)
	if status.Code(err) == codes.Unimplemented {
		t.Skipf("needs the bridge's PublishBatch, not implemented by internal/bridge yet: %v", err)
	}
	if err != nil {
		t.Fatalf("Result.Get = %v, want an id", err)
	}
	return id, duplicate
}

// TestBatching: 25 events with MaxEvents 10 and a delay that never fires
// go in 3 calls (10, 10, then 5 on Flush); their ids increase in Publish
// order, and browsers get them in that order.
func TestBatching(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{}, "127.0.0.1:0")
	conn, calls := dial(t, b.grpcAddr)
	p := newPublisher(t, conn, publisher.Settings{MaxEvents: 10, MaxDelay: time.Hour})
	var results []*publisher.Result
	for i := range 25 {
		results = append(results, p.Publish(t.Context(), jsonEvent(t, "orders", i)))
	}
	for _, r := range results[:20] {
		get(t, r) // two full batches went without waiting for the delay
	}
	select {
	case <-results[20].Ready():
		t.Fatalf("the 21st event has its result before Flush: a batch of 5 went before it was full or due")
	default:
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush = %v", err)
	}
	ids := make([]uint64, len(results))
	for i, r := range results {
		select {
		case <-r.Ready():
		default:
			t.Fatalf("event %d has no result after Flush", i)
		}
		var dup bool
		if ids[i], dup = get(t, r); dup {
			t.Errorf("event %d: duplicate, want a new event", i)
		}
	}
	if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Errorf("ids %v, want them increasing in Publish order", ids)
	}
	if got := calls.count(publishBatch); got != 3 {
		t.Errorf("PublishBatch calls = %d, want 3 for 25 events with MaxEvents 10", got)
	}
	frames := readFrames(t, b.baseURL, "orders", ids[0]-1, len(ids))
	for i, f := range frames {
		if f.id != ids[i] || f.data != fmt.Sprint(i) {
			t.Errorf("frame %d = %+v, want id %d data %d", i, f, ids[i], i)
		}
	}
}

// TestMaxDelaySendsALoneEvent: an event alone is sent once MaxDelay passed,
// without Flush.
func TestMaxDelaySendsALoneEvent(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{}, "127.0.0.1:0")
	conn, calls := dial(t, b.grpcAddr)
	p := newPublisher(t, conn, publisher.Settings{MaxDelay: time.Millisecond})
	id, _ := get(t, p.Publish(t.Context(), jsonEvent(t, "alone", "x")))
	if id == 0 {
		t.Errorf("id = 0, want the event's id")
	}
	if got := calls.count(publishBatch); got != 1 {
		t.Errorf("PublishBatch calls = %d, want 1", got)
	}
}

// TestRefusedEventDoesNotStopOthers: an event the bridge refuses gets its
// status (INVALID_ARGUMENT, not retried); the events around it are stored.
func TestRefusedEventDoesNotStopOthers(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{}, "127.0.0.1:0")
	conn, calls := dial(t, b.grpcAddr)
	p := newPublisher(t, conn, publisher.Settings{MaxDelay: time.Hour})
	rs := []*publisher.Result{
		p.Publish(t.Context(), jsonEvent(t, "good", 1)),
		p.Publish(t.Context(), jsonEvent(t, "bad name", 2)),
		p.Publish(t.Context(), jsonEvent(t, "good", 3)),
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush = %v", err)
	}
	first, _ := get(t, rs[0])
	third, _ := get(t, rs[2])
	if third <= first {
		t.Errorf("ids %d then %d, want increasing", first, third)
	}
	if _, _, err := rs[1].Get(ctx); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "stream") {
		t.Errorf("the bad event's Get = %v, want InvalidArgument about its stream", err)
	}
	if got := calls.count(publishBatch); got != 1 {
		t.Errorf("PublishBatch calls = %d, want 1 (a refused event is not retried)", got)
	}
}

// TestRetryAfterLostReply: the bridge stores an event but its reply is
// lost and the connection breaks; the Publisher retries with the same
// idempotency key, and the bridge answers duplicate with the first id:
// the event is stored once.
func TestRetryAfterLostReply(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{}, "127.0.0.1:0")
	proxy := startLossyProxy(t, b.grpcAddr)
	conn, _ := dial(t, proxy.addr())
	p := newPublisher(t, conn, publisher.Settings{MaxDelay: -1})
	before, _ := get(t, p.Publish(t.Context(), jsonEvent(t, "lossy", "before")))

	proxy.lose.Store(true)
	r := p.Publish(t.Context(), jsonEvent(t, "lossy", "lost"))
	stored := readFrames(t, b.baseURL, "lossy", before, 1)[0] // the bridge has it
	proxy.restore()                                           // the call fails (UNAVAILABLE): the Publisher retries

	id, dup := get(t, r)
	if id != stored.id || !dup {
		t.Errorf("retried event: id %d duplicate %v, want id %d duplicate true", id, dup, stored.id)
	}
	after, _ := get(t, p.Publish(t.Context(), jsonEvent(t, "lossy", "after")))
	got := readFrames(t, b.baseURL, "lossy", before, 2)
	want := []frame{{stored.id, `"lost"`}, {after, `"after"`}}
	if !slices.Equal(got, want) {
		t.Errorf("frames %v, want %v (the lost reply's event once)", got, want)
	}
}

// TestRetryAcrossBridgeRestartNATS: the bridge (NATS engine) stores an
// event, its reply is lost, and the bridge restarts on the same address;
// the Publisher retries until the new bridge answers, and the JetStream
// dedupe answers duplicate: browsers get the event once.
func TestRetryAcrossBridgeRestartNATS(t *testing.T) {
	t.Parallel()
	cfg := bridge.Config{Engine: bridge.EngineNATS, NATS: bridge.NATSConfig{URLs: []string{startNATS(t)}}}
	a := startBridge(t, cfg, "127.0.0.1:0")
	proxy := startLossyProxy(t, a.grpcAddr)
	conn, _ := dial(t, proxy.addr())
	p := newPublisher(t, conn, publisher.Settings{MaxDelay: -1})
	before, _ := get(t, p.Publish(t.Context(), jsonEvent(t, "restart", "before")))

	proxy.lose.Store(true)
	r := p.Publish(t.Context(), jsonEvent(t, "restart", "lost"))
	stored := readFrames(t, a.baseURL, "restart", before, 1)[0] // in JetStream
	a.stop()                                                    // the Publisher's connection breaks; its retries fail until b is up
	b := startBridge(t, cfg, a.grpcAddr)
	proxy.restore() // any reply of b lost so far is retried again

	id, dup := get(t, r)
	if id != stored.id || !dup {
		t.Errorf("retried event: id %d duplicate %v, want id %d duplicate true", id, dup, stored.id)
	}
	after, _ := get(t, p.Publish(t.Context(), jsonEvent(t, "restart", "after")))
	got := readFrames(t, b.baseURL, "restart", before, 2)
	want := []frame{{stored.id, `"lost"`}, {after, `"after"`}}
	if !slices.Equal(got, want) {
		t.Errorf("frames %v, want %v (the lost reply's event once)", got, want)
	}
}

// TestRetryUntilBridgeStarts: events published while no bridge listens are
// retried (UNAVAILABLE) and stored, in order, once one starts.
func TestRetryUntilBridgeStarts(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{}, "127.0.0.1:0")
	addr := b.grpcAddr
	b.stop()
	conn, calls := dial(t, addr)
	p := newPublisher(t, conn, publisher.Settings{MaxDelay: -1})
	var rs []*publisher.Result
	for i := range 3 {
		rs = append(rs, p.Publish(t.Context(), jsonEvent(t, "late", i)))
	}
	// Once a call failed, the bridge starts.
	for calls.count(publishBatch) == 0 {
		time.Sleep(10 * time.Millisecond) // polling a count, not timing an assertion
	}
	b = startBridge(t, bridge.Config{}, addr)
	var ids []uint64
	for _, r := range rs {
		id, _ := get(t, r)
		ids = append(ids, id)
	}
	got := readFrames(t, b.baseURL, "late", ids[0]-1, 3)
	for i, f := range got {
		if f.id != ids[i] || f.data != fmt.Sprint(i) {
			t.Errorf("frame %d = %+v, want id %d data %d", i, f, ids[i], i)
		}
	}
}

// TestCloseFlushes: Close sends what is buffered (a delay that never
// fires), every Result is ready when it returns, Publish fails with
// ErrClosed afterwards, and no goroutine of the Publisher is left. Not
// parallel: goleak sees every goroutine of the test binary.
func TestCloseFlushes(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	b := startBridge(t, bridge.Config{}, "127.0.0.1:0")
	conn, _ := dial(t, b.grpcAddr)
	p, err := publisher.New(conn, publisher.Settings{MaxDelay: time.Hour, Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	var rs []*publisher.Result
	for i := range 10 {
		rs = append(rs, p.Publish(t.Context(), jsonEvent(t, fmt.Sprintf("s%d", i%4), i)))
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close = %v, want nil", err)
	}
	for i, r := range rs {
		select {
		case <-r.Ready():
		default:
			t.Fatalf("event %d has no result after Close", i)
		}
		get(t, r)
	}
	if _, _, err := p.Publish(t.Context(), jsonEvent(t, "s0", "late")).Get(ctx); !errors.Is(err, publisher.ErrClosed) {
		t.Errorf("Publish after Close: Get = %v, want ErrClosed", err)
	}
	if err := p.Close(ctx); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	_ = conn.Close()
	b.stop()
	goleak.VerifyNone(t, ignore)
}

// TestContextCancel: with no bridge to answer, a full buffer makes Publish
// wait until its context ends (its Result has the context's error, and the
// event is not sent); Get returns when its own context ends; Close with a
// context that ends gives up the retries, the events get ErrClosed, and
// every goroutine exits. Not parallel: goleak.
func TestContextCancel(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	b := startBridge(t, bridge.Config{}, "127.0.0.1:0")
	addr := b.grpcAddr
	b.stop() // nothing listens: every call fails with UNAVAILABLE
	conn, _ := dial(t, addr)
	p, err := publisher.New(conn, publisher.Settings{MaxEvents: 1, MaxOutstandingEvents: 1, MaxDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	first := p.Publish(t.Context(), jsonEvent(t, "s", 1)) // retried until Close

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := p.Publish(ctx, jsonEvent(t, "s", 2)).Get(t.Context()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Publish with a full buffer: Get = %v, want the context's DeadlineExceeded", err)
	}
	ended, end := context.WithCancel(t.Context())
	end()
	if _, _, err := first.Get(ended); !errors.Is(err, context.Canceled) {
		t.Errorf("Get(cancelled context) = %v, want context.Canceled", err)
	}

	closing, stop := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer stop()
	if err := p.Close(closing); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close with the bridge down = %v, want DeadlineExceeded", err)
	}
	if _, _, err := first.Get(t.Context()); !errors.Is(err, publisher.ErrClosed) {
		t.Errorf("event in retry at Close: Get = %v, want ErrClosed", err)
	}
	_ = conn.Close()
	goleak.VerifyNone(t, ignore)
}

// TestRetryTimeout: an event is given up on after RetryTimeout with the
// last error, UNAVAILABLE, wrapped.
func TestRetryTimeout(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{}, "127.0.0.1:0")
	addr := b.grpcAddr
	b.stop()
	conn, _ := dial(t, addr)
	p := newPublisher(t, conn, publisher.Settings{MaxDelay: -1, RetryTimeout: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	_, _, err := p.Publish(t.Context(), jsonEvent(t, "s", 1)).Get(ctx)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "RetryTimeout") {
		t.Errorf("Get = %v, want Unavailable, given up after RetryTimeout", err)
	}
}

// TestKeysAreKeptOrMade: a caller's idempotency key is sent as is (a
// second event with it is a duplicate); events without one get distinct
// keys (never duplicates of each other).
func TestKeysAreKeptOrMade(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{}, "127.0.0.1:0")
	conn, _ := dial(t, b.grpcAddr)
	p := newPublisher(t, conn, publisher.Settings{MaxDelay: -1})
	keyed := func(v string) *bridgev1.PublishRequest {
		req := jsonEvent(t, "keys", v)
		req.IdempotencyKey = "order-1-paid"
		return req
	}
	req := keyed("first")
	id1, _ := get(t, p.Publish(t.Context(), req))
	if req.GetIdempotencyKey() != "order-1-paid" {
		t.Errorf("Publish changed the caller's key to %q", req.GetIdempotencyKey())
	}
	id2, dup := get(t, p.Publish(t.Context(), keyed("again")))
	if id2 != id1 || !dup {
		t.Errorf("same key again: id %d duplicate %v, want id %d duplicate true", id2, dup, id1)
	}
	plain := jsonEvent(t, "keys", "same")
	a, dupA := get(t, p.Publish(t.Context(), plain))
	c, dupC := get(t, p.Publish(t.Context(), plain))
	if dupA || dupC || a == c {
		t.Errorf("two events without keys: ids %d, %d duplicates %v, %v; want two events", a, c, dupA, dupC)
	}
	if plain.GetIdempotencyKey() != "" {
		t.Errorf("Publish set a key on the caller's request: %q", plain.GetIdempotencyKey())
	}
}

func TestSettingsErrors(t *testing.T) {
	t.Parallel()
	conn, _ := dial(t, "127.0.0.1:1")
	for _, tc := range []struct {
		name string
		s    publisher.Settings
		want string
	}{
		{"negative MaxEvents", publisher.Settings{MaxEvents: -1}, "MaxEvents"},
		{"negative timeout", publisher.Settings{CallTimeout: -time.Second}, "CallTimeout"},
		{"outstanding under a batch", publisher.Settings{MaxEvents: 10, MaxOutstandingEvents: 5}, "MaxOutstandingEvents"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := publisher.New(conn, tc.s); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New(%+v) = %v, want an error naming %s", tc.s, err, tc.want)
			}
		})
	}
}

// TestSplitsACallTooLarge: a batch over the bridge's gRPC message limit
// (here its --max-payload plus 64 KiB, --max-batch-bytes being less) is refused as a whole with
// RESOURCE_EXHAUSTED; the Publisher splits it and every event is stored,
// in order.
func TestSplitsACallTooLarge(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{MaxPayload: 2048, MaxBatchBytes: 1024}, "127.0.0.1:0")
	conn, calls := dial(t, b.grpcAddr)
	p := newPublisher(t, conn, publisher.Settings{MaxEvents: 100, MaxBytes: 1 << 20, MaxDelay: time.Hour})
	big := strings.Repeat("x", 1500)
	var rs []*publisher.Result
	for i := range 100 { // about 150 KB in one call: over the 66 KiB limit
		rs = append(rs, p.Publish(t.Context(), jsonEvent(t, "big", fmt.Sprint(i, big))))
	}
	var ids []uint64
	for _, r := range rs {
		id, _ := get(t, r)
		ids = append(ids, id)
	}
	if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Errorf("ids %v, want them increasing in Publish order", ids)
	}
	if got := calls.count(publishBatch); got < 3 {
		t.Errorf("PublishBatch calls = %d, want at least 3 (refused, then the halves)", got)
	}
}
