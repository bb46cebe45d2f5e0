package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	shopv1 "github.com/sse-bridge/bridge/gen/shop/v1"
)

// compiledInEncoder is an encoder with the default options that knows only
// the compiled-in types.
func compiledInEncoder(tb testing.TB) *encoder {
	tb.Helper()
	types, err := NewTypeRegistry(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return newEncoder(types, false, false)
}

func mustAny(tb testing.TB, m proto.Message) *bridgev1.PublishRequest {
	tb.Helper()
	a, err := anypb.New(m)
	if err != nil {
		tb.Fatal(err)
	}
	return &bridgev1.PublishRequest{Stream: "s", Payload: &bridgev1.PublishRequest_Event{Event: a}}
}

// TestEncodeJSONMapping pins the JSON mapping browsers rely on: field names,
// int64 as strings, enums as names, well-known types, omitted defaults.
func TestEncodeJSONMapping(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		req      *bridgev1.PublishRequest
		wantName string
		wantJSON string
	}{
		{
			name: "order with nested message, enum, int64 and timestamp",
			req: mustAny(t, &shopv1.OrderCreated{
				OrderId:   "o-1",
				Total:     &shopv1.Money{Currency: "EUR", AmountMinor: 9007199254740993}, // 2^53+1: exact only as a string
				Status:    shopv1.OrderStatus_ORDER_STATUS_SHIPPED,
				CreatedAt: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 600_000_000, time.UTC)),
			}),
			wantName: "shop.v1.OrderCreated",
			wantJSON: `{"orderId":"o-1","total":{"currency":"EUR","amountMinor":"9007199254740993"},"status":"ORDER_STATUS_SHIPPED","createdAt":"2026-01-02T03:04:05.600Z"}`,
		},
		{
			name:     "defaults are omitted",
			req:      mustAny(t, &shopv1.OrderStatusChanged{OrderId: "o-2"}),
			wantName: "shop.v1.OrderStatusChanged",
			wantJSON: `{"orderId":"o-2"}`,
		},
		{name: "duration", req: mustAny(t, durationpb.New(1500*time.Millisecond)), wantName: "google.protobuf.Duration", wantJSON: `"1.500s"`},
		{name: "wrapper", req: mustAny(t, wrapperspb.Int64(7)), wantName: "google.protobuf.Int64Value", wantJSON: `"7"`},
		{
			name:     "struct",
			req:      mustAny(t, &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewNullValue()}})}}),
			wantName: "google.protobuf.Struct",
			wantJSON: `{"a":[null]}`,
		},
		{
			name:     "json value",
			req:      &bridgev1.PublishRequest{Stream: "s", Payload: &bridgev1.PublishRequest_Json{Json: structpb.NewStringValue("line1\nline2\r")}},
			wantJSON: `"line1\nline2\r"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data, name, err := compiledInEncoder(t).payload(tc.req)
			if err != nil {
				t.Fatalf("encodePayload = %v", err)
			}
			if name != tc.wantName {
				t.Errorf("event name = %q, want %q", name, tc.wantName)
			}
			if bytes.ContainsAny(data, "\r\n") {
				t.Errorf("data %q spans lines", data)
			}
			var got, want any
			if err := json.Unmarshal(data, &got); err != nil {
				t.Fatalf("data %q: %v", data, err)
			}
			if err := json.Unmarshal([]byte(tc.wantJSON), &want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("data (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzEncode: whatever a publisher sends, compiled-in or loaded type,
// encoding either fails with a payload error or yields one line of valid
// JSON, and so does every frame format built from it; it never panics.
func FuzzEncode(f *testing.F) {
	valid, _ := proto.Marshal(&shopv1.OrderCreated{OrderId: "o-1", Total: &shopv1.Money{AmountMinor: -5}})
	f.Add("hello\nworld", valid, "type.googleapis.com/shop.v1.OrderCreated")
	f.Add("\x00\xff", []byte{0x0a, 0x80}, "type.googleapis.com/google.protobuf.Timestamp")
	f.Add("", []byte{}, "x/")
	f.Add("\u2028", []byte{0x12, 0x02, 0x08, 0x01}, "type.googleapis.com/test.mixed.v1.Mixed")
	types, err := NewTypeRegistry([]string{writeSet(f, mixedFile(), pingFile("f"))})
	if err != nil {
		f.Fatal(err)
	}
	enc := newEncoder(types, false, false)
	f.Fuzz(func(t *testing.T, s string, value []byte, typeURL string) {
		check := func(req *bridgev1.PublishRequest) {
			data, name, err := enc.payload(req)
			if err != nil {
				if !errors.Is(err, errPayload) {
					t.Fatalf("payload error %v is not a payload error", err)
				}
				return
			}
			ev := &Event{ID: 1, Stream: "s", Type: name, Data: data, Time: time.Unix(0, 0)}
			for f := range numFormats {
				fr := ev.frame(f)
				if bytes.ContainsAny(fr.Data, "\r\n") || bytes.ContainsAny(fr.Event, "\r\n") || !json.Valid(fr.Data) || len(fr.Data) == 0 {
					t.Fatalf("format %d: data %q: want one non-empty line of valid JSON", f, fr.Data)
				}
			}
		}
		check(&bridgev1.PublishRequest{Payload: &bridgev1.PublishRequest_Json{Json: structpb.NewStringValue(s)}})
		check(&bridgev1.PublishRequest{Payload: &bridgev1.PublishRequest_Event{Event: &anypb.Any{TypeUrl: typeURL, Value: value}}})
		for _, known := range []string{"shop.v1.OrderCreated", "test.mixed.v1.Mixed", "test.f.v1.Ping"} {
			check(&bridgev1.PublishRequest{Payload: &bridgev1.PublishRequest_Event{Event: &anypb.Any{TypeUrl: "type.googleapis.com/" + known, Value: value}}})
		}
	})
}
