package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// streamRun is one PublishStream: what was sent, what came back, and how
// the stream ended.
type streamRun struct {
	results []*bridgev1.PublishResult
	end     error // the Recv error that ended it (io.EOF: OK)
}

// runStream sends reqs on a new PublishStream of client, closing its side
// after the last (unless stop closes first: then it stops sending), and
// reads results until the stream ends; after results have come, it calls
// onResult with their count (nil for none).
func runStream(ctx context.Context, t *testing.T, client bridgev1.BridgeServiceClient, reqs []*bridgev1.PublishRequest, onResult func(n int)) streamRun {
	t.Helper()
	// Never held back: more ahead than there are requests.
	return runStreamPaced(ctx, t, client, reqs, new(atomic.Int64), int64(len(reqs))+1, onResult)
}

// runStreamPaced is runStream with the sender at most ahead requests in
// front of the results read so far (counted in read).
func runStreamPaced(ctx context.Context, t *testing.T, client bridgev1.BridgeServiceClient, reqs []*bridgev1.PublishRequest, read *atomic.Int64, ahead int64, onResult func(n int)) streamRun {
	t.Helper()
	s, err := client.PublishStream(ctx)
	if err != nil {
		t.Fatalf("PublishStream: %v", err)
	}
	sent := make(chan struct{})
	go func() { // ends once every request is sent, Send fails, or ctx ends
		defer close(sent)
		for i, r := range reqs {
			for int64(i) >= read.Load()+ahead {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Millisecond):
				}
			}
			if s.Send(r) != nil {
				return
			}
		}
		_ = s.CloseSend()
	}()
	var run streamRun
	for {
		r, err := s.Recv()
		if err != nil {
			run.end = err
			break
		}
		run.results = append(run.results, r)
		read.Store(int64(len(run.results)))
		if onResult != nil {
			onResult(len(run.results))
		}
	}
	<-sent
	return run
}

// seqReqs returns n json events for stream carrying their sequence number,
// every badEvery-th (from 1, when badEvery > 0) for an invalid stream name.
func seqReqs(t *testing.T, stream string, n, badEvery int) []*bridgev1.PublishRequest {
	t.Helper()
	reqs := make([]*bridgev1.PublishRequest, n)
	for i := range reqs {
		s := stream
		if badEvery > 0 && i%badEvery == badEvery-1 {
			s = "bad name"
		}
		reqs[i] = jsonReq(t, s, float64(i))
	}
	return reqs
}

// TestPublishStreamOrder: several streams at once, each with invalid
// events among valid ones, get one result per event in request order
// (ids increasing, InvalidArgument where the event is invalid) and end OK
// after the publisher closes its side; a subscriber gets each stream's
// stored events in order with those ids. --max-stream-inflight is small so
// the stream's reader waits for slots.
func TestPublishStreamOrder(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{MaxStreamInflight: 8})
	const streams, n, badEvery = 4, 300, 10
	query := ""
	for k := range streams {
		query += fmt.Sprintf("stream=s%d&", k)
	}
	sub := subscribe(t, b.baseURL, query, "")
	runs := make([]streamRun, streams)
	var wg sync.WaitGroup
	for k := range streams {
		wg.Go(func() {
			runs[k] = runStream(t.Context(), t, b.client, seqReqs(t, fmt.Sprintf("s%d", k), n, badEvery), nil)
		})
	}
	wg.Wait()
	want := map[string]int{} // id -> stream k * n + seq
	for k, run := range runs {
		if !errors.Is(run.end, io.EOF) || len(run.results) != n {
			t.Fatalf("stream %d ended with %v after %d results, want OK after %d", k, run.end, len(run.results), n)
		}
		var last uint64
		for i, r := range run.results {
			if i%badEvery == badEvery-1 {
				if resultCode(r) != codes.InvalidArgument || r.GetId() != 0 {
					t.Errorf("stream %d result %d = %v, want InvalidArgument", k, i, r)
				}
				continue
			}
			if r.GetStatus() != nil || r.GetId() <= last {
				t.Errorf("stream %d result %d = %v, want an id above %d", k, i, r, last)
			}
			last = r.GetId()
			want[id(r.GetId())] = k*n + i
		}
	}
	next := make([]int, streams) // per stream, the least seq still to come
	for range want {
		ev := sub.next(t)
		got, ok := want[ev.LastEventID]
		if !ok {
			t.Fatalf("event %s was delivered, but no result carried its id", ev.LastEventID)
		}
		delete(want, ev.LastEventID)
		k, seq := got/n, got%n
		if f := toFrame(t, ev); f.Data != float64(seq) || seq < next[k] {
			t.Errorf("stream s%d: event %+v, want seq %d, after %d", k, f, seq, next[k])
		}
		next[k] = seq + 1
	}
}

// TestPublishStreamCancel: a publisher that cancels its stream mid-flight
// gets no more results; every event whose id it got is delivered exactly
// once, and the events delivered are a prefix of those it sent, in order:
// the bridge stored events in order and never one twice. (Events stored
// after the last result the publisher read have no id it knows: that is
// what an idempotency key is for.)
func TestPublishStreamCancel(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{MaxStreamInflight: 16})
	sub := subscribe(t, b.baseURL, "stream=c", "")
	ctx, cancel := context.WithCancel(t.Context())
	// The publisher keeps at most 200 events ahead of the results it read,
	// so the cancel comes mid-flight however slowly this test runs (with
	// all 2000 sent at once, the bridge could answer them all before the
	// 100th result was read, and gRPC hand over the rest after the cancel).
	var read atomic.Int64
	reqs := seqReqs(t, "c", 2000, 0)
	run := runStreamPaced(ctx, t, b.client, reqs, &read, 200, func(n int) {
		if n == 100 {
			cancel()
		}
	})
	if status.Code(run.end) != codes.Canceled || len(run.results) < 100 {
		t.Fatalf("stream ended with %v after %d results, want Canceled after 100 or more", run.end, len(run.results))
	}
	b.publish(t, jsonReq(t, "c", "end"))
	acked := map[string]bool{}
	for _, r := range run.results {
		acked[id(r.GetId())] = true
	}
	for seq := 0; ; seq++ {
		f := toFrame(t, sub.next(t))
		if f.Data == "end" {
			if seq < len(run.results) {
				t.Errorf("%d events delivered, want at least the %d acknowledged", seq, len(run.results))
			}
			break
		}
		if f.Data != float64(seq) {
			t.Fatalf("event %d is %+v, want seq %d: out of order, twice, or a gap", seq, f, seq)
		}
		delete(acked, f.ID)
	}
	if len(acked) > 0 {
		t.Errorf("acknowledged events never delivered: %v", acked)
	}
}

// TestPublishStreamShutdown: a bridge shutting down while a stream
// publishes acknowledges every event it stored, then ends the stream with
// UNAVAILABLE; a subscriber got exactly the events acknowledged as stored,
// in order, and no other.
func TestPublishStreamShutdown(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{MaxStreamInflight: 16})
	sub := subscribe(t, b.baseURL, "stream=d", "")
	// A connection of its own: the bridge's stop closes b.conn first.
	conn, err := grpc.NewClient(b.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	stopped := make(chan error, 1)
	run := runStream(t.Context(), t, bridgev1.NewBridgeServiceClient(conn), seqReqs(t, "d", 100_000, 0), func(n int) {
		if n == 200 {
			go func() { stopped <- b.stop() }()
		}
	})
	if err := <-stopped; err != nil {
		t.Errorf("Serve() = %v, want nil", err)
	}
	if status.Code(run.end) != codes.Unavailable {
		t.Fatalf("stream ended with %v after %d results, want Unavailable", run.end, len(run.results))
	}
	// The stored events come first; events the bridge took in once it was
	// shutting down may be answered Unavailable (not stored) before the
	// stream ends.
	stored := len(run.results)
	for i, r := range run.results {
		switch {
		case r.GetStatus() == nil && i < stored:
		case resultCode(r) == codes.Unavailable:
			stored = min(stored, i)
		default:
			t.Fatalf("result %d = %v, want stored, or Unavailable after the stored ones", i, r)
		}
	}
	var got []string
	for ev := range sub.events {
		if ev.LastEventID != "" && ev.Data != "" && ev.Type != "bridge.reset" {
			got = append(got, ev.LastEventID)
		}
	}
	if len(got) != stored {
		t.Fatalf("subscriber got %d events, want the %d stored", len(got), stored)
	}
	for i, r := range run.results[:stored] {
		if got[i] != id(r.GetId()) {
			t.Fatalf("event %d delivered has id %s, want %d", i, got[i], r.GetId())
		}
	}
}

// TestPublishStreamLimits: one more stream than --max-publish-streams is
// refused with ResourceExhausted naming the flag, and the open streams are
// a gauge; a message that does not decode gets its own InvalidArgument
// result and the stream goes on.
func TestPublishStreamLimits(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{MaxPublishStreams: 1})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	first, err := b.client.PublishStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Send(jsonReq(t, "x", 1.0)); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Recv(); err != nil {
		t.Fatalf("first stream: %v", err)
	}
	if g := scrape(t, b.baseURL)["bridge_publish_streams"]; g != 1 {
		t.Errorf("bridge_publish_streams = %v, want 1", g)
	}
	run := runStream(t.Context(), t, b.client, seqReqs(t, "x", 1, 0), nil)
	checkCall(t, "a second publish stream", run.end, codes.ResourceExhausted, "limit is 1", "--max-publish-streams")
	if err := first.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("first stream ended with %v, want OK", err)
	}

	// Raw messages: valid, not protobuf, valid.
	valid, err := proto.Marshal(jsonReq(t, "x", 2.0))
	if err != nil {
		t.Fatal(err)
	}
	desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	s, err := b.conn.NewStream(ctx, desc, bridgev1.BridgeService_PublishStream_FullMethodName, grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range [][]byte{valid, {0xff, 0xff, 0xff}, valid} {
		if err := s.SendMsg(&raw); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	wantCodes := []codes.Code{codes.OK, codes.InvalidArgument, codes.OK}
	for i, want := range wantCodes {
		var raw []byte
		if err := s.RecvMsg(&raw); err != nil {
			t.Fatalf("result %d: %v", i, err)
		}
		var r bridgev1.PublishResult
		if err := proto.Unmarshal(raw, &r); err != nil {
			t.Fatal(err)
		}
		if resultCode(&r) != want {
			t.Errorf("result %d = %v, want %v", i, &r, want)
		}
	}
}

// TestPublishStreamShutdownLeaksNothing: a shutdown with publish streams
// open, one idle (its reader waiting in Recv) and one sending, ends both
// with UNAVAILABLE and leaves no goroutine behind.
func TestPublishStreamShutdownLeaksNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	b := startBridge(t, bridge.Config{MaxStreamInflight: 4})
	conn, err := grpc.NewClient(b.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	client := bridgev1.NewBridgeServiceClient(conn)
	idle, err := client.PublishStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := idle.Send(jsonReq(t, "x", 1.0)); err != nil {
		t.Fatal(err)
	}
	if _, err := idle.Recv(); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	run := runStream(t.Context(), t, client, seqReqs(t, "y", 100_000, 0), func(n int) {
		if n == 50 {
			go func() { stopped <- b.stop() }()
		}
	})
	if err := <-stopped; err != nil {
		t.Errorf("Serve() = %v, want nil", err)
	}
	if status.Code(run.end) != codes.Unavailable {
		t.Errorf("sending stream ended with %v, want Unavailable", run.end)
	}
	if _, err := idle.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("idle stream ended with %v, want Unavailable", err)
	}
	_ = conn.Close()
}
