package schema_test

import (
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/payload"
	"github.com/sse-bridge/bridge/internal/schema"
	"github.com/sse-bridge/bridge/internal/schema/schematest"
)

// allOptions are the four mappings: --json-names camel|proto, with and
// without --emit-defaults.
var allOptions = []schema.Options{{}, {ProtoNames: true}, {EmitDefaults: true}, {ProtoNames: true, EmitDefaults: true}}

// TestEveryTypeHasAValidSchema compiles the schema of every type a bridge
// with the fixtures knows (compiled in and loaded), in every mapping, with
// the meta-schema check of a real validator; and the format schemas.
func TestEveryTypeHasAValidSchema(t *testing.T) {
	t.Parallel()
	types, _ := fixtureTypes(t)
	list, _ := types.Types()
	if len(list) < 50 {
		t.Fatalf("Types() lists %d types, want the compiled-in ones and the fixtures", len(list))
	}
	for _, ti := range list {
		for _, o := range allOptions {
			o.Extensions = types
			doc := schema.Message(ti.Desc, o)
			if _, err := schematest.Compile(doc); err != nil {
				t.Errorf("schema of %s (%+v): %v", ti.Name(), o, err)
			}
			defs, _ := doc["$defs"].(schema.Schema)
			if _, ok := defs[string(ti.Name())]; !ok || doc["$ref"] != "#/$defs/"+string(ti.Name()) {
				t.Errorf("schema of %s: $ref %v, want its own $defs entry", ti.Name(), doc["$ref"])
			}
		}
	}
	mt, err := types.FindMessageByName("shop.v1.OrderCreated")
	if err != nil {
		t.Fatal(err)
	}
	data := schema.Message(mt.Descriptor(), schema.Options{})
	for name, doc := range map[string]schema.Schema{
		"envelope": schema.Envelope(nil), "envelope of OrderCreated": schema.Envelope(data),
		"cloudevents": schema.CloudEvents(nil), "cloudevents of OrderCreated": schema.CloudEvents(data),
		"reset": schema.Reset(),
	} {
		if _, err := schematest.Compile(doc); err != nil {
			t.Errorf("schema of %s: %v", name, err)
		}
	}
}

// TestSchemasAreDeterministic: the same type gives the same JSON, so ETags
// and `bridge types` output are stable.
func TestSchemasAreDeterministic(t *testing.T) {
	t.Parallel()
	types, _ := fixtureTypes(t)
	mt, err := types.FindMessageByName("test.schema.v1.Everything")
	if err != nil {
		t.Fatal(err)
	}
	first, err := json.Marshal(schema.Message(mt.Descriptor(), schema.Options{Extensions: types}))
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		again, _ := json.Marshal(schema.Message(mt.Descriptor(), schema.Options{Extensions: types}))
		if string(again) != string(first) {
			t.Fatalf("schema JSON differs between two calls")
		}
	}
}

// mappingCase is one JSON value and whether the schema of a type in a
// mapping accepts it.
type mappingCase struct {
	name  string
	typ   string
	opts  schema.Options
	json  string
	valid bool
}

var (
	camel    = schema.Options{}
	snake    = schema.Options{ProtoNames: true}
	defaults = schema.Options{EmitDefaults: true}
)

// TestSchemaPinsTheMapping: what each schema accepts and refuses, rule by
// rule of the JSON mapping.
func TestSchemaPinsTheMapping(t *testing.T) {
	t.Parallel()
	types, _ := fixtureTypes(t)
	const E, L = "test.schema.v1.Everything", "test.schema.v1.Legacy"
	cases := []mappingCase{
		{"empty object", E, camel, `{}`, true},
		{"not an object", E, camel, `[]`, false},
		{"lowerCamelCase names", E, camel, `{"fInt32":1,"customName":"x"}`, true},
		{"proto names refused in camel", E, camel, `{"f_int32":1}`, false},
		{"proto names", E, snake, `{"f_int32":1,"json_named":"x"}`, true},
		{"camel names refused in proto", E, snake, `{"fInt32":1}`, false},
		{"unknown member", E, camel, `{"nope":1}`, false},
		{"int64 as string", E, camel, `{"fInt64":"-9223372036854775808","fSint64":"5","fSfixed64":"0"}`, true},
		{"int64 as number", E, camel, `{"fInt64":5}`, false},
		{"int64 leading zero", E, camel, `{"fInt64":"05"}`, false},
		{"uint64 as string", E, camel, `{"fUint64":"18446744073709551615","fFixed64":"1"}`, true},
		{"uint64 negative", E, camel, `{"fUint64":"-1"}`, false},
		{"int32 range", E, camel, `{"fInt32":-2147483648,"fSint32":2147483647,"fSfixed32":0}`, true},
		{"int32 over range", E, camel, `{"fInt32":2147483648}`, false},
		{"int32 as string", E, camel, `{"fInt32":"1"}`, false},
		{"uint32 range", E, camel, `{"fUint32":4294967295,"fFixed32":0}`, true},
		{"uint32 negative", E, camel, `{"fUint32":-1}`, false},
		{"double specials", E, camel, `{"fDouble":"NaN","fFloat":"-Infinity","rDouble":[1.5,"Infinity",-0.25]}`, true},
		{"double other string", E, camel, `{"fDouble":"1.5"}`, false},
		{"bool", E, camel, `{"fBool":true}`, true},
		{"bool as string", E, camel, `{"fBool":"true"}`, false},
		{"bytes base64", E, camel, `{"fBytes":"AAEC/w==","rBytes":["","AA=="]}`, true},
		{"bytes not base64", E, camel, `{"fBytes":"AAEC_w"}`, false},
		{"enum name", E, camel, `{"kind":"KIND_A"}`, true},
		{"enum alias not written", E, camel, `{"kind":"KIND_ALIAS_OF_A"}`, false},
		{"enum unknown number", E, camel, `{"kind":7}`, true},
		{"enum known number not written", E, camel, `{"kind":1}`, false},
		{"enum unknown name", E, camel, `{"kind":"KIND_Z"}`, false},
		{"closed enum unknown number (loaded types keep it)", L, camel, `{"id":"x","closed":9}`, true},
		{"message", E, camel, `{"child":{"child":{"fString":"deep"}}}`, true},
		{"message null refused without emit-defaults", E, camel, `{"child":null}`, false},
		{"repeated", E, camel, `{"rInt64":["1","2"],"rKind":["KIND_B",12],"rChild":[{}]}`, true},
		{"repeated not a list", E, camel, `{"rInt64":"1"}`, false},
		{"map string keys", E, camel, `{"mStr":{"any key":"1"}}`, true},
		{"map int keys", E, camel, `{"mInt32":{"-5":"KIND_A","0":3},"mUint64":{"18446744073709551615":{}},"mSint64":{"-1":"AA=="}}`, true},
		{"map int key not a number", E, camel, `{"mInt32":{"x":"KIND_A"}}`, false},
		{"map uint key negative", E, camel, `{"mUint64":{"-1":{}}}`, false},
		{"map bool keys", E, camel, `{"mBool":{"true":"a","false":"b"}}`, true},
		{"map bool key other", E, camel, `{"mBool":{"yes":"a"}}`, false},
		{"map Value values", E, camel, `{"mVal":{"a":null,"b":[1,{"c":"d"}]}}`, true},
		{"oneof one member", E, camel, `{"cText":"x"}`, true},
		{"oneof two members", E, camel, `{"cText":"x","cKind":"KIND_A"}`, false},
		{"proto3 optional", E, camel, `{"optInt32":0}`, true},
		{"timestamp", E, camel, `{"ts":"2026-11-25T10:00:00.123Z","rTs":["0001-01-01T00:00:00Z","9999-12-31T23:59:59.999999999Z"]}`, true},
		{"timestamp with offset", E, camel, `{"ts":"2026-11-25T10:00:00+01:00"}`, false},
		{"timestamp 2 fraction digits", E, camel, `{"ts":"2026-11-25T10:00:00.12Z"}`, false},
		{"timestamp invalid date", E, camel, `{"ts":"2026-13-45T10:00:00Z"}`, false},
		{"duration", E, camel, `{"dur":"-1.500s"}`, true},
		{"duration without s", E, camel, `{"dur":"1.5"}`, false},
		{"struct", E, camel, `{"st":{"k":[1,"two",null,{"n":true}]}}`, true},
		{"struct not an object", E, camel, `{"st":[1]}`, false},
		{"value any JSON", E, camel, `{"val":null,"rVal":[1,"a",null,[],{}]}`, true},
		{"list value", E, camel, `{"lv":[1,null]}`, true},
		{"list value not a list", E, camel, `{"lv":{}}`, false},
		{"null value", E, camel, `{"nv":null,"rNv":[null]}`, true},
		{"null value not null", E, camel, `{"nv":"NULL_VALUE"}`, false},
		{"field mask", E, camel, `{"fm":"orderId,total.amountMinor"}`, true},
		{"empty", E, camel, `{"empty":{}}`, true},
		{"empty with members", E, camel, `{"empty":{"a":1}}`, false},
		{"wrappers", E, camel, `{"wDouble":"NaN","wFloat":1.5,"wInt64":"-7","wUint64":"7","wInt32":-7,"wUint32":7,"wBool":false,"wString":"","wBytes":"AA=="}`, true},
		{"Int64Value as number", E, camel, `{"wInt64":7}`, false},
		{"BoolValue as object", E, camel, `{"wBool":{"value":true}}`, false},
		{"any", E, camel, `{"any":{"@type":"type.googleapis.com/shop.v1.Money","currency":"EUR"},"rAny":[{"@type":"type.googleapis.com/google.protobuf.Timestamp","value":"2026-11-25T10:00:00Z"},{}]}`, true},
		{"any without @type", E, camel, `{"any":{"currency":"EUR"}}`, false},
		{"emit-defaults: all present", E, defaults, emitDefaultsEverything(), true},
		{"emit-defaults: a field missing", E, defaults, `{"fDouble":0}`, false},
		{"emit-defaults: null message", E, defaults, strings.Replace(emitDefaultsEverything(), `"child":null`, `"child":{}`, 1), false},
		{"proto2 required", L, camel, `{"count":1}`, false},
		{"proto2 group, camel", L, camel, `{"id":"x","grp":{"note":"n"}}`, true},
		{"proto2 group, proto names", L, snake, `{"id":"x","Grp":{"note":"n"}}`, true},
		{"proto2 group lower case in proto names", L, snake, `{"id":"x","grp":{}}`, false},
		{"proto2 optional null with emit-defaults", L, defaults, `{"id":"x","count":null,"closed":null,"rClosed":[],"grp":null,"next":null,"big":null}`, true},
		{"proto2 required never null", L, defaults, `{"id":null,"count":null,"closed":null,"rClosed":[],"grp":null,"next":null,"big":null}`, false},
		{"proto2 optional null without emit-defaults", L, camel, `{"id":"x","count":null}`, false},
		{"extensions", L, camel, `{"id":"x","[test.schema.v1.ext_count]":3,"[test.schema.v1.ext_note]":"n"}`, true},
		{"extension of the wrong kind", L, camel, `{"id":"x","[test.schema.v1.ext_count]":"3"}`, false},
	}
	validators := map[string]*schematest.Validator{}
	for _, tc := range cases {
		o := tc.opts
		o.Extensions = types
		key := tc.typ + "/" + optionsName(o)
		v := validators[key]
		if v == nil {
			mt, err := types.FindMessageByName(protoreflect.FullName(tc.typ))
			if err != nil {
				t.Fatal(err)
			}
			v = schematest.MustCompile(t, schema.Message(mt.Descriptor(), o))
			validators[key] = v
		}
		err := v.Validate([]byte(tc.json))
		if (err == nil) != tc.valid {
			t.Errorf("%s: %s valid = %v, want %v (%v)", tc.name, tc.json, err == nil, tc.valid, err)
		}
	}
}

func optionsName(o schema.Options) string {
	s := "camel"
	if o.ProtoNames {
		s = "proto"
	}
	if o.EmitDefaults {
		s += "+defaults"
	}
	return s
}

// emitDefaultsEverything is test.schema.v1.Everything with nothing set, as
// the bridge renders it with --emit-defaults (checked below).
func emitDefaultsEverything() string {
	return `{"fDouble":0,"fFloat":0,"fInt32":0,"fInt64":"0","fUint32":0,"fUint64":"0","fSint32":0,"fSint64":"0",
	"fFixed32":0,"fFixed64":"0","fSfixed32":0,"fSfixed64":"0","fBool":false,"fString":"","fBytes":"","kind":"KIND_UNSPECIFIED",
	"child":null,"rInt64":[],"rKind":[],"rChild":[],"rDouble":[],"rBytes":[],"mStr":{},"mInt32":{},"mUint64":{},"mBool":{},"mSint64":{},
	"any":null,"ts":null,"dur":null,"st":null,"val":null,"lv":null,"nv":null,"fm":null,"empty":null,
	"wDouble":null,"wFloat":null,"wInt64":null,"wUint64":null,"wInt32":null,"wUint32":null,"wBool":null,"wString":null,"wBytes":null,
	"rVal":[],"mVal":{},"rNv":[],"rAny":[],"customName":"","rTs":[],"fFloatB":0}`
}

// TestEmitDefaultsFixtureIsWhatTheBridgeWrites keeps emitDefaultsEverything
// honest: it is the encoder's rendering of an empty Everything.
func TestEmitDefaultsFixtureIsWhatTheBridgeWrites(t *testing.T) {
	t.Parallel()
	types, _ := fixtureTypes(t)
	data := render(t, types, "test.schema.v1.Everything", `{}`, defaults)
	var got, want any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(emitDefaultsEverything()), &want); err != nil {
		t.Fatal(err)
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("the bridge renders an empty Everything with --emit-defaults as\n%s\nthe fixture says\n%s", g, w)
	}
}

// render renders the event of type typ given as protojson input through the
// bridge's encoder with the options o.
func render(t *testing.T, types *payload.Registry, typ, input string, o schema.Options) []byte {
	t.Helper()
	mt, err := types.FindMessageByName(protoreflect.FullName(typ))
	if err != nil {
		t.Fatal(err)
	}
	m := mt.New().Interface()
	if err := (protojson.UnmarshalOptions{Resolver: types}).Unmarshal([]byte(input), m); err != nil {
		t.Fatalf("%s: %v", input, err)
	}
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	data, _, err := payload.NewEncoder(types, o.ProtoNames, o.EmitDefaults).Payload(&bridgev1.PublishRequest{Stream: "s", Payload: &bridgev1.PublishRequest_Event{Event: a}})
	if err != nil {
		t.Fatalf("render %s: %v", input, err)
	}
	return data
}

// TestRenderedFixturesValidate renders full events of every fixture type in
// every mapping and validates them.
func TestRenderedFixturesValidate(t *testing.T) {
	t.Parallel()
	types, _ := fixtureTypes(t)
	events := map[string]string{
		"test.schema.v1.Everything": `{"fDouble":"NaN","fFloat":1.5,"fInt32":-3,"fInt64":"-9007199254740993","fUint32":4294967295,
			"fUint64":"18446744073709551615","fBytes":"AAEC/w==","kind":"KIND_A","child":{"kind":5,"child":{}},
			"rKind":["KIND_B",9],"mInt32":{"-1":"KIND_A"},"mUint64":{"3":{"fBool":true}},"mBool":{"true":"t"},"cChild":{"cText":"x"},
			"optInt32":0,"any":{"@type":"type.googleapis.com/google.protobuf.Duration","value":"1s"},
			"ts":"2026-11-25T10:00:00.000001Z","dur":"-0.000000001s","st":{"a":{"b":[true,null]}},"val":null,"lv":[1,"x"],
			"fm":"a.bC,d","empty":{},"wDouble":"-Infinity","wInt64":"0","wBytes":"","rAny":[{"@type":"type.googleapis.com/shop.v1.Money","amountMinor":"5"}],
			"customName":"named","mVal":{"k":{"x":1}}}`,
		"test.schema.v1.Legacy": `{"id":"x","count":0,"closed":"CLOSED_ONE","grp":{"note":"n"},"next":{"id":"y"},"[test.schema.v1.ext_count]":3}`,
		"test.mixed.v1.Mixed":   `{"orderId":"o-1","amountMinor":"9007199254740993","ratio":0.25,"color":"COLOR_RED","attrs":{"k":[1]},"maybeCount":"7","maybeName":""}`,
		"acme.billing.v1.InvoicePaid": `{"invoiceId":"inv-1","amount":{"currency":"EUR","amountMinor":"1250"},"paymentMethod":"PAYMENT_METHOD_CARD",
			"lineItems":[{"description":"Pro","quantity":1}],"paidAt":"2026-11-25T10:00:00Z","settlementDelay":"86400s"}`,
		"shop.v1.OrderCreated": `{"orderId":"o-1","items":[{"sku":"s","unitPrice":{"amountMinor":"1"}}],"status":"ORDER_STATUS_PAID"}`,
	}
	for typ, input := range events {
		mt, err := types.FindMessageByName(protoreflect.FullName(typ))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range allOptions {
			o.Extensions = types
			data := render(t, types, typ, input, o)
			v := schematest.MustCompile(t, schema.Message(mt.Descriptor(), o))
			v.Check(t, typ+" "+optionsName(o), data)
			for _, wrapped := range []struct {
				name string
				doc  schema.Schema
				json string
			}{
				{"envelope", schema.Envelope(schema.Message(mt.Descriptor(), o)), `{"id":"17","stream":"orders.eu","type":"` + typ + `","time":"2026-11-25T10:00:00.1Z","data":` + string(data) + `}`},
				{"cloudevents", schema.CloudEvents(schema.Message(mt.Descriptor(), o)), `{"specversion":"1.0","id":"17","source":"/sse-bridge","type":"` + typ + `","subject":"orders","time":"2026-11-25T10:00:00Z","datacontenttype":"application/json","dataschema":"https://events.acme.example/types/` + typ + `","data":` + string(data) + `}`},
			} {
				schematest.MustCompile(t, wrapped.doc).Check(t, typ+" "+wrapped.name+" "+optionsName(o), []byte(wrapped.json))
			}
		}
	}
}

// TestFormatSchemas: what the envelope, cloudevents and reset schemas
// accept and refuse.
func TestFormatSchemas(t *testing.T) {
	t.Parallel()
	types, _ := fixtureTypes(t)
	mt, err := types.FindMessageByName("shop.v1.Money")
	if err != nil {
		t.Fatal(err)
	}
	money := schema.Message(mt.Descriptor(), schema.Options{})
	for _, tc := range []struct {
		name  string
		doc   schema.Schema
		json  string
		valid bool
	}{
		{"envelope json event", schema.Envelope(nil), `{"id":"1","stream":"user.42","time":"2026-11-25T10:00:00.123456Z","data":[1,"x",null]}`, true},
		{"envelope typed", schema.Envelope(money), `{"id":"1","stream":"s","type":"shop.v1.Money","time":"2026-11-25T10:00:00Z","data":{"amountMinor":"5"}}`, true},
		{"envelope typed, data of another type", schema.Envelope(money), `{"id":"1","stream":"s","time":"2026-11-25T10:00:00Z","data":{"orderId":"5"}}`, false},
		{"envelope id as number", schema.Envelope(nil), `{"id":1,"stream":"s","time":"2026-11-25T10:00:00Z","data":1}`, false},
		{"envelope without data", schema.Envelope(nil), `{"id":"1","stream":"s","time":"2026-11-25T10:00:00Z"}`, false},
		{"envelope bad stream", schema.Envelope(nil), `{"id":"1","stream":"a..b","time":"2026-11-25T10:00:00Z","data":1}`, false},
		{"envelope empty type", schema.Envelope(nil), `{"id":"1","stream":"s","type":"","time":"2026-11-25T10:00:00Z","data":1}`, false},
		{"envelope time with trailing zero", schema.Envelope(nil), `{"id":"1","stream":"s","time":"2026-11-25T10:00:00.10Z","data":1}`, false},
		{"envelope extra member", schema.Envelope(nil), `{"id":"1","stream":"s","time":"2026-11-25T10:00:00Z","data":1,"x":1}`, false},
		{"cloudevents json event", schema.CloudEvents(nil), `{"specversion":"1.0","id":"1","source":"/sse-bridge","type":"bridge.json","subject":"s","time":"2026-11-25T10:00:00Z","datacontenttype":"application/json","data":{"hello":"world"}}`, true},
		{"cloudevents other specversion", schema.CloudEvents(nil), `{"specversion":"0.3","id":"1","source":"/sse-bridge","type":"bridge.json","subject":"s","time":"2026-11-25T10:00:00Z","datacontenttype":"application/json","data":1}`, false},
		{"cloudevents without subject", schema.CloudEvents(nil), `{"specversion":"1.0","id":"1","source":"/sse-bridge","type":"bridge.json","time":"2026-11-25T10:00:00Z","datacontenttype":"application/json","data":1}`, false},
		{"cloudevents typed", schema.CloudEvents(money), `{"specversion":"1.0","id":"1","source":"https://bridge.example/","type":"money","subject":"s","time":"2026-11-25T10:00:00Z","datacontenttype":"application/json","data":{"currency":"EUR"}}`, true},
		{"cloudevents typed, wrong data", schema.CloudEvents(money), `{"specversion":"1.0","id":"1","source":"/x","type":"money","subject":"s","time":"2026-11-25T10:00:00Z","datacontenttype":"application/json","data":{"currency":1}}`, false},
		{"cloudevents with dataschema", schema.CloudEvents(money), `{"specversion":"1.0","id":"1","source":"/x","type":"shop.v1.Money","subject":"s","time":"2026-11-25T10:00:00Z","datacontenttype":"application/json","dataschema":"https://events.acme.example/types/shop.v1.Money","data":{}}`, true},
		{"cloudevents relative dataschema", schema.CloudEvents(money), `{"specversion":"1.0","id":"1","source":"/x","type":"shop.v1.Money","subject":"s","time":"2026-11-25T10:00:00Z","datacontenttype":"application/json","dataschema":"/types/shop.v1.Money","data":{}}`, false},
		{"reset", schema.Reset(), `{"reason":"history_trimmed","lastEventId":"1795633221073629"}`, true},
		{"reset unknown reason", schema.Reset(), `{"reason":"bored","lastEventId":"1"}`, false},
		{"reset without id", schema.Reset(), `{"reason":"unknown_id"}`, false},
	} {
		err := schematest.MustCompile(t, tc.doc).Validate([]byte(tc.json))
		if (err == nil) != tc.valid {
			t.Errorf("%s: %s valid = %v, want %v (%v)", tc.name, tc.json, err == nil, tc.valid, err)
		}
	}
}

// TestDescriptionsComeFromComments: a descriptor set that kept its comments
// (the acme example's) gives descriptions, without the space after //.
func TestDescriptionsComeFromComments(t *testing.T) {
	t.Parallel()
	types, _ := fixtureTypes(t)
	mt, err := types.FindMessageByName("acme.billing.v1.InvoiceVoided")
	if err != nil {
		t.Fatal(err)
	}
	defs, _ := schema.Message(mt.Descriptor(), schema.Options{})["$defs"].(schema.Schema)
	def, _ := defs["acme.billing.v1.InvoiceVoided"].(schema.Schema)
	want := "InvoiceVoided is published when an invoice is cancelled before it was paid;\na voided invoice can no longer be paid."
	if def["description"] != want {
		t.Errorf("description = %q, want %q", def["description"], want)
	}
	props, _ := def["properties"].(schema.Schema)
	if f, _ := props["invoiceId"].(schema.Schema); f["description"] != "The invoice's id." {
		t.Errorf("description of invoiceId = %q", f["description"])
	}
}
