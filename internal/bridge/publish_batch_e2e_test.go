package bridge_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// publishBatch calls PublishBatch with reqs (and md, when not nil).
func (b *testBridge) publishBatch(t *testing.T, md metadata.MD, reqs ...*bridgev1.PublishRequest) ([]*bridgev1.PublishResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	if md != nil {
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	res, err := b.client.PublishBatch(ctx, &bridgev1.PublishBatchRequest{Events: reqs})
	return res.GetResults(), err
}

// resultCode is the code of a batch or stream result.
func resultCode(r *bridgev1.PublishResult) codes.Code { return codes.Code(r.GetStatus().GetCode()) }

// TestPublishBatchMixed: a batch of valid and invalid events, for two
// streams, gets exactly one result per event in order: each refused one
// with the code and message Publish gives that event alone, each stored one
// an id; the stored ones reach a subscriber of both streams in request
// order, with those ids, and nothing else does.
func TestPublishBatchMixed(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{})
	sub := subscribe(t, b.baseURL, "stream=orders&stream=audit", "")

	withType := func(r *bridgev1.PublishRequest, typ string) *bridgev1.PublishRequest { r.Type = typ; return r }
	withKey := func(r *bridgev1.PublishRequest, key string) *bridgev1.PublishRequest {
		r.IdempotencyKey = key
		return r
	}
	reqs := []*bridgev1.PublishRequest{
		jsonReq(t, "orders", map[string]any{"n": 1.0}),
		jsonReq(t, "bad stream", map[string]any{"n": 2.0}),
		jsonReq(t, "audit", map[string]any{"n": 3.0}),
		withType(jsonReq(t, "orders", map[string]any{"n": 4.0}), "bad\ntype"),
		{Stream: "orders"}, // no payload
		withKey(jsonReq(t, "orders", map[string]any{"n": 6.0}), strings.Repeat("k", 129)),
		withKey(jsonReq(t, "orders", map[string]any{"n": 7.0}), "tab\there"),
		jsonReq(t, "orders", map[string]any{"n": 8.0}),
		withType(jsonReq(t, "audit", map[string]any{"n": 9.0}), "audit.done"),
	}
	stored := map[int]bool{0: true, 2: true, 7: true, 8: true}
	results, err := b.publishBatch(t, nil, reqs...)
	if err != nil {
		t.Fatalf("PublishBatch = %v, want results", err)
	}
	if len(results) != len(reqs) {
		t.Fatalf("PublishBatch gave %d results, want %d", len(results), len(reqs))
	}
	var last uint64
	for i, r := range results {
		if stored[i] {
			if r.GetStatus() != nil || r.GetId() <= last || r.GetDuplicate() {
				t.Errorf("result %d = %v, want an id above %d and no status", i, r, last)
			}
			last = r.GetId()
			continue
		}
		// What Publish says of the same event alone (it is refused, so
		// nothing is stored by asking).
		_, alone := b.client.Publish(t.Context(), reqs[i])
		want := status.Convert(alone)
		if want.Code() != codes.InvalidArgument {
			t.Fatalf("Publish(event %d) = %v, want InvalidArgument", i, alone)
		}
		if resultCode(r) != want.Code() || r.GetStatus().GetMessage() != want.Message() || r.GetId() != 0 {
			t.Errorf("result %d = %v, want id 0 and status %v %q (as Publish)", i, r, want.Code(), want.Message())
		}
	}
	if msg := results[5].GetStatus().GetMessage(); !strings.Contains(msg, "idempotency_key") {
		t.Errorf("result of a 129-byte key says %q, want it to name idempotency_key", msg)
	}
	b.publish(t, jsonReq(t, "orders", "end"))
	for _, i := range []int{0, 2, 7, 8} {
		ev := sub.next(t)
		f := toFrame(t, ev)
		if f.ID != id(results[i].GetId()) || f.Data.(map[string]any)["n"] != float64(i+1) {
			t.Errorf("event %+v, want id %d carrying n=%d", f, results[i].GetId(), i+1)
		}
		if i == 8 && f.Type != "audit.done" {
			t.Errorf("event %+v, want type audit.done", f)
		}
	}
	if f := toFrame(t, sub.next(t)); f.Data != "end" {
		t.Errorf("after the batch got %+v, want the end marker: a refused event was sent", f)
	}
}

// TestPublishBatchLimits: more than --max-batch events is InvalidArgument
// naming the limit and the flag, and stores nothing; a request over
// --max-batch-bytes is refused unread with ResourceExhausted; an empty
// batch and one of exactly --max-batch events of --max-payload each, within
// --max-batch-bytes, succeed.
func TestPublishBatchLimits(t *testing.T) {
	t.Parallel()
	const maxPayload = 1 << 10
	b := startBridge(t, bridge.Config{MaxBatch: 50, MaxPayload: maxPayload, MaxBatchBytes: 200 << 10})
	full := func(n int) []*bridgev1.PublishRequest {
		reqs := make([]*bridgev1.PublishRequest, n)
		for i := range reqs {
			reqs[i] = jsonReq(t, "big", strings.Repeat("x", maxPayload-2)) // with its quotes, exactly the limit
		}
		return reqs
	}

	_, err := b.publishBatch(t, nil, full(51)...)
	checkCall(t, "PublishBatch of 51 events", err, codes.InvalidArgument, "51 events", "limit is 50", "--max-batch")
	if n := historyEvents(t, b.baseURL); n != 0 {
		t.Errorf("after a refused batch history holds %v events, want 0", n)
	}

	res, err := b.publishBatch(t, nil)
	if err != nil || len(res) != 0 {
		t.Errorf("PublishBatch() = %v, %v; want no results and no error", res, err)
	}

	res, err = b.publishBatch(t, nil, full(50)...)
	if err != nil {
		t.Fatalf("PublishBatch of 50 events of --max-payload = %v, want success", err)
	}
	for i, r := range res {
		if r.GetStatus() != nil {
			t.Fatalf("result %d = %v, want stored", i, r)
		}
	}

	// 50 events of 10 KiB: over the 200 KiB request limit.
	big := make([]*bridgev1.PublishRequest, 50)
	for i := range big {
		big[i] = jsonReq(t, "big", strings.Repeat("y", 10<<10))
	}
	if size := proto.Size(&bridgev1.PublishBatchRequest{Events: big}); size <= 200<<10 {
		t.Fatalf("test batch is %d bytes, want it over the limit", size)
	}
	_, err = b.publishBatch(t, nil, big...)
	checkCall(t, "PublishBatch over --max-batch-bytes", err, codes.ResourceExhausted, "larger than max")
}

// TestPublishBatchGrants: grants and rate apply per event: a publisher
// allowed orders but not billing gets PermissionDenied for its billing
// events only, with the message a Publish gets, and its orders events are
// stored.
func TestPublishBatchGrants(t *testing.T) {
	t.Parallel()
	b, _ := startBridgeFrom(t, bridge.Config{Publishers: testPublishers(t)}, nil)
	md := bearer(ordersToken)
	results, err := b.publishBatch(t, md,
		jsonReq(t, "orders", 1.0),
		jsonReq(t, "billing", 2.0),
		jsonReq(t, "orders.eu", 3.0),
		jsonReq(t, "bad name", 4.0),
	)
	if err != nil {
		t.Fatalf("PublishBatch = %v, want results", err)
	}
	_, alone := b.publishAs(t, md, "billing")
	want := status.Convert(alone)
	wantCodes := []codes.Code{codes.OK, codes.PermissionDenied, codes.OK, codes.InvalidArgument}
	for i, r := range results {
		if resultCode(r) != wantCodes[i] {
			t.Errorf("result %d = %v, want %v", i, r, wantCodes[i])
		}
	}
	if got := results[1].GetStatus().GetMessage(); got != want.Message() {
		t.Errorf("refused event's message %q, want Publish's %q", got, want.Message())
	}
	if results[0].GetId() == 0 || results[2].GetId() <= results[0].GetId() {
		t.Errorf("stored results %v and %v, want increasing ids", results[0], results[2])
	}
	// No credential: the whole call is refused, as a Publish is.
	_, err = b.publishBatch(t, nil, jsonReq(t, "orders", 1.0))
	checkCall(t, "PublishBatch without a credential", err, codes.Unauthenticated)
}

// TestPublishBatchRate: each event of a batch spends one token of its
// publisher's rate: past the burst, events get ResourceExhausted, each on
// its own.
func TestPublishBatchRate(t *testing.T) {
	t.Parallel()
	b, _ := startBridgeFrom(t, bridge.Config{Publishers: testPublishers(t,
		pubEntry{Name: "bursty", TokenSHA256: hashToken("bursty-token"), Streams: []string{"bursty"}, Rate: 0.001, Burst: 3},
	)}, nil)
	reqs := make([]*bridgev1.PublishRequest, 5)
	for i := range reqs {
		reqs[i] = jsonReq(t, "bursty", float64(i))
	}
	results, err := b.publishBatch(t, bearer("bursty-token"), reqs...)
	if err != nil {
		t.Fatalf("PublishBatch = %v, want results", err)
	}
	for i, r := range results {
		want := codes.OK
		if i >= 3 {
			want = codes.ResourceExhausted
		}
		if resultCode(r) != want {
			t.Errorf("result %d = %v, want %v", i, r, want)
		}
	}
	if n := authFailures(t, b.baseURL, "rate_limited"); n != 2 {
		t.Errorf("rate_limited failures = %v, want 2", n)
	}
}
