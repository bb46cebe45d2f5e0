package load

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sse-bridge/bridge/internal/baseline"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// bound is the most any run of these tests may take; none waits for it
// unless something is broken: runs end when every fence has arrived.
const bound = 20 * time.Second

// startBridge serves a bridge on loopback listeners for the test.
func startBridge(t *testing.T) (baseURL, grpcAddr string) {
	t.Helper()
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- bridge.Serve(ctx, bridge.Config{}, grpcLis, httpLis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bridge.Serve() = %v", err)
		}
	})
	return "http://" + httpLis.Addr().String(), grpcLis.Addr().String()
}

// smallRun is a run bounded by its number of events.
func smallRun(target, url, grpcAddr string) Config {
	return Config{
		Target: target, URL: url, GRPCAddr: grpcAddr,
		Subscribers: 12, Streams: 3, Events: 90, Publishers: 3, PayloadSize: 300,
		Duration: bound, Drain: bound, PID: os.Getpid(),
	}
}

// checkComplete checks that every subscriber got every event exactly once.
func checkComplete(t *testing.T, res *Result, cfg Config) {
	t.Helper()
	perStream := int64(cfg.Events / cfg.Streams)
	want := int64(cfg.Subscribers) * perStream
	if res.Published != int64(cfg.Events) || res.PublishErrors != 0 {
		t.Errorf("published %d, %d errors (%s); want %d, none", res.Published, res.PublishErrors, res.PublishErrorSample, cfg.Events)
	}
	if res.Expected != want || res.Delivered != want || res.Lost != 0 || res.Duplicated != 0 || res.Unfenced != 0 {
		t.Errorf("expected %d, delivered %d, lost %d, duplicated %d, unfenced %d; want %d delivered, nothing lost",
			res.Expected, res.Delivered, res.Lost, res.Duplicated, res.Unfenced, want)
	}
	if res.Latency.Count != uint64(want) || res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 {
		t.Errorf("latency %+v: want %d events", res.Latency, want)
	}
	if res.Server == nil || res.Server.RSSStartKiB <= 0 || res.Client == nil {
		t.Errorf("server %+v, client %+v: want /proc samples", res.Server, res.Client)
	}
	if res.DeliveredWindow != want || res.DeliveredPerSec <= 0 {
		t.Errorf("window: %d delivered, %.0f/s; want all %d in it (a run bounded by events measures to the end of the drain)", res.DeliveredWindow, res.DeliveredPerSec, want)
	}
}

func TestRunBridge(t *testing.T) {
	t.Parallel()
	url, grpcAddr := startBridge(t)
	cfg := smallRun(TargetBridge, url, grpcAddr)
	// A stalled subscriber of this little data is never evicted: it reads
	// everything once publishing ends.
	cfg.Stalled = 1
	cfg.SourceIPs = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Run() = %v", err)
	}
	checkComplete(t, res, cfg)
	if res.Reordered != 0 || res.Evictions != 0 || res.Resets != 0 {
		t.Errorf("reordered %d, evictions %d, resets %d; want none from the bridge", res.Reordered, res.Evictions, res.Resets)
	}
	if s := res.Stalled; s == nil || s.Received != 30 || s.Lost != 0 {
		t.Errorf("stalled %+v: want 30 events received, none lost", s)
	}
}

func TestRunBaseline(t *testing.T) {
	t.Parallel()
	b := baseline.New()
	srv := httptest.NewServer(b)
	t.Cleanup(func() {
		srv.Close()
		b.Close()
	})
	cfg := smallRun(TargetBaseline, srv.URL, "")
	cfg.Rate = 2000 // also exercise the schedule
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Run() = %v", err)
	}
	checkComplete(t, res, cfg)
}

func TestRunServerNotReady(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	_, err = Run(t.Context(), Config{Target: TargetBaseline, URL: "http://" + addr, ReadyTimeout: 50 * time.Millisecond})
	if err == nil {
		t.Error("Run() against nothing = nil error")
	}
}

// fakeServer is an SSE server whose streams end when the test says, to
// check what the load tool does then. Events are kept in a log; a
// subscription gets, from its Last-Event-ID on, the events of its stream.
type fakeServer struct {
	endAfter int               // a first connection ends after this many events
	onResume func([]int) []int // rewrites the indexes a resumed connection is sent

	mu      sync.Mutex
	log     []fakeEvent
	changed chan struct{} // closed and replaced on every publish
	resumes []string      // the Last-Event-ID of every resume
}

type fakeEvent struct {
	stream string
	data   []byte
}

// published returns how many events were published.
func (f *fakeServer) published() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.log)
}

func newFakeServer(endAfter int, onResume func([]int) []int) *fakeServer {
	return &fakeServer{endAfter: endAfter, onResume: onResume, changed: make(chan struct{})}
}

// publish implements publisher: event ids are log positions from 1.
func (f *fakeServer) publish(_ context.Context, stream string, seq uint64, t int64) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, fakeEvent{stream, appendPayload(nil, seq, t, 0)})
	close(f.changed)
	f.changed = make(chan struct{})
	return uint64(len(f.log)), nil
}

func (f *fakeServer) close() error { return nil }

// publishBatch implements batchPublisher, one event at a time.
func (f *fakeServer) publishBatch(ctx context.Context, evs []outEvent) ([]eventResult, error) {
	res := make([]eventResult, len(evs))
	for i, ev := range evs {
		res[i].id, res[i].err = f.publish(ctx, ev.stream, ev.seq, ev.t)
	}
	return res, nil
}

// openStream implements streamPublisher: each event sent is published and
// its result queued for recv, in order.
func (f *fakeServer) openStream(ctx context.Context) (eventStream, error) {
	return &fakeStream{f: f, ctx: ctx, results: make(chan eventResult, 1000)}, nil
}

type fakeStream struct {
	f       *fakeServer
	ctx     context.Context
	results chan eventResult
}

func (s *fakeStream) send(ev outEvent) error {
	id, err := s.f.publish(s.ctx, ev.stream, ev.seq, ev.t)
	s.results <- eventResult{id: id, err: err}
	return nil
}

func (s *fakeStream) recv() (eventResult, error) {
	select {
	case r, ok := <-s.results:
		if !ok {
			return eventResult{}, io.EOF
		}
		return r, nil
	case <-s.ctx.Done():
		return eventResult{}, s.ctx.Err()
	}
}

func (s *fakeStream) closeSend() error {
	close(s.results)
	return nil
}

// wrongIDs returns ids its server never sends.
type wrongIDs struct{ *fakeServer }

func (w wrongIDs) publish(ctx context.Context, stream string, seq uint64, t int64) (uint64, error) {
	id, err := w.fakeServer.publish(ctx, stream, seq, t)
	return id + 1000, err
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	stream := r.URL.Query().Get("stream")
	last := r.Header.Get("Last-Event-ID")
	next := 0 // the log index to send next
	f.mu.Lock()
	if last != "" {
		f.resumes = append(f.resumes, last)
		n, _ := strconv.Atoi(last)
		next = n
	} else {
		next = len(f.log)
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	sent := 0
	for {
		f.mu.Lock()
		var idx []int
		for ; next < len(f.log); next++ {
			if f.log[next].stream == stream {
				idx = append(idx, next)
			}
		}
		changed := f.changed
		f.mu.Unlock()
		if last != "" && f.onResume != nil && sent == 0 && len(idx) > 0 {
			fmt.Fprintf(w, "event: bridge.reset\ndata: {}\n\n")
			idx = f.onResume(idx)
		}
		for _, i := range idx {
			f.mu.Lock()
			data := f.log[i].data
			f.mu.Unlock()
			fmt.Fprintf(w, "id: %d\ndata: %s\n\n", i+1, data)
			sent++
			if last == "" && sent == f.endAfter {
				_ = rc.Flush()
				return // the stream ends: an eviction
			}
		}
		_ = rc.Flush()
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		}
	}
}

func runFake(t *testing.T, f *fakeServer) *Result {
	t.Helper()
	return runFakeWith(t, f, f, Config{Subscribers: 2, Streams: 1, Events: 10, Publishers: 1})
}

// runFakeWith runs cfg (its sizes and mode) against f, publishing with pub.
func runFakeWith(t *testing.T, f *fakeServer, pub publisher, cfg Config) *Result {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	// The bridge target, whose batch and stream modes these are; its gRPC
	// address, which the run waits for, is the fake's own.
	cfg.Target, cfg.URL, cfg.GRPCAddr, cfg.Duration, cfg.Drain = TargetBridge, srv.URL, srv.Listener.Addr().String(), bound, bound
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	res, err := run(t.Context(), &cfg, pub)
	if err != nil {
		t.Fatalf("run() = %v", err)
	}
	return res
}

// TestReconnectWithLastEventID: a subscriber whose stream ends reconnects
// with the id of the last event it got, and a server that resumes from
// there loses nothing.
func TestReconnectWithLastEventID(t *testing.T) {
	t.Parallel()
	f := newFakeServer(3, nil)
	res := runFake(t, f)
	if res.Evictions != 2 || res.EvictedSubscribers != 2 || res.Reconnects != 2 {
		t.Errorf("evictions %d (%d subscribers), reconnects %d; want 2, 2, 2", res.Evictions, res.EvictedSubscribers, res.Reconnects)
	}
	if res.Lost != 0 || res.Duplicated != 0 || res.Delivered != 20 || res.Unfenced != 0 {
		t.Errorf("lost %d, duplicated %d, delivered %d, unfenced %d; want 0, 0, 20, 0", res.Lost, res.Duplicated, res.Delivered, res.Unfenced)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Equal(f.resumes, []string{"3", "3"}) {
		t.Errorf("Last-Event-ID of the resumes = %q, want the third event's id twice", f.resumes)
	}
}

// TestLossAndDuplicates: a resume that skips an event and repeats another
// (after a reset frame) is counted as one lost and one duplicated per
// subscriber.
func TestLossAndDuplicates(t *testing.T) {
	t.Parallel()
	f := newFakeServer(3, func(idx []int) []int {
		// Skip the first event after the resume point; send the one before
		// it (already received) again.
		return append([]int{idx[0] - 1}, idx[1:]...)
	})
	res := runFake(t, f)
	if res.Lost != 2 || res.LossySubscribers != 2 || res.Duplicated != 2 || res.Resets != 2 {
		t.Errorf("lost %d (%d subscribers), duplicated %d, resets %d; want 2, 2, 2, 2",
			res.Lost, res.LossySubscribers, res.Duplicated, res.Resets)
	}
	if res.Reordered != 0 {
		t.Errorf("reordered %d: a duplicate is not also a reorder", res.Reordered)
	}
	if res.Expected != 20 || res.Delivered != 20 { // 9 new and one again, each
		t.Errorf("expected %d, delivered %d; want 20, 20", res.Expected, res.Delivered)
	}
}

// TestPublishModes: batches (the last one short) and streams publish every
// event once, each subscriber gets each with the id its publisher got back.
func TestPublishModes(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{ModeUnary, ModeBatch, ModeStream} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			f := newFakeServer(0, nil)
			cfg := Config{Subscribers: 6, Streams: 3, Events: 95, Publishers: 3, Mode: mode, BatchSize: 10, StreamWindow: 4, CheckIDs: true}
			res := runFakeWith(t, f, f, cfg)
			if res.Published != 95 || res.PublishErrors != 0 {
				t.Errorf("published %d, %d errors (%s); want 95, none", res.Published, res.PublishErrors, res.PublishErrorSample)
			}
			if res.Expected != 190 || res.Delivered != 190 || res.Lost != 0 || res.Duplicated != 0 || res.IDMismatches != 0 {
				t.Errorf("expected %d, delivered %d, lost %d, duplicated %d, id mismatches %d; want 190 each delivered once with its id",
					res.Expected, res.Delivered, res.Lost, res.Duplicated, res.IDMismatches)
			}
			if n := f.published(); n != 95+3 {
				t.Errorf("the server got %d events, want 95 and 3 fences", n)
			}
		})
	}
}

// TestIDMismatches: events delivered with another id than their publisher
// got back are counted, every one.
func TestIDMismatches(t *testing.T) {
	t.Parallel()
	f := newFakeServer(0, nil)
	res := runFakeWith(t, f, wrongIDs{f}, Config{Subscribers: 2, Streams: 1, Events: 10, Publishers: 1, CheckIDs: true})
	if res.Lost != 0 || res.IDMismatches != 20 {
		t.Errorf("lost %d, id mismatches %d; want 0, 20", res.Lost, res.IDMismatches)
	}
}

// TestRunBridgeIngest: W6's shape in small, against the bridge: every id a
// publisher got back reaches its stream's one reader, once. The batch and
// stream modes count every event of a bridge that does not implement their
// call as an error, and publish nothing.
func TestRunBridgeIngest(t *testing.T) {
	t.Parallel()
	url, grpcAddr := startBridge(t)
	for _, mode := range []string{ModeUnary, ModeBatch, ModeStream} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel() // each on streams of its own
			cfg := smallRun(TargetBridge, url, grpcAddr)
			cfg.Subscribers, cfg.Streams, cfg.Events, cfg.Publishers = 10, 10, 200, 4
			cfg.Mode, cfg.BatchSize, cfg.CheckIDs, cfg.StreamPrefix = mode, 30, true, "ingest-"+mode
			res, err := Run(t.Context(), cfg)
			if err != nil {
				t.Fatalf("Run() = %v", err)
			}
			if mode != ModeUnary && res.Published == 0 && strings.Contains(res.PublishErrorSample, "Unimplemented") {
				t.Logf("the bridge does not implement %s: %s", mode, res.PublishErrorSample)
				if res.Delivered != 0 || res.Lost != 0 {
					t.Errorf("delivered %d, lost %d of nothing published", res.Delivered, res.Lost)
				}
				return
			}
			checkComplete(t, res, cfg)
			if res.IDMismatches != 0 {
				t.Errorf("id mismatches %d, want none", res.IDMismatches)
			}
		})
	}
}
