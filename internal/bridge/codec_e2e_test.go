package bridge_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// rawCodec sends a request's bytes as they are and keeps a reply's bytes: a
// client that sends what no protobuf library would. Its name is grpc-go's
// codec's, so the call looks like any other.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b := *v.(*[]byte)
	if len(b) == 0 {
		return nil, nil
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

const publishMethod = "/bridge.v1.BridgeService/Publish"

// invokeRaw calls the unary method with raw as the request's bytes.
func invokeRaw(t *testing.T, b *testBridge, method string, raw []byte) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	var reply []byte
	return b.conn.Invoke(ctx, method, &raw, &reply, grpc.ForceCodecV2(rawCodec{}))
}

// Wire-format building blocks of the requests below.
func field(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

func varintField(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// Requests of every shape a broken or hostile publisher can send, for the
// table test and as the fuzz target's seeds. want is in the status message
// of a refusal; code OK: the request is published.
var rawRequests = func() []struct {
	name string
	raw  []byte
	code codes.Code
	want string
} {
	stream := field(1, []byte("orders"))
	jsonValue := field(4, field(3, []byte("hello"))) // json: "hello"
	valid := cat(stream, jsonValue)
	// A list nested in a list, as deep as protobuf refuses to decode.
	deep := varintField(1, 0) // null_value
	for range protowire.DefaultRecursionLimit/2 + 1 {
		deep = field(6, field(1, deep)) // list_value { values: ... }
	}
	garbageAny, err := proto.Marshal(&bridgev1.PublishRequest{Stream: "orders", Payload: &bridgev1.PublishRequest_Event{
		Event: &anypb.Any{TypeUrl: "type.googleapis.com/shop.v1.OrderCreated", Value: []byte{0xff, 0xff, 0xff}},
	}})
	if err != nil {
		panic(err)
	}
	const whole = "request is not a valid bridge.v1.PublishRequest: "
	return []struct {
		name string
		raw  []byte
		code codes.Code
		want string
	}{
		{"valid", valid, codes.OK, ""},
		{"unknown field", cat(valid, varintField(99, 7)), codes.OK, ""},
		{"empty", nil, codes.InvalidArgument, "stream name is empty"},
		{"stream cut short", append(protowire.AppendTag(nil, 1, protowire.BytesType), 5, 'o', 'r'), codes.InvalidArgument,
			whole + `field "stream" (1) says it holds 5 bytes, and the request has 2 left`},
		{"huge length prefix", append(protowire.AppendTag(nil, 1, protowire.BytesType), 0xff, 0xff, 0xff, 0xff, 0x0f, 'a'), codes.InvalidArgument,
			whole + `field "stream" (1) says it holds 4294967295 bytes, and the request has 1 left`},
		{"length prefix overflows", append(protowire.AppendTag(nil, 1, protowire.BytesType), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), codes.InvalidArgument,
			whole + `field "stream" (1) has a malformed length`},
		{"valid then cut short", valid[:len(valid)-2], codes.InvalidArgument,
			whole + `field "json" (4) says it holds 7 bytes, and the request has 5 left`},
		{"stream not UTF-8", cat(field(1, []byte{0xff, 'a'}), jsonValue), codes.InvalidArgument,
			whole + `field "stream" (1) holds invalid UTF-8: send UTF-8 text`},
		{"type not UTF-8", cat(valid, field(2, []byte{'a', 0xc3})), codes.InvalidArgument,
			whole + `field "type" (2) holds invalid UTF-8: send UTF-8 text`},
		{"stream as a varint", cat(varintField(1, 5), jsonValue), codes.InvalidArgument,
			whole + `field "stream" (1) is a string, but was sent as a varint (wire type 0)`},
		{"json as fixed32", cat(stream, protowire.AppendFixed32(protowire.AppendTag(nil, 4, protowire.Fixed32Type), 1)), codes.InvalidArgument,
			whole + `field "json" (4) is a google.protobuf.Value message, but was sent as 4 fixed bytes (wire type 5)`},
		{"end group alone", cat(valid, protowire.AppendTag(nil, 1, protowire.EndGroupType)), codes.InvalidArgument,
			whole + `field "stream" (1) is a string, but was sent as a group's end (wire type 4)`},
		{"field number zero", cat([]byte{0}, valid), codes.InvalidArgument,
			whole + `byte 0 starts no valid field (invalid field number)`},
		{"tag cut short", cat(valid, []byte{0x80}), codes.InvalidArgument,
			whole + `byte 17 starts no valid field (unexpected EOF)`},
		{"unknown field cut short", cat(valid, protowire.AppendTag(nil, 9, protowire.BytesType), []byte{5, 'a'}), codes.InvalidArgument,
			whole + `field 9, unknown to bridge.v1.PublishRequest, is cut short or malformed (unexpected EOF)`},
		{"any type not UTF-8", cat(stream, field(3, field(1, []byte{0xff, 0xfe}))), codes.InvalidArgument,
			whole + `field "event.type_url" (3.1) holds invalid UTF-8: send UTF-8 text`},
		{"any not a message", cat(stream, field(3, []byte{0xff, 0xff, 0xff})), codes.InvalidArgument,
			whole + `byte 0 of field "event" (3) starts no valid field`},
		{"any holding garbage", garbageAny, codes.InvalidArgument, "not a valid shop.v1.OrderCreated"},
		{"json string not UTF-8", cat(stream, field(4, field(3, []byte{'h', 0xff}))), codes.InvalidArgument,
			whole + `field "json.string_value" (4.3) holds invalid UTF-8: send UTF-8 text`},
		{"json object key not UTF-8", cat(stream, field(4, field(5, field(1, cat(field(1, []byte{0xe2, 0x28}), field(2, varintField(4, 1))))))), codes.InvalidArgument,
			whole + `field "json.struct_value.fields.key" (4.5.1.1) holds invalid UTF-8: send UTF-8 text`},
		{"json nested too deep", cat(stream, field(4, deep)), codes.InvalidArgument,
			whole + `field "json.list_value.values.list_value.…`},
	}
}()

// TestUndecodableRequestsAreInvalidArgument: a request that does not decode,
// whatever is wrong with it, gets INVALID_ARGUMENT saying what, and which
// field, never INTERNAL; on every service of the gRPC port.
func TestUndecodableRequestsAreInvalidArgument(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{})
	for _, tc := range rawRequests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := invokeRaw(t, b, publishMethod, tc.raw)
			if st := status.Convert(err); st.Code() != tc.code || !strings.Contains(st.Message(), tc.want) {
				t.Fatalf("Publish(%x) = %v %q; want %v with %q", tc.raw, st.Code(), st.Message(), tc.code, tc.want)
			}
		})
	}
	t.Run("counted", func(t *testing.T) {
		t.Parallel()
		// A bridge of its own: no other call moves its counters.
		b := startBridge(t, bridge.Config{})
		before := scrape(t, b.baseURL)
		if err := invokeRaw(t, b, publishMethod, []byte{0}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("Publish(00) = %v, want %v", err, codes.InvalidArgument)
		}
		after := scrape(t, b.baseURL)
		for _, name := range []string{
			`bridge_events_published_total{result="invalid"}`,
			`bridge_grpc_server_handled_total{grpc_code="InvalidArgument",grpc_method="/bridge.v1.BridgeService/Publish"}`,
		} {
			if got := after[name] - before[name]; got != 1 {
				t.Errorf("%s went up by %v, want 1", name, got)
			}
		}
	})
	t.Run("health check", func(t *testing.T) {
		t.Parallel()
		err := invokeRaw(t, b, "/grpc.health.v1.Health/Check", field(1, []byte{0xff}))
		want := `request is not a valid grpc.health.v1.HealthCheckRequest: field "service" (1) holds invalid UTF-8: send UTF-8 text`
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != want {
			t.Fatalf("health Check = %v %q; want %v %q", st.Code(), st.Message(), codes.InvalidArgument, want)
		}
		b.checkHealth(t) // and a valid one still works
	})
	t.Run("reflection stream", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
		defer cancel()
		desc := &grpc.StreamDesc{StreamName: "ServerReflectionInfo", ServerStreams: true, ClientStreams: true}
		s, err := b.conn.NewStream(ctx, desc, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", grpc.ForceCodecV2(rawCodec{}))
		if err != nil {
			t.Fatal(err)
		}
		raw := field(3, []byte{0xff}) // file_by_filename
		if err := s.SendMsg(&raw); err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
		var reply []byte
		err = s.RecvMsg(&reply)
		want := `request is not a valid grpc.reflection.v1.ServerReflectionRequest: field "file_by_filename" (3) holds invalid UTF-8: send UTF-8 text`
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != want {
			t.Fatalf("reflection = %v %q; want %v %q", st.Code(), st.Message(), codes.InvalidArgument, want)
		}
		if _, err := b.reflect(t, nil); err != nil { // and a valid one still works
			t.Fatalf("reflection after a bad request: %v", err)
		}
	})
}

// FuzzPublishRawBytes sends any bytes as a Publish request, through a real
// gRPC connection to a real bridge: the answer is never INTERNAL or
// UNKNOWN, and a request protobuf cannot decode gets INVALID_ARGUMENT
// saying so.
func FuzzPublishRawBytes(f *testing.F) {
	for _, tc := range rawRequests {
		f.Add(tc.raw)
	}
	b := startBridge(f, bridge.Config{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		err := invokeRaw(t, b, publishMethod, raw)
		st := status.Convert(err)
		switch st.Code() {
		case codes.Internal, codes.Unknown:
			t.Fatalf("Publish(%x) = %v %q; want no %v and no %v", raw, st.Code(), st.Message(), codes.Internal, codes.Unknown)
		}
		if proto.Unmarshal(raw, &bridgev1.PublishRequest{}) != nil &&
			(st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "request is not a valid bridge.v1.PublishRequest: ")) {
			t.Fatalf("Publish(%x), which does not decode, = %v %q; want %v saying the request is not valid", raw, st.Code(), st.Message(), codes.InvalidArgument)
		}
	})
}

// FuzzPublishBatchAndStream sends any bytes as a PublishBatch request and,
// split in two, as two messages of a PublishStream, through a real gRPC
// connection to a real bridge with small limits: no answer, of the call
// or of any event, is INTERNAL or UNKNOWN, and the stream answers both
// messages (one that does not decode gets its own InvalidArgument) and
// ends OK.
func FuzzPublishBatchAndStream(f *testing.F) {
	for _, tc := range rawRequests {
		f.Add(tc.raw, 1)
		f.Add(append(field(1, tc.raw), field(1, tc.raw)...), len(tc.raw))
	}
	b := startBridge(f, bridge.Config{MaxBatch: 8, MaxStreamInflight: 2, DedupeKeys: 4})
	bad := func(c codes.Code) bool { return c == codes.Internal || c == codes.Unknown }
	f.Fuzz(func(t *testing.T, raw []byte, cut int) {
		ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
		defer cancel()
		var reply []byte
		err := b.conn.Invoke(ctx, bridgev1.BridgeService_PublishBatch_FullMethodName, &raw, &reply, grpc.ForceCodecV2(rawCodec{}))
		if bad(status.Code(err)) {
			t.Fatalf("PublishBatch(%x) = %v", raw, err)
		}
		var res bridgev1.PublishBatchResponse
		if err == nil {
			if err := proto.Unmarshal(reply, &res); err != nil {
				t.Fatalf("PublishBatch(%x) reply does not decode: %v", raw, err)
			}
		}
		for i, r := range res.GetResults() {
			if bad(codes.Code(r.GetStatus().GetCode())) {
				t.Fatalf("PublishBatch(%x) result %d = %v", raw, i, r)
			}
		}

		cut = min(max(cut, 0), len(raw))
		desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
		s, err := b.conn.NewStream(ctx, desc, bridgev1.BridgeService_PublishStream_FullMethodName, grpc.ForceCodecV2(rawCodec{}))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range [][]byte{raw[:cut], raw[cut:]} {
			if s.SendMsg(&m) != nil {
				break
			}
		}
		_ = s.CloseSend()
		n := 0
		for {
			var out []byte
			err := s.RecvMsg(&out)
			if err != nil {
				if !errors.Is(err, io.EOF) || n != 2 {
					t.Fatalf("PublishStream(%x | %x) ended with %v after %d results, want 2 results and OK", raw[:cut], raw[cut:], err, n)
				}
				break
			}
			n++
			var r bridgev1.PublishResult
			if err := proto.Unmarshal(out, &r); err != nil || bad(codes.Code(r.GetStatus().GetCode())) {
				t.Fatalf("PublishStream(%x | %x) result %d = %v (%v)", raw[:cut], raw[cut:], n, &r, err)
			}
		}
	})
}

// TestJSONFramesThroughEveryPublishPath: json payloads published with
// Publish, PublishBatch and PublishStream, in the form every protobuf
// encoder writes (which the bridge renders from the wire) and in forms it
// leaves to protobuf (a Value sent twice, which protobuf merges; a Struct
// with a key twice, where the last wins), reach a subscriber as the data
// protojson renders from what protobuf decodes, byte for byte.
func TestJSONFramesThroughEveryPublishPath(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{})
	sub := subscribe(t, b.baseURL, "stream=json", "")
	var reqs []*bridgev1.PublishRequest
	for _, v := range []any{
		map[string]any{"z": 1.0, "a": []any{nil, true, "é\u2028\"", 1e21, -0.5}, "m": map[string]any{"y": map[string]any{}, "b": []any{}}},
		"plain", 0.0, 1e-7, nil, false, []any{map[string]any{"k": "v"}},
	} {
		reqs = append(reqs, jsonReq(t, "json", v))
	}
	// What a subscriber must get: protojson of what protobuf decodes.
	want := func(raw []byte) string {
		var req bridgev1.PublishRequest
		if err := proto.Unmarshal(raw, &req); err != nil {
			t.Fatal(err)
		}
		data, err := protojson.Marshal(req.GetJson())
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	var raws [][]byte
	for _, r := range reqs {
		raw, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, raw)
	}
	entry := func(k string, v []byte) []byte { return field(1, cat(field(1, []byte(k)), field(2, v))) }
	null, one := varintField(1, 0), varintField(4, 1)
	raws = append(raws,
		cat(field(1, []byte("json")), field(4, field(5, entry("a", null))), field(4, field(5, entry("b", one)))),
		cat(field(1, []byte("json")), field(4, field(5, cat(entry("k", null), entry("k", one))))),
	)

	check := func(path string) {
		t.Helper()
		for i, raw := range raws {
			ev := sub.next(t)
			if w := want(raw); string(ev.Data) != w {
				t.Errorf("%s: event %d: data %s, want %s", path, i, ev.Data, w)
			}
		}
	}
	for _, raw := range raws {
		if err := invokeRaw(t, b, publishMethod, raw); err != nil {
			t.Fatalf("Publish(% x) = %v", raw, err)
		}
	}
	check("Publish")

	var batch []byte
	for _, raw := range raws {
		batch = append(batch, field(1, raw)...)
	}
	if err := invokeRaw(t, b, bridgev1.BridgeService_PublishBatch_FullMethodName, batch); err != nil {
		t.Fatalf("PublishBatch = %v", err)
	}
	check("PublishBatch")

	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	s, err := b.conn.NewStream(ctx, desc, bridgev1.BridgeService_PublishStream_FullMethodName, grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range raws {
		if err := s.SendMsg(&raw); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for range raws {
		var out []byte
		if err := s.RecvMsg(&out); err != nil {
			t.Fatal(err)
		}
		var res bridgev1.PublishResult
		if err := proto.Unmarshal(out, &res); err != nil || res.GetId() == 0 {
			t.Fatalf("PublishStream result %v (%v), want an id", &res, err)
		}
	}
	check("PublishStream")
}
