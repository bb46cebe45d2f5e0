package payload

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// decodeBoth decodes b with DecodeRequest and with protobuf, and renders
// each request's payload. It fails t when DecodeRequest took b and the two
// differ in any field or in the data; it returns whether DecodeRequest
// took b.
func decodeBoth(t *testing.T, enc *Encoder, b []byte) bool {
	t.Helper()
	var fast bridgev1.PublishRequest
	if !DecodeRequest(b, &fast) {
		return false
	}
	var slow bridgev1.PublishRequest
	if err := proto.Unmarshal(b, &slow); err != nil {
		t.Fatalf("DecodeRequest took % x, which protobuf refuses: %v", b, err)
	}
	if fast.GetStream() != slow.GetStream() || fast.GetType() != slow.GetType() || fast.GetIdempotencyKey() != slow.GetIdempotencyKey() {
		t.Fatalf("DecodeRequest(% x) = %q %q %q; protobuf: %q %q %q", b,
			fast.GetStream(), fast.GetType(), fast.GetIdempotencyKey(), slow.GetStream(), slow.GetType(), slow.GetIdempotencyKey())
	}
	got, gotName, gotErr := enc.Payload(&fast)
	want, wantName, wantErr := enc.Payload(&slow)
	if gotErr != nil || wantErr != nil || gotName != wantName || !bytes.Equal(got, want) {
		t.Fatalf("payload of % x: DecodeRequest renders %s %q (%v); protobuf and the encoder: %s %q (%v)", b, got, gotName, gotErr, want, wantName, wantErr)
	}
	if len(got) != cap(got) {
		t.Fatalf("data has capacity %d for %d bytes: history would count bytes it does not use", cap(got), len(got))
	}
	return true
}

// TestDecodeRequestIsProtobuf: a json request as protobuf encodes it
// decodes to the same fields and renders to the same data as through
// protobuf and the encoder; what the encoder refuses, or protobuf decodes
// in a way of its own, DecodeRequest leaves to them.
func TestDecodeRequestIsProtobuf(t *testing.T) {
	t.Parallel()
	enc := NewEncoder(nil, false, false)
	for _, v := range valueCases(t) {
		req := &bridgev1.PublishRequest{Stream: "orders", Type: "order.created", IdempotencyKey: "k-1",
			Payload: &bridgev1.PublishRequest_Json{Json: v}}
		for _, deterministic := range []bool{false, true} {
			b, err := proto.MarshalOptions{Deterministic: deterministic}.Marshal(req)
			if err != nil {
				continue // protobuf does not encode text that is not UTF-8 (the case below does)
			}
			_, _, encErr := enc.Payload(req)
			took := decodeBoth(t, enc, b)
			if encErr == nil && !took {
				t.Errorf("DecodeRequest left %v to protobuf, which the encoder renders", v)
			}
			if encErr != nil && took {
				t.Errorf("DecodeRequest took %v, which the encoder refuses (%v)", v, encErr)
			}
		}
	}
}

// TestDecodeRequestLeavesTheRestToProtobuf: every form DecodeRequest does
// not take, because protobuf decodes it differently from a plain reading
// (a field twice, merged or last-wins), refuses it, or it is not json.
func TestDecodeRequestLeavesTheRestToProtobuf(t *testing.T) {
	t.Parallel()
	str := func(num protowire.Number, s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
	}
	msg := func(num protowire.Number, parts ...[]byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), bytes.Join(parts, nil))
	}
	varint := func(num protowire.Number, x uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), x)
	}
	double := func(f float64) []byte {
		return protowire.AppendFixed64(protowire.AppendTag(nil, valueNumber, protowire.Fixed64Type), math.Float64bits(f))
	}
	entry := func(k string, v []byte) []byte { return msg(structFields, str(entryKey, k), msg(entryValue, v)) }
	null := varint(valueNull, 0)
	anyEvent, err := proto.Marshal(&anypb.Any{TypeUrl: "type.googleapis.com/shop.v1.OrderCreated"})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"no payload":                   str(requestStream, "s"),
		"typed event":                  bytes.Join([][]byte{str(requestStream, "s"), msg(3, anyEvent)}, nil),
		"unknown field":                bytes.Join([][]byte{str(requestStream, "s"), msg(requestJSON, null), varint(9, 1)}, nil),
		"stream as a varint":           bytes.Join([][]byte{varint(requestStream, 1), msg(requestJSON, null)}, nil),
		"json twice":                   bytes.Join([][]byte{msg(requestJSON, null), msg(requestJSON, null)}, nil),
		"stream not UTF-8":             bytes.Join([][]byte{str(requestStream, "\xff"), msg(requestJSON, null)}, nil),
		"empty Value":                  msg(requestJSON),
		"two kinds":                    msg(requestJSON, null, varint(valueBool, 1)),
		"null 1":                       msg(requestJSON, varint(valueNull, 1)),
		"bool 2":                       msg(requestJSON, varint(valueBool, 2)),
		"NaN":                          msg(requestJSON, double(math.NaN())),
		"infinity":                     msg(requestJSON, double(math.Inf(1))),
		"string not UTF-8":             msg(requestJSON, str(valueString, "a\xffb")),
		"key not UTF-8":                msg(requestJSON, msg(valueStruct, entry("\xfe", null))),
		"key twice":                    msg(requestJSON, msg(valueStruct, entry("b", null), entry("a", null), entry("b", double(1)))),
		"value before key":             msg(requestJSON, msg(valueStruct, msg(structFields, msg(entryValue, null), str(entryKey, "k")))),
		"entry without a value":        msg(requestJSON, msg(valueStruct, msg(structFields, str(entryKey, "k")))),
		"list of an empty Value":       msg(requestJSON, msg(valueList, msg(structFields))),
		"cut short":                    msg(requestJSON, null)[:2],
		"number as a varint":           msg(requestJSON, varint(valueNumber, 1)),
		"struct with an unknown field": msg(requestJSON, msg(valueStruct, entry("k", null), varint(2, 1))),
		"deeper than maxWireDepth":     msg(requestJSON, nest(maxWireDepth+1)),
	} {
		var req bridgev1.PublishRequest
		if DecodeRequest(b, &req) {
			t.Errorf("%s: DecodeRequest took % x", name, b)
		}
	}
	// Right at the depth limit, it still takes it.
	enc := NewEncoder(nil, false, false)
	if !decodeBoth(t, enc, msg(requestJSON, nest(maxWireDepth))) {
		t.Errorf("DecodeRequest left a Value %d lists deep to protobuf", maxWireDepth)
	}
}

// nest returns the wire bytes of a Value that is depth lists, one in the
// other, around a null.
func nest(depth int) []byte {
	v := protowire.AppendVarint(protowire.AppendTag(nil, valueNull, protowire.VarintType), 0)
	for range depth {
		inner := protowire.AppendBytes(protowire.AppendTag(nil, structFields, protowire.BytesType), v)
		v = protowire.AppendBytes(protowire.AppendTag(nil, valueList, protowire.BytesType), inner)
	}
	return v
}

// FuzzDecodeRequest: whatever bytes DecodeRequest takes, protobuf decodes
// to the same request, and the encoder renders the same data.
func FuzzDecodeRequest(f *testing.F) {
	for _, v := range []any{map[string]any{"seq": "1", "x": strings.Repeat("x", 40)}, []any{1.5, nil, true, "é"}, "s", 0.0} {
		pv, err := structpb.NewValue(v)
		if err != nil {
			f.Fatal(err)
		}
		b, err := proto.Marshal(&bridgev1.PublishRequest{Stream: "a", Type: "t", IdempotencyKey: "k", Payload: &bridgev1.PublishRequest_Json{Json: pv}})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	enc := NewEncoder(nil, false, false)
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeBoth(t, enc, b)
	})
}

// BenchmarkDecodeRequest: a request like bridge-load's, decoded and
// rendered by DecodeRequest, and by protobuf and the encoder.
func BenchmarkDecodeRequest(b *testing.B) {
	v, err := structpb.NewValue(map[string]any{"seq": "41", "t": "1795000000000000000", "x": strings.Repeat("x", 80)})
	if err != nil {
		b.Fatal(err)
	}
	raw, err := proto.Marshal(&bridgev1.PublishRequest{Stream: "stream-42", Payload: &bridgev1.PublishRequest_Json{Json: v}})
	if err != nil {
		b.Fatal(err)
	}
	enc := NewEncoder(nil, false, false)
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req bridgev1.PublishRequest
			if !DecodeRequest(raw, &req) {
				b.Fatal("not taken")
			}
			if _, _, err := enc.Payload(&req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("protobuf", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req bridgev1.PublishRequest
			if err := proto.Unmarshal(raw, &req); err != nil {
				b.Fatal(err)
			}
			if _, _, err := enc.Payload(&req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
