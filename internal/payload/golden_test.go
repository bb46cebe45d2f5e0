package payload

import (
	"encoding/json"
	"flag"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	shopv1 "github.com/sse-bridge/bridge/gen/shop/v1"
	"github.com/sse-bridge/bridge/internal/payload/payloadtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// mixedJSON is a test.mixed.v1.Mixed with every field set, as protojson input.
const mixedJSON = `{
  "orderId": "o-1", "amountMinor": "9007199254740993", "count": 3, "ratio": 0.25, "paid": true,
  "color": "COLOR_RED", "raw": "AAEC/w==", "tags": ["a", "b"],
  "at": "2026-11-25T10:00:00.123Z", "delay": "1.500s",
  "attrs": {"k": [1, "two", null, {"n": true}]},
  "maybeCount": "7", "maybeName": "", "bigUnsigned": "18446744073709551615"
}`

// goldenCase renders one publish; the golden file holds the event name and
// the data, re-indented (protojson's spacing is not stable, its content is).
type goldenCase struct {
	name                     string
	req                      *bridgev1.PublishRequest
	protoNames, emitDefaults bool
}

// TestGoldenJSONMapping pins the JSON of typed and json events, field by
// field, in every mapping option: the contract browsers code against.
func TestGoldenJSONMapping(t *testing.T) {
	t.Parallel()
	types, err := NewRegistry([]string{payloadtest.WriteSet(t, payloadtest.MixedFile())})
	if err != nil {
		t.Fatal(err)
	}
	mixed := func(js string) *bridgev1.PublishRequest {
		mt, err := types.FindMessageByName("test.mixed.v1.Mixed")
		if err != nil {
			t.Fatal(err)
		}
		m := mt.New().Interface()
		if err := protojson.Unmarshal([]byte(js), m); err != nil {
			t.Fatal(err)
		}
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		return &bridgev1.PublishRequest{Stream: "s", Payload: &bridgev1.PublishRequest_Event{Event: a}}
	}
	order := &shopv1.OrderCreated{
		OrderId:   "o-1",
		Customer:  &shopv1.Customer{Id: "c-7", Name: "Ada"},
		Items:     []*shopv1.LineItem{{Sku: "sku-1", Quantity: 2, UnitPrice: &shopv1.Money{Currency: "EUR", AmountMinor: 625}}},
		Total:     &shopv1.Money{Currency: "EUR", AmountMinor: 1250},
		Status:    shopv1.OrderStatus_ORDER_STATUS_PAID,
		CreatedAt: timestamppb.New(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)),
	}
	// A newer publisher's version of OrderCreated with a field (99) this
	// bridge does not know: the field is dropped from the JSON.
	withUnknown, err := proto.Marshal(order)
	if err != nil {
		t.Fatal(err)
	}
	withUnknown = protowire.AppendTag(withUnknown, 99, protowire.BytesType)
	withUnknown = protowire.AppendString(withUnknown, "from the future")
	unknownReq := &bridgev1.PublishRequest{Stream: "s", Payload: &bridgev1.PublishRequest_Event{Event: &anypb.Any{TypeUrl: "type.googleapis.com/shop.v1.OrderCreated", Value: withUnknown}}}

	for _, tc := range []goldenCase{
		{name: "mixed", req: mixed(mixedJSON)},
		{name: "mixed_proto_names", req: mixed(mixedJSON), protoNames: true},
		{name: "mixed_unpopulated", req: mixed(`{"orderId":"o-2"}`)},
		{name: "mixed_unpopulated_emit_defaults", req: mixed(`{"orderId":"o-2"}`), emitDefaults: true},
		{name: "order_compiled_in", req: payloadtest.PublishAny(t, order)},
		{name: "order_unknown_field", req: unknownReq},
		{name: "json_value", req: &bridgev1.PublishRequest{Stream: "s", Payload: &bridgev1.PublishRequest_Json{Json: structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewNumberValue(1), structpb.NewStringValue("x"), structpb.NewNullValue()}})}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data, name, err := NewEncoder(types, tc.protoNames, tc.emitDefaults).Payload(tc.req)
			if err != nil {
				t.Fatalf("payload = %v", err)
			}
			payloadtest.CheckGolden(t, filepath.Join("testdata", "golden", tc.name+".json"), map[string]any{"event": name, "data": json.RawMessage(data)}, *update)
		})
	}
}
