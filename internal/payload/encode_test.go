package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
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
	"github.com/sse-bridge/bridge/internal/payload/payloadtest"
)

// compiledInEncoder is an Encoder with the default options that knows only
// the compiled-in types.
func compiledInEncoder(tb testing.TB) *Encoder {
	tb.Helper()
	types, err := NewRegistry(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return NewEncoder(types, false, false)
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
			req: payloadtest.PublishAny(t, &shopv1.OrderCreated{
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
			req:      payloadtest.PublishAny(t, &shopv1.OrderStatusChanged{OrderId: "o-2"}),
			wantName: "shop.v1.OrderStatusChanged",
			wantJSON: `{"orderId":"o-2"}`,
		},
		{name: "duration", req: payloadtest.PublishAny(t, durationpb.New(1500*time.Millisecond)), wantName: "google.protobuf.Duration", wantJSON: `"1.500s"`},
		{name: "wrapper", req: payloadtest.PublishAny(t, wrapperspb.Int64(7)), wantName: "google.protobuf.Int64Value", wantJSON: `"7"`},
		{
			name:     "struct",
			req:      payloadtest.PublishAny(t, &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewNullValue()}})}}),
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
			data, name, err := compiledInEncoder(t).Payload(tc.req)
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
// encoding either fails with a payload error or yields one non-empty line of
// valid JSON; it never panics. (The bridge's FuzzFramesParseBack takes what
// the encoder yields on through every frame format to a browser's parser.)
func FuzzEncode(f *testing.F) {
	valid, _ := proto.Marshal(&shopv1.OrderCreated{OrderId: "o-1", Total: &shopv1.Money{AmountMinor: -5}})
	f.Add("hello\nworld", valid, "type.googleapis.com/shop.v1.OrderCreated")
	f.Add("\x00\xff", []byte{0x0a, 0x80}, "type.googleapis.com/google.protobuf.Timestamp")
	f.Add("", []byte{}, "x/")
	f.Add("\u2028", []byte{0x12, 0x02, 0x08, 0x01}, "type.googleapis.com/test.mixed.v1.Mixed")
	types, err := NewRegistry([]string{payloadtest.WriteSet(f, payloadtest.MixedFile(), payloadtest.PingFile("f"))})
	if err != nil {
		f.Fatal(err)
	}
	enc := NewEncoder(types, false, false)
	f.Fuzz(func(t *testing.T, s string, value []byte, typeURL string) {
		check := func(req *bridgev1.PublishRequest) {
			data, name, err := enc.Payload(req)
			if err != nil {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("payload error %v is not a payload error", err)
				}
				return
			}
			if bytes.ContainsAny(data, "\r\n") || !json.Valid(data) || len(data) == 0 {
				t.Fatalf("data %q: want one non-empty line of valid JSON", data)
			}
			if strings.ContainsAny(name, "\r\n") {
				t.Fatalf("event name %q spans lines", name)
			}
		}
		check(&bridgev1.PublishRequest{Payload: &bridgev1.PublishRequest_Json{Json: structpb.NewStringValue(s)}})
		check(&bridgev1.PublishRequest{Payload: &bridgev1.PublishRequest_Event{Event: &anypb.Any{TypeUrl: typeURL, Value: value}}})
		for _, known := range []string{"shop.v1.OrderCreated", "test.mixed.v1.Mixed", "test.f.v1.Ping"} {
			check(&bridgev1.PublishRequest{Payload: &bridgev1.PublishRequest_Event{Event: &anypb.Any{TypeUrl: "type.googleapis.com/" + known, Value: value}}})
		}
	})
}
