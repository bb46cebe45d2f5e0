package bridge

import (
	"bytes"
	"math"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// TestAnswerWireIsProtobufs: the server codec writes the answers it encodes
// by hand in exactly protobuf's bytes, and leaves every other answer to
// protobuf. It fails when PublishResult or PublishResponse gains a field:
// idAnswer would leave it out.
func TestAnswerWireIsProtobufs(t *testing.T) {
	t.Parallel()
	fields := func(m proto.Message) []string {
		var names []string
		fds := m.ProtoReflect().Descriptor().Fields()
		for i := range fds.Len() {
			names = append(names, string(fds.Get(i).Name()))
		}
		return names
	}
	if got := fields(&bridgev1.PublishResult{}); !slices.Equal(got, []string{"id", "duplicate", "status"}) {
		t.Fatalf("PublishResult has fields %v: teach idAnswer the new ones, or leave such results to protobuf", got)
	}
	if got := fields(&bridgev1.PublishResponse{}); !slices.Equal(got, []string{"id", "duplicate"}) {
		t.Fatalf("PublishResponse has fields %v: teach idAnswer the new ones, or leave such answers to protobuf", got)
	}

	codec := newRequestCodec()
	var answers []proto.Message
	for _, id := range []uint64{0, 1, 127, 128, 1 << 62, math.MaxUint64} {
		for _, dup := range []bool{false, true} {
			answers = append(answers,
				&bridgev1.PublishResult{Id: id, Duplicate: dup},
				&bridgev1.PublishResponse{Id: id, Duplicate: dup})
		}
	}
	answers = append(answers,
		&bridgev1.PublishResult{Status: &bridgev1.Status{Code: 3, Message: "stream: empty"}},
		&bridgev1.PublishBatchResponse{Results: []*bridgev1.PublishResult{{Id: 7}, {Status: &bridgev1.Status{Code: 7}}}})
	withUnknown := &bridgev1.PublishResult{Id: 9}
	withUnknown.ProtoReflect().SetUnknown(protoreflect.RawFields{0x18, 0x01})
	answers = append(answers, withUnknown)
	for _, m := range answers {
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		data, err := codec.Marshal(m)
		if err != nil {
			t.Fatalf("Marshal(%v): %v", m, err)
		}
		if got := data.Materialize(); !bytes.Equal(got, want) {
			t.Errorf("Marshal(%v) = % x, protobuf writes % x", m, got, want)
		}
		data.Free()
	}
}

// BenchmarkMarshalAnswer: a stored event's result, as a publish stream
// sends one per event.
func BenchmarkMarshalAnswer(b *testing.B) {
	codec := newRequestCodec()
	r := &bridgev1.PublishResult{Id: 1<<62 + 12345}
	b.ReportAllocs()
	for b.Loop() {
		data, err := codec.Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		data.Free()
	}
}
