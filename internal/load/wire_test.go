package load

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// TestRequestWireIsProtobufs: the requests the publishers encode by hand,
// alone and in a batch, decode with protobuf to the request built with
// its own types.
func TestRequestWireIsProtobufs(t *testing.T) {
	t.Parallel()
	p := &grpcPublisher{size: 120, pad: "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}
	want := func(stream string, seq uint64, ts int64) *bridgev1.PublishRequest {
		s, tStr, pad := p.fields(seq, ts)
		v, err := structpb.NewValue(map[string]any{"seq": s, "t": tStr, "x": pad})
		if err != nil {
			t.Fatal(err)
		}
		return &bridgev1.PublishRequest{Stream: stream, Payload: &bridgev1.PublishRequest_Json{Json: v}}
	}
	evs := []outEvent{{"s-0", 0, 1795000000000000000}, {"stream-17", 123456, 1}, {"s-1", fenceSeq, 1795000000000000001}}
	var wantBatch bridgev1.PublishBatchRequest
	for _, ev := range evs {
		var got bridgev1.PublishRequest
		if err := proto.Unmarshal(*p.request(ev.stream, ev.seq, ev.t), &got); err != nil {
			t.Fatal(err)
		}
		w := want(ev.stream, ev.seq, ev.t)
		if !proto.Equal(&got, w) {
			t.Errorf("request %v decodes to %v, want %v", ev, &got, w)
		}
		wantBatch.Events = append(wantBatch.Events, w)
	}
	b := appendBatch(nil, p, evs)
	var gotBatch bridgev1.PublishBatchRequest
	if err := proto.Unmarshal(b, &gotBatch); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&gotBatch, &wantBatch) {
		t.Errorf("batch decodes to %v, want %v", &gotBatch, &wantBatch)
	}
}
