package load

import (
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// The publishers encode their requests by hand: a PublishRequest whose json
// payload is the Struct {"seq", "t", "x"} of appendPayload, the bytes
// protobuf would write for it (TestRequestWireIsProtobufs). Through
// protobuf's reflection, building and encoding that Struct took a third of
// bridge-load's CPU, on the cores it shares with the server it measures;
// the baseline's publishers, for comparison, write their JSON bodies by
// hand (appendPayload). The server receives the same request either way.
//
// The Struct's entries go in the order t, x, seq: not sorted, as protobuf
// writes a map in an order of its own, so a server that sorts keys does
// that work here too.

// wireRequest is a request already encoded, sent by wireCodec as it is.
type wireRequest []byte

// wireCodec is the publishers' gRPC codec: it sends a *wireRequest as it
// is and decodes the responses with protobuf.
type wireCodec struct{ encoding.CodecV2 }

func newWireCodec() wireCodec { return wireCodec{encoding.GetCodecV2(grpcproto.Name)} }

func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	if w, ok := v.(*wireRequest); ok {
		// A buffer of its own per message: gRPC may write it after
		// Send returned.
		return mem.BufferSlice{mem.SliceBuffer(*w)}, nil
	}
	return c.CodecV2.Marshal(v)
}

// Field numbers of PublishRequest, PublishBatchRequest and of the
// google.protobuf Value, Struct and map entry.
const (
	wireStream      protowire.Number = 1 // PublishRequest.stream
	wireJSON        protowire.Number = 4 // PublishRequest.json
	wireBatchEvents protowire.Number = 1 // PublishBatchRequest.events
	wireValueString protowire.Number = 3 // Value.string_value
	wireValueStruct protowire.Number = 5 // Value.struct_value
	wireFields      protowire.Number = 1 // Struct.fields (its map entries)
	wireEntryKey    protowire.Number = 1
	wireEntryValue  protowire.Number = 2
)

// wireSizes are the encoded sizes of a request's nested messages.
type wireSizes struct{ request, value, strct int }

// sizes returns the sizes of the request appendRequest writes.
func sizes(stream string, seq, t, pad string) wireSizes {
	var z wireSizes
	for _, e := range [...][2]string{{"t", t}, {"x", pad}, {"seq", seq}} {
		z.strct += protowire.SizeTag(wireFields) + protowire.SizeBytes(entrySize(e[0], e[1]))
	}
	z.value = protowire.SizeTag(wireValueStruct) + protowire.SizeBytes(z.strct)
	z.request = protowire.SizeTag(wireStream) + protowire.SizeBytes(len(stream)) +
		protowire.SizeTag(wireJSON) + protowire.SizeBytes(z.value)
	return z
}

func entrySize(key, s string) int {
	return protowire.SizeTag(wireEntryKey) + protowire.SizeBytes(len(key)) +
		protowire.SizeTag(wireEntryValue) + protowire.SizeBytes(stringValueSize(s))
}

func stringValueSize(s string) int {
	return protowire.SizeTag(wireValueString) + protowire.SizeBytes(len(s))
}

// appendRequest appends the PublishRequest of the payload {"seq": seq,
// "t": t, "x": pad} to stream, whose sizes z are.
func appendRequest(b []byte, z wireSizes, stream string, seq, t, pad string) []byte {
	b = protowire.AppendTag(b, wireStream, protowire.BytesType)
	b = protowire.AppendString(b, stream)
	b = protowire.AppendTag(b, wireJSON, protowire.BytesType)
	b = appendLen(b, z.value)
	b = protowire.AppendTag(b, wireValueStruct, protowire.BytesType)
	b = appendLen(b, z.strct)
	for _, e := range [...][2]string{{"t", t}, {"x", pad}, {"seq", seq}} {
		b = protowire.AppendTag(b, wireFields, protowire.BytesType)
		b = appendLen(b, entrySize(e[0], e[1]))
		b = protowire.AppendTag(b, wireEntryKey, protowire.BytesType)
		b = protowire.AppendString(b, e[0])
		b = protowire.AppendTag(b, wireEntryValue, protowire.BytesType)
		b = appendLen(b, stringValueSize(e[1]))
		b = protowire.AppendTag(b, wireValueString, protowire.BytesType)
		b = protowire.AppendString(b, e[1])
	}
	return b
}

// appendLen appends the length n of a field's bytes.
func appendLen(b []byte, n int) []byte {
	return protowire.AppendVarint(b, uint64(n)) //nolint:gosec // a size, never negative
}
