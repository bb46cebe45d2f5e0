package schema_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/payload"
	"github.com/sse-bridge/bridge/internal/schema"
	"github.com/sse-bridge/bridge/internal/schema/schematest"
)

// filler builds a message of a type from bytes: each decision (set this
// field or not, how many elements, which value) takes the next byte, and
// zeros once the bytes run out, so any input builds a message and every
// message is reachable.
type filler struct {
	b     []byte
	types *payload.Registry
}

func (f *filler) byte() byte {
	if len(f.b) == 0 {
		return 0
	}
	c := f.b[0]
	f.b = f.b[1:]
	return c
}

func (f *filler) uint64() uint64 {
	var buf [8]byte
	n := int(f.byte() % 9) // short numbers are common: 0, small, large
	for i := range n {
		buf[i] = f.byte()
	}
	return binary.LittleEndian.Uint64(buf[:])
}

func (f *filler) string() string {
	n := int(f.byte() % 12)
	var b strings.Builder
	for range n {
		c := f.byte()
		switch {
		case c < 0x80:
			b.WriteByte(c)
		case c < 0xc0:
			b.WriteRune(rune(0x80 + int(c)*37)) // beyond ASCII, beyond one byte of UTF-8
		default:
			b.WriteRune('😀')
		}
	}
	return b.String()
}

func (f *filler) bytes() []byte {
	b := make([]byte, int(f.byte()%7))
	for i := range b {
		b[i] = f.byte()
	}
	return b
}

// maxDepth bounds how deep messages nest (the fixtures recurse).
const maxDepth = 3

// fill sets some of m's fields; a required field always.
func (f *filler) fill(m protoreflect.Message, depth int) {
	md := m.Descriptor()
	if f.wellKnown(m) {
		return
	}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Cardinality() != protoreflect.Required && f.byte()%3 == 0 {
			continue
		}
		if depth >= maxDepth && fd.Message() != nil && fd.Cardinality() != protoreflect.Required {
			continue
		}
		switch {
		case fd.IsList():
			list := m.Mutable(fd).List()
			for range int(f.byte() % 4) {
				if fd.Message() != nil {
					e := list.NewElement()
					f.fill(e.Message(), depth+1)
					list.Append(e)
				} else {
					list.Append(f.scalar(fd))
				}
			}
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for range int(f.byte() % 4) {
				k := f.scalar(fd.MapKey()).MapKey()
				if fd.MapValue().Message() != nil {
					v := mp.NewValue()
					f.fill(v.Message(), depth+1)
					mp.Set(k, v)
				} else {
					mp.Set(k, f.scalar(fd.MapValue()))
				}
			}
		case fd.Message() != nil:
			v := m.NewField(fd)
			f.fill(v.Message(), depth+1)
			m.Set(fd, v)
		default:
			m.Set(fd, f.scalar(fd))
		}
	}
	if md.ExtensionRanges().Len() > 0 {
		f.types.RangeExtensionsByMessage(md.FullName(), func(xt protoreflect.ExtensionType) bool {
			if xd := xt.TypeDescriptor(); f.byte()%2 == 0 && xd.Message() == nil && !xd.IsList() {
				m.Set(xd, f.scalar(xd))
			}
			return true
		})
	}
}

// wellKnown fills the well-known types whose fields must hold something
// sensible for protojson to render them at all, and reports whether m was
// one. Now and then they get an invalid value, which the bridge refuses.
func (f *filler) wellKnown(m protoreflect.Message) bool {
	md := m.Descriptor()
	if md.ParentFile().Package() != "google.protobuf" {
		return false
	}
	set := func(name protoreflect.Name, v protoreflect.Value) { m.Set(md.Fields().ByName(name), v) }
	switch md.Name() {
	case "Timestamp":
		const maxSecs = 253402300799                                               // 9999-12-31T23:59:59Z
		set("seconds", protoreflect.ValueOfInt64(int64(f.uint64()%(maxSecs+2))-1)) // -1: out of range
		set("nanos", protoreflect.ValueOfInt32(nanos(f.byte())))
	case "Duration":
		secs := int64(f.uint64() % 315576000000)
		ns := nanos(f.byte())
		if f.byte()%2 == 0 {
			secs, ns = -secs, -ns
		}
		set("seconds", protoreflect.ValueOfInt64(secs))
		set("nanos", protoreflect.ValueOfInt32(ns))
	case "FieldMask":
		paths := m.Mutable(md.Fields().ByName("paths")).List()
		for range int(f.byte() % 3) {
			paths.Append(protoreflect.ValueOfString([]string{"order_id", "total.amount_minor", "items", "a_b.c_d"}[f.byte()%4]))
		}
	case "Any":
		// An Any of another type of the fixtures, or of a well-known type.
		names := []protoreflect.FullName{"shop.v1.Money", "google.protobuf.Timestamp", "google.protobuf.Value", "google.protobuf.Int64Value", "test.schema.v1.Legacy", "google.protobuf.Any"}
		if c := f.byte(); c%7 != 0 {
			mt, err := f.types.FindMessageByName(names[int(c)%len(names)])
			if err != nil {
				panic(err)
			}
			inner := mt.New()
			f.fill(inner, maxDepth) // no deeper
			raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(inner.Interface())
			if err != nil {
				return true // a required field unset: leave the Any empty
			}
			set("type_url", protoreflect.ValueOfString("type.googleapis.com/"+string(mt.Descriptor().FullName())))
			set("value", protoreflect.ValueOfBytes(raw))
		}
	default:
		return false // Struct, Value, ListValue, wrappers, Empty: their fields will do
	}
	return true
}

// nanos is a nanosecond count with 0, 3, 6 or 9 significant digits.
func nanos(c byte) int32 {
	return []int32{0, 500_000_000, 123_000_000, 1_000, 999_999_999, 7}[int(c)%6]
}

func (f *filler) scalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	u := f.uint64()
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(u%2 == 1)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(u))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(u))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(u))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(u)
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(math.Float32frombits(uint32(u)))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(special(u))
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(f.string())
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes(f.bytes())
	case protoreflect.EnumKind:
		values := fd.Enum().Values()
		if n := int(u % uint64(values.Len()+1)); n < values.Len() {
			return protoreflect.ValueOfEnum(values.Get(n).Number())
		}
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(int32(u>>8) | 1000))
	}
	panic(fmt.Sprintf("no scalar of kind %v", fd.Kind()))
}

// special turns some bit patterns into the floats protojson writes as
// strings, or into small numbers.
func special(u uint64) float64 {
	switch u % 7 {
	case 1:
		return math.NaN()
	case 2:
		return math.Inf(1)
	case 3:
		return math.Inf(-1)
	case 4:
		return float64(int64(u>>3)%1000) / 8
	}
	return math.Float64frombits(u)
}

// renderer renders random events and validates them; validators are
// compiled once per type and options.
type renderer struct {
	types *payload.Registry

	mu         sync.Mutex
	validators map[string]*schematest.Validator
}

func newRenderer(tb testing.TB) *renderer {
	tb.Helper()
	types, _ := fixtureTypes(tb)
	return &renderer{types: types, validators: map[string]*schematest.Validator{}}
}

func (r *renderer) validator(tb testing.TB, md protoreflect.MessageDescriptor, o schema.Options) *schematest.Validator {
	tb.Helper()
	key := fmt.Sprintf("%s/%v/%v", md.FullName(), o.ProtoNames, o.EmitDefaults)
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.validators[key]
	if !ok {
		v = schematest.MustCompile(tb, schema.Message(md, o))
		r.validators[key] = v
	}
	return v
}

// check builds an event from in (its type from the first byte, the options
// from the second), renders it through the bridge's encoder and validates
// the JSON. It reports whether the bridge rendered it (false: the bridge
// refused the event, as it refuses a Timestamp out of range).
func (r *renderer) check(t *testing.T, in []byte) bool {
	t.Helper()
	f := &filler{b: in, types: r.types}
	mt, err := r.types.FindMessageByName(protoreflect.FullName(fuzzTypes[int(f.byte())%len(fuzzTypes)]))
	if err != nil {
		t.Fatal(err)
	}
	opts := f.byte()
	o := schema.Options{ProtoNames: opts&1 != 0, EmitDefaults: opts&2 != 0, Extensions: r.types}
	m := mt.New()
	f.fill(m, 0)
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.Interface())
	if err != nil {
		t.Fatalf("marshal %s: %v", mt.Descriptor().FullName(), err)
	}
	req := &bridgev1.PublishRequest{Stream: "s", Payload: &bridgev1.PublishRequest_Event{Event: &anypb.Any{
		TypeUrl: "type.googleapis.com/" + string(mt.Descriptor().FullName()), Value: raw,
	}}}
	data, _, err := payload.NewEncoder(r.types, o.ProtoNames, o.EmitDefaults).Payload(req)
	if errors.Is(err, payload.ErrInvalid) {
		return false
	}
	if err != nil {
		t.Fatalf("render %s: %v", mt.Descriptor().FullName(), err)
	}
	v := r.validator(t, mt.Descriptor(), o)
	if err := v.Validate(data); err != nil {
		t.Errorf("%s (proto names %v, emit defaults %v) rendered as %s, which its schema refuses: %v",
			mt.Descriptor().FullName(), o.ProtoNames, o.EmitDefaults, data, err)
	}
	// The schema is no blank cheque: a member the type does not declare
	// fails it.
	if extra := append([]byte(`{"notAField":1,`), data[1:]...); len(data) > 2 && v.Validate(extra) == nil {
		t.Errorf("%s with a member it does not declare validates: %s", mt.Descriptor().FullName(), extra)
	}
	return true
}
