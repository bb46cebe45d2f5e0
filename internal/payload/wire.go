package payload

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// The bridge's gRPC server decodes most PublishRequests with DecodeRequest
// rather than protobuf: a json payload decoded by protobuf becomes a tree of
// maps and messages (a Struct), which the encoder then walks once and drops;
// decoding and collecting that tree was a quarter to a third of the bridge's
// CPU under a batch or stream publisher. DecodeRequest renders the payload
// straight from its wire bytes into the frame's JSON, and the request
// carries the rendered data to Payload (see renderedMark).
//
// It takes only the form every protobuf encoder writes: each field of the
// request and of the Value tree once, with its wire type, no unknown field,
// valid UTF-8, no NaN or infinity, a Struct without a key twice, no more
// than maxWireDepth deep. Anything else it leaves to protobuf and the
// encoder's Value path (DecodeRequest returns false), whose verdict,
// decoded data or error, is the contract; for what it takes, the request
// and the data are the same as theirs, byte for byte
// (TestDecodeRequestIsProtobuf, FuzzDecodeRequest).

// renderedMark starts the unknown fields of a request DecodeRequest
// decoded: the frame data of its json payload follows. A request protobuf
// decoded cannot start its unknown fields with it: it is the tag of field
// number 0, which no decoder accepts (the bridge's codec marks requests
// that do not decode with another such tag, 0x00).
const renderedMark = 0x01

// maxWireDepth is how deep DecodeRequest follows nested Structs and lists;
// deeper data goes through protobuf, which allows 10,000.
const maxWireDepth = 64

// Field numbers of PublishRequest, and of google.protobuf.Value, Struct,
// Struct.FieldsEntry and ListValue.
const (
	requestStream protowire.Number = 1
	requestType   protowire.Number = 2
	requestJSON   protowire.Number = 4
	requestKey    protowire.Number = 5

	valueNull   protowire.Number = 1
	valueNumber protowire.Number = 2
	valueString protowire.Number = 3
	valueBool   protowire.Number = 4
	valueStruct protowire.Number = 5
	valueList   protowire.Number = 6

	structFields protowire.Number = 1 // Struct's map entries; ListValue's values too
	entryKey     protowire.Number = 1
	entryValue   protowire.Number = 2
)

// wireValues renders Values from their wire bytes; a valueWriter with the
// default options decides the separator and whether the walk is in use
// (the options of an Encoder change nothing in a Value's JSON).
var wireValues = sync.OnceValue(func() valueWriter { return newValueWriter(protojson.MarshalOptions{}) })

// DecodeRequest decodes b, the protobuf encoding of a PublishRequest with a
// json payload in the common form (see above), into req, which it resets,
// rendering the payload as frame data on the way; req holds no reference
// to b. It returns false, with req in no particular state, for anything
// else: decode b with protobuf then.
//
// DecodeRequest is safe for concurrent use on different requests.
func DecodeRequest(b []byte, req *bridgev1.PublishRequest) bool {
	w := wireValues()
	if !w.ok {
		return false
	}
	var stream, typ, key, json []byte
	for len(b) > 0 {
		num, wt, n := protowire.ConsumeTag(b)
		if n < 0 || wt != protowire.BytesType {
			return false
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return false
		}
		b = b[n+m:]
		switch num {
		case requestStream:
			stream = v
		case requestType:
			typ = v
		case requestKey:
			key = v
		case requestJSON:
			if json != nil {
				return false // protobuf merges the two Values
			}
			json = v
		default:
			return false // a typed event, or a field this bridge does not know
		}
	}
	if json == nil || !utf8.Valid(stream) || !utf8.Valid(typ) || !utf8.Valid(key) {
		return false
	}
	bp := scratch.Get().(*[]byte) //nolint:forcetypeassert // the pool holds *[]byte
	out, ok := w.appendWire(append((*bp)[:0], renderedMark), json, 0)
	if ok {
		req.Reset()
		req.Stream, req.Type, req.IdempotencyKey = string(stream), string(typ), string(key)
		req.ProtoReflect().SetUnknown(bytes.Clone(out))
	}
	if cap(out) <= maxScratch {
		*bp = out
		scratch.Put(bp)
	}
	return ok
}

// rendered returns the frame data DecodeRequest rendered for req's json
// payload; false when req was decoded otherwise.
func rendered(req *bridgev1.PublishRequest) ([]byte, bool) {
	if req.GetPayload() != nil {
		return nil, false
	}
	u := req.ProtoReflect().GetUnknown()
	if len(u) < 2 || u[0] != renderedMark {
		return nil, false
	}
	// Its own allocation, one byte longer: the capacity history counts
	// is the data's.
	return u[1:len(u):len(u)], true
}

// appendWire appends v, the wire bytes of a Value, depth levels deep, as
// protojson renders it; false when v is not in the common form.
func (w valueWriter) appendWire(b []byte, v []byte, depth int) ([]byte, bool) {
	if depth > maxWireDepth {
		return b, false
	}
	num, wt, n := protowire.ConsumeTag(v)
	if n < 0 {
		return b, false // no kind (no bytes), or not a field
	}
	v = v[n:]
	var m int
	switch {
	case num == valueNull && wt == protowire.VarintType:
		var x uint64
		if x, m = protowire.ConsumeVarint(v); m < 0 || x != 0 {
			return b, false
		}
		b = append(b, "null"...)
	case num == valueBool && wt == protowire.VarintType:
		var x uint64
		if x, m = protowire.ConsumeVarint(v); m < 0 || x > 1 {
			return b, false
		}
		b = strconv.AppendBool(b, x == 1)
	case num == valueNumber && wt == protowire.Fixed64Type:
		var x uint64
		if x, m = protowire.ConsumeFixed64(v); m < 0 {
			return b, false
		}
		f := math.Float64frombits(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return b, false
		}
		b = appendFloat(b, f)
	case wt == protowire.BytesType && (num == valueString || num == valueStruct || num == valueList):
		var sub []byte
		if sub, m = protowire.ConsumeBytes(v); m < 0 {
			return b, false
		}
		var ok bool
		switch num {
		case valueString:
			b, ok = appendString(b, bytesString(sub))
		case valueStruct:
			b, ok = w.appendWireStruct(b, sub, depth)
		default:
			b, ok = w.appendWireList(b, sub, depth)
		}
		if !ok {
			return b, false
		}
	default:
		return b, false
	}
	// A second field would be a second kind (or the same kind again,
	// which protobuf merges): not the common form.
	return b, len(v) == m
}

// appendWireList appends l, the wire bytes of a ListValue.
func (w valueWriter) appendWireList(b, l []byte, depth int) ([]byte, bool) {
	b = append(b, '[')
	for i := 0; len(l) > 0; i++ {
		e, n := consumeEntry(l)
		if n < 0 {
			return b, false
		}
		l = l[n:]
		if i > 0 {
			b = append(b, w.comma...)
		}
		var ok bool
		if b, ok = w.appendWire(b, e, depth+1); !ok {
			return b, false
		}
	}
	return append(b, ']'), true
}

// wireField is one entry of a Struct: its key and its Value's wire bytes.
type wireField struct{ key, value []byte }

// appendWireStruct appends s, the wire bytes of a Struct, its keys in
// order, as protojson sorts them.
func (w valueWriter) appendWireStruct(b, s []byte, depth int) ([]byte, bool) {
	var buf [16]wireField
	fields := buf[:0]
	sorted := true
	for len(s) > 0 {
		e, n := consumeEntry(s)
		if n < 0 {
			return b, false
		}
		s = s[n:]
		f, ok := structEntry(e)
		if !ok {
			return b, false
		}
		if len(fields) > 0 && bytes.Compare(fields[len(fields)-1].key, f.key) >= 0 {
			sorted = false
		}
		fields = append(fields, f)
	}
	if !sorted {
		slices.SortFunc(fields, func(a, b wireField) int { return bytes.Compare(a.key, b.key) })
		for i := 1; i < len(fields); i++ {
			if bytes.Equal(fields[i-1].key, fields[i].key) {
				return b, false // protobuf keeps the last: not the common form
			}
		}
	}
	b = append(b, '{')
	for i, f := range fields {
		if i > 0 {
			b = append(b, w.comma...)
		}
		var ok bool
		if b, ok = appendString(b, bytesString(f.key)); !ok {
			return b, false
		}
		b = append(b, ':')
		if b, ok = w.appendWire(b, f.value, depth+1); !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

// bytesString is b as a string, without a copy, for appendString, which
// only reads it while b stays unchanged. (A conversion would copy every
// string of the payload once more.)
func bytesString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b)) //nolint:gosec // read only, while b lives and stays unchanged
}

// consumeEntry consumes one field 1 of a Struct or ListValue (a map entry,
// or a Value) from b: its bytes and the length consumed, negative when b
// does not start with one.
func consumeEntry(b []byte) ([]byte, int) {
	num, wt, n := protowire.ConsumeTag(b)
	if n < 0 || num != structFields || wt != protowire.BytesType {
		return nil, -1
	}
	e, m := protowire.ConsumeBytes(b[n:])
	if m < 0 {
		return nil, -1
	}
	return e, n + m
}

// structEntry decodes e, a Struct's map entry: a key, then a value, each
// once (a missing key or value, which protobuf takes as "" or an empty
// Value, is left to protobuf).
func structEntry(e []byte) (wireField, bool) {
	var f wireField
	num, wt, n := protowire.ConsumeTag(e)
	if n < 0 || num != entryKey || wt != protowire.BytesType {
		return f, false
	}
	k, m := protowire.ConsumeBytes(e[n:])
	if m < 0 {
		return f, false
	}
	e = e[n+m:]
	num, wt, n = protowire.ConsumeTag(e)
	if n < 0 || num != entryValue || wt != protowire.BytesType {
		return f, false
	}
	v, m := protowire.ConsumeBytes(e[n:])
	if m < 0 || n+m != len(e) {
		return f, false
	}
	// appendString checks the key's UTF-8, as protobuf checks a map key's.
	return wireField{key: k, value: v}, true
}
