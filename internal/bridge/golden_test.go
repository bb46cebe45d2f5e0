package bridge

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	shopv1 "github.com/sse-bridge/bridge/gen/shop/v1"
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

func TestGoldenJSONMapping(t *testing.T) {
	t.Parallel()
	types, err := NewTypeRegistry([]string{writeSet(t, mixedFile())})
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
		{name: "order_compiled_in", req: mustAny(t, order)},
		{name: "order_unknown_field", req: unknownReq},
		{name: "json_value", req: &bridgev1.PublishRequest{Stream: "s", Payload: &bridgev1.PublishRequest_Json{Json: structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewNumberValue(1), structpb.NewStringValue("x"), structpb.NewNullValue()}})}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data, name, err := newEncoder(types, tc.protoNames, tc.emitDefaults).payload(tc.req)
			if err != nil {
				t.Fatalf("payload = %v", err)
			}
			checkGolden(t, tc.name, map[string]any{"event": name, "data": json.RawMessage(data)})
		})
	}
}

// TestGoldenFormats pins the three frame formats for a typed and a json event.
func TestGoldenFormats(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 25, 10, 0, 0, 123456000, time.UTC)
	events := map[string]*Event{
		"typed": {ID: 1795633221073629, Stream: "orders", Type: "shop.v1.OrderCreated", Data: []byte(`{"orderId":"o-1", "total":{"amountMinor":"1250"}}`), Time: at},
		"json":  {ID: 1795633221073630, Stream: "user.42", Data: []byte(`{"hello":"world"}`), Time: at},
	}
	for name, ev := range events {
		for _, f := range []struct {
			name   string
			format Format
		}{{"data", FormatData}, {"envelope", FormatEnvelope}, {"cloudevents", FormatCloudEvents}} {
			t.Run(name+"_"+f.name, func(t *testing.T) {
				t.Parallel()
				fr := ev.frame(f.format)
				if ev.frame(f.format) != fr {
					t.Errorf("frame(%s) built twice: want one frame per event and format", f.name)
				}
				if bytes.ContainsAny(fr.Data, "\r\n") || bytes.ContainsAny(fr.Event, "\r\n") {
					t.Errorf("frame spans lines: %q", fr.Data)
				}
				checkGolden(t, "format_"+name+"_"+f.name, map[string]any{"id": string(fr.ID), "event": string(fr.Event), "data": json.RawMessage(fr.Data)})
			})
		}
	}
}

// checkGolden compares v, as indented JSON, with testdata/golden/name.json
// semantically; -update rewrites the file.
func checkGolden(t *testing.T, name string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "golden", name+".json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	var gotV, wantV any
	if err := json.Unmarshal(got, &gotV); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &wantV); err != nil {
		t.Fatalf("golden %s: %v", path, err)
	}
	if diff := cmp.Diff(wantV, gotV); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}
