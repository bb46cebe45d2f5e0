package bridge

import (
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// Marshal encodes v with grpc-go's proto codec, except the answer the
// bridge sends most: the result of a stored event, a PublishResult or
// PublishResponse with an id, a duplicate flag and nothing else. A publish
// stream sends one per event, and grpc-go's codec spends three allocations
// and a walk of the message on its dozen bytes; here they are written in
// one allocation. The bytes are protobuf's (TestAnswerWireIsProtobufs,
// which also fails when either message gains a field this does not write).
func (c requestCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *bridgev1.PublishResult:
		if m.Status == nil && len(m.ProtoReflect().GetUnknown()) == 0 {
			return idAnswer(m.Id, m.Duplicate), nil
		}
	case *bridgev1.PublishResponse:
		if len(m.ProtoReflect().GetUnknown()) == 0 {
			return idAnswer(m.Id, m.Duplicate), nil
		}
	}
	return c.CodecV2.Marshal(v)
}

// answerFields are the numbers of the id and duplicate fields, the same in
// PublishResult and PublishResponse.
const (
	answerID        protowire.Number = 1
	answerDuplicate protowire.Number = 2
)

// maxAnswerSize: a tag and a varint of up to ten bytes, a tag and a one.
const maxAnswerSize = 1 + 10 + 2

// answerBuf is an encoded answer and the buffer slice that hands it to
// grpc-go, in one allocation. A pointer to a SliceBuffer is a mem.Buffer
// too (its methods have value receivers), and holding one costs no
// allocation of its own, as converting the SliceBuffer would.
type answerBuf struct {
	bufs  [1]mem.Buffer
	slice mem.SliceBuffer
	b     [maxAnswerSize]byte
}

// idAnswer returns the protobuf encoding of an answer with id and
// duplicate: proto3 leaves out fields at their zero values.
func idAnswer(id uint64, duplicate bool) mem.BufferSlice {
	a := new(answerBuf)
	b := a.b[:0]
	if id != 0 {
		b = protowire.AppendTag(b, answerID, protowire.VarintType)
		b = protowire.AppendVarint(b, id)
	}
	if duplicate {
		b = protowire.AppendTag(b, answerDuplicate, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	a.slice = b
	a.bufs[0] = &a.slice
	return a.bufs[:]
}
