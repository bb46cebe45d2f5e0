package payload

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// TestValueWriterIsProtojson: json payloads render to protojson's bytes,
// whatever they hold, and the walk is in use (its probe agreed with
// protojson in this binary). What it leaves to protojson gets protojson's
// error.
func TestValueWriterIsProtojson(t *testing.T) {
	t.Parallel()
	for _, opts := range []struct{ protoNames, emitDefaults bool }{{false, false}, {true, true}} {
		enc := NewEncoder(nil, opts.protoNames, opts.emitDefaults)
		if !enc.value.ok {
			t.Fatal("the direct walk is not in use: its probe differs from protojson")
		}
		for _, v := range valueCases(t) {
			want, wantErr := enc.opts.Marshal(v)
			got, err := enc.json(v)
			if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
				t.Errorf("json(%v) = %s, %v; protojson gives %s, %v", v, got, err, want, wantErr)
			}
		}
	}
}

func valueCases(t *testing.T) []*structpb.Value {
	t.Helper()
	var vs []*structpb.Value
	for _, x := range []any{
		nil, true, false, 0.0, math.Copysign(0, -1), 1.0, -1.5, 1e20, 1e21, 1.5e300, 1e-6, 9.99e-7, 5e-324, 123456789012345680.0, 0.1,
		"", "plain", "\"\\/\b\f\n\r\t\x00\x1f\x7f", "<script>&amp;</script>", "\u2028\u2029 é 日本 😀",
		[]any{}, map[string]any{}, []any{nil, 1.0, "a", []any{[]any{}}},
		map[string]any{"b": 1.0, "a": map[string]any{"z": nil, "y": []any{true}}, "": "empty", "é": 2.0, "B": 3.0, "a\"b": 4.0},
	} {
		v, err := structpb.NewValue(x)
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	many := map[string]any{}
	for i := range 40 {
		many[strings.Repeat("k", i%7)+string(rune('a'+i%26))+string(rune('0'+i/26))] = float64(i)
	}
	v, err := structpb.NewValue(many)
	if err != nil {
		t.Fatal(err)
	}
	vs = append(vs, v)
	// Those protojson refuses, or renders from a nil message.
	vs = append(vs,
		structpb.NewNumberValue(math.NaN()), structpb.NewNumberValue(math.Inf(-1)),
		structpb.NewStringValue("bad \xff utf-8"),
		structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{{}}}),
		structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{nil}}),
		structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"\xfe": structpb.NewNullValue()}}),
		structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"k": {}}}),
		structpb.NewStructValue(nil), structpb.NewListValue(nil),
		&structpb.Value{Kind: &structpb.Value_StructValue{}},
	)
	return vs
}

// FuzzValueWriter: a string anywhere in a Value renders as protojson
// renders it.
func FuzzValueWriter(f *testing.F) {
	f.Add("hello", "key", 1.5)
	f.Add("\x00\xff\"\\", "\u2028", math.Inf(1))
	f.Add("", "", math.Copysign(0, -1))
	enc := NewEncoder(nil, false, false)
	f.Fuzz(func(t *testing.T, s, key string, n float64) {
		v := structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			key: structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue(s), structpb.NewNumberValue(n)}}),
			s:   structpb.NewNumberValue(n),
		}})
		want, wantErr := enc.opts.Marshal(v)
		got, err := enc.json(v)
		if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("json(%v) = %s, %v; protojson gives %s, %v", v, got, err, want, wantErr)
		}
	})
}

// BenchmarkJSONPayload: a json payload like bridge-load's, by the walk and
// by protojson.
func BenchmarkJSONPayload(b *testing.B) {
	v, err := structpb.NewValue(map[string]any{"seq": "41", "t": "1795000000000000000", "x": strings.Repeat("x", 80)})
	if err != nil {
		b.Fatal(err)
	}
	enc := NewEncoder(nil, false, false)
	req := &bridgev1.PublishRequest{Payload: &bridgev1.PublishRequest_Json{Json: v}}
	b.Run("walk", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := enc.Payload(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("protojson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := (protojson.MarshalOptions{}).Marshal(v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestPlain8: plain8 agrees with the byte-at-a-time test for every byte at
// every position, next to plain bytes and to bytes that stop it.
func TestPlain8(t *testing.T) {
	t.Parallel()
	plain := func(c byte) bool { return c >= ' ' && c < utf8.RuneSelf && c != '"' && c != '\\' }
	for _, fill := range []byte{'a', ' ', '~', '"', 0x00, 0x1f, 0x80, 0xff} {
		for c := range 256 {
			for pos := range 8 {
				s := []byte(strings.Repeat(string(rune(fill)), 8))
				if fill >= utf8.RuneSelf {
					s = bytes.Repeat([]byte{fill}, 8)
				}
				s[pos] = byte(c)
				want := true
				for _, b := range s {
					want = want && plain(b)
				}
				if got := plain8(string(s)); got != want {
					t.Fatalf("plain8(% x) = %v, want %v", s, got, want)
				}
			}
		}
	}
}
