package payload

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// A json payload (google.protobuf.Value) is rendered by a direct walk of
// the Value rather than by protojson, which goes through reflection and
// costs about a tenth of a publish's CPU. The output is protojson's, byte
// for byte: keys sorted, numbers and escapes as protojson writes them, and
// the comma it writes (protojson adds a space after commas, or not, by a
// hash of the running binary, to keep callers from relying on its
// whitespace). Whatever the walk does not render itself (a Value with no
// kind, NaN or an infinity, a string that is not UTF-8, a nil message) goes
// to protojson, whose error is the contract.

// valueWriter renders Values as protojson does in this binary.
type valueWriter struct {
	comma string // "," or ", ", as protojson's single-line output has it
	ok    bool   // false: the walk's output differs from protojson's here; use protojson
}

// newValueWriter finds out what protojson writes between elements in this
// binary, and checks the walk against protojson on a probe that exercises
// every kind; should they differ, the walk is not used.
func newValueWriter(opts protojson.MarshalOptions) valueWriter {
	w := valueWriter{comma: ","}
	list, err := opts.Marshal(structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewNullValue(), structpb.NewNullValue()}}))
	if err != nil {
		return w
	}
	if bytes.Contains(list, []byte(", ")) {
		w.comma = ", "
	}
	probe, err := structpb.NewValue(map[string]any{
		"z": []any{1.0, -0.5, 1e21, 1e-7, 123456789.0, 0.0, true, false, nil, "", map[string]any{}, []any{}},
		"a": "quote \" backslash \\ control \x01\x1f\b\f\n\r\t <>&\u2028 é 😀",
		"é": map[string]any{"b": 2.5, "a": -1e-300, "": "x"},
	})
	if err != nil {
		return w
	}
	want, err := opts.Marshal(probe)
	if err != nil {
		return w
	}
	w.ok = true
	got, ok := w.append(nil, probe)
	w.ok = ok && bytes.Equal(got, want)
	return w
}

// scratch holds the buffers render writes in: the data it returns is an
// exact copy, as history keeps it (and counts its capacity) for long.
var scratch = sync.Pool{New: func() any { return new([]byte) }}

// maxScratch bounds the buffers kept in scratch.
const maxScratch = 64 << 10

// render returns v as protojson renders it, in a slice of its own of that
// length; false as for append.
func (w valueWriter) render(v *structpb.Value) ([]byte, bool) {
	bp := scratch.Get().(*[]byte) //nolint:forcetypeassert // the pool holds *[]byte
	b, ok := w.append((*bp)[:0], v)
	var data []byte
	if ok {
		data = bytes.Clone(b)
	}
	if cap(b) <= maxScratch {
		*bp = b
		scratch.Put(bp)
	}
	return data, ok
}

// append appends v as protojson renders it; false when it does not render
// v itself (see above) or is not in use.
func (w valueWriter) append(b []byte, v *structpb.Value) ([]byte, bool) {
	if !w.ok || v == nil {
		return b, false
	}
	switch k := v.GetKind().(type) {
	case *structpb.Value_NullValue:
		return append(b, "null"...), true
	case *structpb.Value_BoolValue:
		return strconv.AppendBool(b, k.BoolValue), true
	case *structpb.Value_NumberValue:
		n := k.NumberValue
		if math.IsNaN(n) || math.IsInf(n, 0) {
			return b, false
		}
		return appendFloat(b, n), true
	case *structpb.Value_StringValue:
		return appendString(b, k.StringValue)
	case *structpb.Value_ListValue:
		if k.ListValue == nil {
			return b, false
		}
		b = append(b, '[')
		for i, e := range k.ListValue.GetValues() {
			if i > 0 {
				b = append(b, w.comma...)
			}
			var ok bool
			if b, ok = w.append(b, e); !ok {
				return b, false
			}
		}
		return append(b, ']'), true
	case *structpb.Value_StructValue:
		return w.appendStruct(b, k.StructValue)
	}
	return b, false
}

// appendStruct appends s with its keys in order, as protojson sorts them.
func (w valueWriter) appendStruct(b []byte, s *structpb.Struct) ([]byte, bool) {
	if s == nil {
		return b, false
	}
	fields := s.GetFields()
	var buf [16]string
	keys := buf[:0]
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, w.comma...)
		}
		var ok bool
		if b, ok = appendString(b, k); !ok {
			return b, false
		}
		b = append(b, ':')
		if b, ok = w.append(b, fields[k]); !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

// appendFloat is protojson's rendering of a finite double: encoding/json's.
func appendFloat(b []byte, n float64) []byte {
	format := byte('f')
	if abs := math.Abs(n); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, n, format, -1, 64)
	if format == 'e' { // e-07 → e-7
		if l := len(b); l >= 4 && b[l-4] == 'e' && b[l-3] == '-' && b[l-2] == '0' {
			b[l-2] = b[l-1]
			b = b[:l-1]
		}
	}
	return b
}

// plain8 reports whether every byte of s, eight of them, is ASCII that a
// JSON string holds as it is: no control character, quote or backslash.
// appendString skips such runs eight bytes at a time, which halves its
// cost on common text (BenchmarkDecodeRequest).
func plain8(s string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	_ = s[7]
	v := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
	quote, backslash := v^(ones*'"'), v^(ones*'\\')
	// A byte below n sets its high bit in (x - ones*n) &^ x, and no high
	// bit is set if none is (true for n <= 0x80; a borrow only reaches
	// the bytes above a byte that is below): a zero byte of quote or
	// backslash is a quote or a backslash. v's own high bits are the
	// bytes beyond ASCII.
	return ((v-ones*' ')&^v|(quote-ones)&^quote|(backslash-ones)&^backslash|v)&highs == 0
}

// appendString is protojson's rendering of a string: only ", \ and control
// characters are escaped (\b \f \n \r \t, else \u00XX); false when s is not
// UTF-8, which protojson refuses.
func appendString(b []byte, s string) ([]byte, bool) {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		for i+8 <= len(s) && plain8(s[i:i+8]) {
			i += 8
		}
		if i == len(s) {
			break
		}
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				return b, false
			}
			i += n
			continue
		}
		if c >= ' ' && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigit[c>>4], hexDigit[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"'), true
}

const hexDigit = "0123456789abcdef"
