package bridge

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/reflect/protoreflect"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/payload"
)

// A request that does not decode is the caller's mistake, and gets
// INVALID_ARGUMENT saying what to fix, naming the field where it can.
//
// grpc-go cannot be told so by the codec: whatever error a codec's
// Unmarshal returns, a status included, grpc-go makes it INTERNAL ("grpc:
// failed to unmarshal the received message", rpc_util.go recv) and writes
// that status at once (stream.go, serverStream.RecvMsg), before any
// interceptor or handler runs. TestGRPCMakesCodecErrorsInternal pins it.
//
// So the server's codec (requestCodec) reports success for a request that
// does not decode, and leaves its verdict in the message itself: it resets
// the message and sets its unknown fields to undecodableMark followed by
// what is wrong. The interceptors, unary and stream (rejectUndecodable,
// rejectUndecodableStream), find the mark and answer INVALID_ARGUMENT with
// it, before auth or any handler sees the message.
// A decoded message cannot carry the mark: its first byte would be a field
// tag of field number 0, which no decoder accepts. The codec is installed
// only with both interceptors (server.go).

// undecodableMark starts the unknown fields of a request that did not
// decode: a field tag of field number 0, which no decoded message holds.
const undecodableMark = 0x00

// requestCodec is the gRPC server's codec: grpc-go's own proto codec
// (every Marshal, and every Unmarshal of a request that decodes), except
// that a request that does not decode, or whose top-level fields come with
// a wire type their type never has, is marked (see above) instead of
// failing.
type requestCodec struct {
	encoding.CodecV2
}

// newRequestCodec returns the server's codec around grpc-go's proto codec.
func newRequestCodec() requestCodec {
	return requestCodec{CodecV2: encoding.GetCodecV2(grpcproto.Name)}
}

// Unmarshal decodes data into v with grpc-go's proto codec. When that
// fails, or v's own fields hold values of a wire type their type never
// has (protobuf keeps those as unknown fields, and the field reads as
// unset: a publisher would be told its stream is empty), v is reset and
// marked with what is wrong, and Unmarshal reports success.
//
// Publish requests with a json payload, the common case, are decoded by
// payload.DecodeRequest instead when they are in the form it takes (see
// decodePublish).
func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if decodePublish(data, v) {
		return nil
	}
	err := c.CodecV2.Unmarshal(data, v)
	m := messageV2Of(v)
	if m == nil {
		// Not a protobuf message: the server's own bug, INTERNAL is right.
		return err
	}
	r := m.ProtoReflect()
	if err == nil {
		// The common request has no unknown fields: no more work.
		if u := r.GetUnknown(); len(u) > 0 {
			if problem := misTypedField(r.Descriptor(), u); problem != "" {
				markUndecodable(m, r.Descriptor(), problem)
			}
		}
		return nil
	}
	md := r.Descriptor()
	b := data.Materialize()
	problem := wireProblem(md, b, nil, 0)
	if problem == "" {
		// protobuf refused it for a reason the walk does not check (a
		// required field of a proto2 message): its own words.
		problem = err.Error() + ": send the message's complete protobuf encoding"
	}
	markUndecodable(m, md, problem)
	return nil
}

// decodePublish decodes data into v, a PublishRequest or a
// PublishBatchRequest, with payload.DecodeRequest: without building the
// json payload's tree of messages, which cost a quarter to a third of the
// bridge's CPU under batch and stream publishers. It returns false for any
// other v, and for a request not in the form DecodeRequest takes: then
// protobuf decodes it, and says what is wrong with it if anything is.
func decodePublish(data mem.BufferSlice, v any) bool {
	switch v := v.(type) {
	case *bridgev1.PublishRequest:
		return withBytes(data, func(b []byte) bool { return payload.DecodeRequest(b, v) })
	case *bridgev1.PublishBatchRequest:
		return withBytes(data, func(b []byte) bool { return decodeBatch(b, v) })
	}
	return false
}

// withBytes calls f with data's bytes, in one slice: a message that came in
// several buffers is copied into one from grpc-go's pool, and back after.
// f must keep no reference to them.
func withBytes(data mem.BufferSlice, f func([]byte) bool) bool {
	if len(data) == 1 {
		return f(data[0].ReadOnlyData())
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return f(buf.ReadOnlyData())
}

// decodeBatch decodes b, a PublishBatchRequest, into batch: each event with
// payload.DecodeRequest, or protobuf when it is not in the form that takes.
// False when b has anything but events, or an event that does not decode:
// then the whole request goes the usual way, which says what is wrong.
func decodeBatch(b []byte, batch *bridgev1.PublishBatchRequest) bool {
	n := 0
	for rest := b; len(rest) > 0; n++ {
		num, wt, k := protowire.ConsumeTag(rest)
		if k < 0 || num != 1 || wt != protowire.BytesType {
			return false
		}
		m := protowire.ConsumeFieldValue(num, wt, rest[k:])
		if m < 0 {
			return false
		}
		rest = rest[k+m:]
	}
	// One allocation for all: the requests live and go together.
	reqs := make([]bridgev1.PublishRequest, n)
	events := make([]*bridgev1.PublishRequest, n)
	for i := range n {
		_, _, k := protowire.ConsumeTag(b)
		e, m := protowire.ConsumeBytes(b[k:])
		b = b[k+m:]
		r := &reqs[i]
		if !payload.DecodeRequest(e, r) && proto.Unmarshal(e, r) != nil {
			return false
		}
		events[i] = r
	}
	batch.Reset()
	batch.Events = events
	return true
}

// messageV2Of returns v as a protobuf message, nil when it is none; as
// grpc-go's codec does.
func messageV2Of(v any) proto.Message {
	switch v := v.(type) {
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(v)
	case protoadapt.MessageV2:
		return v
	}
	return nil
}

// markUndecodable resets m, a message of type md, and marks it as a request
// that did not decode, for problem. (A message type with no room for
// unknown fields, a legacy one without XXX_unrecognized, would lose the
// mark and go on empty; the bridge serves none.)
func markUndecodable(m proto.Message, md protoreflect.MessageDescriptor, problem string) {
	proto.Reset(m)
	msg := fmt.Sprintf("request is not a valid %s: %s", md.FullName(), problem)
	m.ProtoReflect().SetUnknown(append([]byte{undecodableMark}, msg...))
}

// undecodable returns the INVALID_ARGUMENT status of a request that
// requestCodec marked, nil for any other.
func undecodable(req any) error {
	m := messageV2Of(req)
	if m == nil {
		return nil
	}
	u := m.ProtoReflect().GetUnknown()
	if len(u) == 0 || u[0] != undecodableMark {
		return nil
	}
	return status.Error(codes.InvalidArgument, string(u[1:]))
}

// rejectUndecodable returns the unary interceptor that answers a request
// that did not decode (see above), after telling rejected its method, and
// hands any other to next. It runs next itself rather than being a link of
// grpc-go's chain: each link costs an allocation per call.
func rejectUndecodable(next grpc.UnaryServerInterceptor, rejected func(method string)) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := undecodable(req); err != nil {
			rejected(info.FullMethod)
			return nil, err
		}
		return next(ctx, req, info, handler)
	}
}

// rejectUndecodableStream is the stream interceptor that fails the
// receive of a message that did not decode (see above); the handler
// returns that error, so it is the call's status.
func rejectUndecodableStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, decodeCheckedStream{ss})
}

type decodeCheckedStream struct{ grpc.ServerStream }

func (s decodeCheckedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return undecodable(m)
}

// misTypedField returns what is wrong with the first of unknown, the
// unknown fields of a decoded message of type md, that is one of md's own
// fields sent with a wire type its type never has; "" when none is.
func misTypedField(md protoreflect.MessageDescriptor, unknown []byte) string {
	for len(unknown) > 0 {
		num, typ, n := protowire.ConsumeTag(unknown)
		if n < 0 {
			return "" // cannot happen: protobuf keeps only well-formed unknown fields
		}
		if fd := md.Fields().ByNumber(num); fd != nil && !wireTypeFits(fd, typ) {
			return misTyped([]protoreflect.FieldDescriptor{fd}, typ)
		}
		m := protowire.ConsumeFieldValue(num, typ, unknown[n:])
		if m < 0 {
			return ""
		}
		unknown = unknown[n+m:]
	}
	return ""
}

// wireProblem walks b, the bytes of a message of type md at path (the
// fields from the request down to it; none for the request itself),
// depth messages deep, and says what is wrong with the first field that
// protobuf cannot decode, or that holds a value of a wire type its type
// never has; "" when it finds nothing wrong.
func wireProblem(md protoreflect.MessageDescriptor, b []byte, path []protoreflect.FieldDescriptor, depth int) string {
	if depth > protowire.DefaultRecursionLimit {
		return fmt.Sprintf("%s nests messages more than %d deep: send shallower data", fieldName(path), protowire.DefaultRecursionLimit)
	}
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return fmt.Sprintf("byte %d%s starts no valid field (%v): send the message's complete protobuf encoding, unchanged", off, ofField(path), parseErrorText(n))
		}
		fd := md.Fields().ByNumber(num)
		if fd == nil {
			// A field this bridge does not know is skipped, as protobuf
			// does, if it is whole.
			m := protowire.ConsumeFieldValue(num, typ, b[off+n:])
			if m < 0 {
				return fmt.Sprintf("field %d%s, unknown to %s, is cut short or malformed (%v): send the message's complete protobuf encoding", num, ofField(path), md.FullName(), parseErrorText(m))
			}
			off += n + m
			continue
		}
		// Appended in place: siblings reuse the slot, and a problem is
		// put into words at once, so a path costs one slice, however deep.
		fpath := append(path, fd)
		if !wireTypeFits(fd, typ) {
			return misTyped(fpath, typ)
		}
		rest := b[off+n:]
		var m int
		var problem string
		switch typ {
		case protowire.BytesType:
			var v []byte
			if v, m = protowire.ConsumeBytes(rest); m < 0 {
				return cutShort(fpath, rest, m)
			}
			problem = bytesProblem(fd, v, fpath, depth)
		case protowire.StartGroupType:
			var v []byte
			if v, m = protowire.ConsumeGroup(num, rest); m < 0 {
				return fmt.Sprintf("%s is cut short or malformed (%v): send the message's complete protobuf encoding", fieldName(fpath), parseErrorText(m))
			}
			problem = wireProblem(fd.Message(), v, fpath, depth+1)
		default:
			if m = protowire.ConsumeFieldValue(num, typ, rest); m < 0 {
				return fmt.Sprintf("%s is cut short or malformed (%v): send the message's complete protobuf encoding", fieldName(fpath), parseErrorText(m))
			}
		}
		if problem != "" {
			return problem
		}
		off += n + m
	}
	return ""
}

// bytesProblem says what is wrong with v, the length-delimited value of fd
// at fpath, depth messages deep: text that is not UTF-8, a message that
// does not decode, packed values cut short; "" when nothing is.
func bytesProblem(fd protoreflect.FieldDescriptor, v []byte, fpath []protoreflect.FieldDescriptor, depth int) string {
	switch {
	case fd.Kind() == protoreflect.StringKind:
		if enforcesUTF8(fd) && !utf8.Valid(v) {
			return fmt.Sprintf("%s holds invalid UTF-8: send UTF-8 text", fieldName(fpath))
		}
	case fd.Message() != nil: // a message, or a map's entry
		return wireProblem(fd.Message(), v, fpath, depth+1)
	case fd.IsList() && fd.Kind() != protoreflect.BytesKind: // packed scalars
		for len(v) > 0 {
			m := protowire.ConsumeFieldValue(0, scalarWireType(fd.Kind()), v)
			if m < 0 {
				return fmt.Sprintf("%s holds packed values cut short (%v): send the message's complete protobuf encoding", fieldName(fpath), parseErrorText(m))
			}
			v = v[m:]
		}
	}
	return ""
}

// cutShort says what is wrong with rest, the bytes after the tag of a
// length-delimited field at fpath that did not decode.
func cutShort(fpath []protoreflect.FieldDescriptor, rest []byte, code int) string {
	if length, k := protowire.ConsumeVarint(rest); k > 0 && length > uint64(len(rest)-k) { //nolint:gosec // k <= len(rest)
		return fmt.Sprintf("%s says it holds %d bytes, and the request has %d left: it is cut short, or the length is wrong; send the message's complete protobuf encoding", fieldName(fpath), length, len(rest)-k)
	}
	return fmt.Sprintf("%s has a malformed length (%v): send the message's complete protobuf encoding", fieldName(fpath), parseErrorText(code))
}

// misTyped says that the field at fpath came with wire type typ, which its
// type never has.
func misTyped(fpath []protoreflect.FieldDescriptor, typ protowire.Type) string {
	fd := fpath[len(fpath)-1]
	return fmt.Sprintf("%s is a %s, but was sent as %s: the sender encodes %s from another definition than the bridge's; build it from the bridge's .proto (server reflection serves it)",
		fieldName(fpath), kindName(fd), wireTypeName(typ), fd.ContainingMessage().FullName())
}

// parseErrorText says what protowire's error code means, without the
// "proto:" its error text starts with.
func parseErrorText(code int) string {
	msg := protowire.ParseError(code).Error()
	if rest, ok := strings.CutPrefix(msg, "proto:"); ok {
		msg = strings.TrimLeftFunc(rest, unicode.IsSpace)
	}
	return msg
}

// wireTypeFits reports whether a value of fd may come with wire type typ:
// its type's, or, for a repeated scalar, packed (length-delimited).
func wireTypeFits(fd protoreflect.FieldDescriptor, typ protowire.Type) bool {
	want := scalarWireType(fd.Kind())
	return typ == want || (typ == protowire.BytesType && fd.IsList() && want != protowire.BytesType && want != protowire.StartGroupType)
}

// scalarWireType returns the wire type of one value of kind k.
func scalarWireType(k protoreflect.Kind) protowire.Type {
	switch k {
	case protoreflect.BoolKind, protoreflect.EnumKind, protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Uint32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Uint64Kind:
		return protowire.VarintType
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return protowire.Fixed32Type
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return protowire.Fixed64Type
	case protoreflect.GroupKind:
		return protowire.StartGroupType
	default: // string, bytes, message
		return protowire.BytesType
	}
}

// enforcesUTF8 reports whether protobuf refuses invalid UTF-8 in fd, a
// string field: proto3, and editions unless turned off (the rule of
// protobuf's internal/strs.EnforceUTF8).
func enforcesUTF8(fd protoreflect.FieldDescriptor) bool {
	if fd.Syntax() == protoreflect.Editions {
		if e, ok := fd.(interface{ EnforceUTF8() bool }); ok {
			return e.EnforceUTF8()
		}
	}
	return fd.Syntax() == protoreflect.Proto3
}

// fieldName names the field at path for a sender: `field "json.string_value"
// (4.3)`, its names and its numbers from the request down. A path deeper
// than maxNamedPath keeps its ends, so a status message stays short.
func fieldName(path []protoreflect.FieldDescriptor) string {
	if len(path) == 0 {
		return "the request"
	}
	var names, nums []string
	for i, fd := range path {
		if len(path) > maxNamedPath && i == maxNamedPath/2 {
			names = append(names, "…")
			nums = append(nums, "…")
		}
		if len(path) > maxNamedPath && i >= maxNamedPath/2 && i < len(path)-maxNamedPath/2 {
			continue
		}
		names = append(names, string(fd.Name()))
		nums = append(nums, strconv.Itoa(int(fd.Number())))
	}
	return fmt.Sprintf("field %q (%s)", strings.Join(names, "."), strings.Join(nums, "."))
}

// maxNamedPath is how many fields of a path fieldName names.
const maxNamedPath = 8

// ofField is " of " and the field at path, or "" for the request itself.
func ofField(path []protoreflect.FieldDescriptor) string {
	if len(path) == 0 {
		return ""
	}
	return " of " + fieldName(path)
}

// kindName names fd's type for a sender: "string", "google.protobuf.Value
// message", "repeated int32".
func kindName(fd protoreflect.FieldDescriptor) string {
	name := fd.Kind().String()
	switch {
	case fd.IsMap():
		name = "map"
	case fd.Message() != nil:
		name = string(fd.Message().FullName()) + " message"
	case fd.Enum() != nil:
		name = string(fd.Enum().FullName()) + " enum"
	}
	if fd.IsList() {
		name = "repeated " + name
	}
	return name
}

// wireTypeName names a wire type for a sender.
func wireTypeName(typ protowire.Type) string {
	switch typ {
	case protowire.VarintType:
		return "a varint (wire type 0)"
	case protowire.Fixed64Type:
		return "8 fixed bytes (wire type 1)"
	case protowire.BytesType:
		return "length-delimited bytes (wire type 2)"
	case protowire.StartGroupType:
		return "a group (wire type 3)"
	case protowire.EndGroupType:
		return "a group's end (wire type 4)"
	case protowire.Fixed32Type:
		return "4 fixed bytes (wire type 5)"
	}
	return fmt.Sprintf("wire type %d", typ)
}
