package schema_test

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	// The well-known types the fixtures use that internal/payload does not
	// link: compiled in, as a set built with its imports would carry them.
	_ "google.golang.org/protobuf/types/known/emptypb"
	_ "google.golang.org/protobuf/types/known/fieldmaskpb"
	_ "google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sse-bridge/bridge/internal/payload"
	"github.com/sse-bridge/bridge/internal/payload/payloadtest"
)

// The fixtures: hand-built proto files (no protoc needed) with a field of
// every kind protojson renders in a way of its own, in proto3 and proto2.

type ftype = descriptorpb.FieldDescriptorProto_Type

const (
	tDouble   = descriptorpb.FieldDescriptorProto_TYPE_DOUBLE
	tFloat    = descriptorpb.FieldDescriptorProto_TYPE_FLOAT
	tInt64    = descriptorpb.FieldDescriptorProto_TYPE_INT64
	tUint64   = descriptorpb.FieldDescriptorProto_TYPE_UINT64
	tInt32    = descriptorpb.FieldDescriptorProto_TYPE_INT32
	tFixed64  = descriptorpb.FieldDescriptorProto_TYPE_FIXED64
	tFixed32  = descriptorpb.FieldDescriptorProto_TYPE_FIXED32
	tBool     = descriptorpb.FieldDescriptorProto_TYPE_BOOL
	tString   = descriptorpb.FieldDescriptorProto_TYPE_STRING
	tGroup    = descriptorpb.FieldDescriptorProto_TYPE_GROUP
	tMessage  = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	tBytes    = descriptorpb.FieldDescriptorProto_TYPE_BYTES
	tUint32   = descriptorpb.FieldDescriptorProto_TYPE_UINT32
	tEnum     = descriptorpb.FieldDescriptorProto_TYPE_ENUM
	tSfixed32 = descriptorpb.FieldDescriptorProto_TYPE_SFIXED32
	tSfixed64 = descriptorpb.FieldDescriptorProto_TYPE_SFIXED64
	tSint32   = descriptorpb.FieldDescriptorProto_TYPE_SINT32
	tSint64   = descriptorpb.FieldDescriptorProto_TYPE_SINT64

	optional = descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
	repeated = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
	required = descriptorpb.FieldDescriptorProto_LABEL_REQUIRED
)

func fld(name string, num int32, label descriptorpb.FieldDescriptorProto_Label, typ ftype, typeName string) *descriptorpb.FieldDescriptorProto {
	f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num), Label: label.Enum(), Type: typ.Enum()}
	if typeName != "" {
		f.TypeName = proto.String(typeName)
	}
	return f
}

func mapEntry(name string, key ftype, value ftype, valueType string) *descriptorpb.DescriptorProto {
	return &descriptorpb.DescriptorProto{
		Name:    proto.String(name),
		Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
		Field:   []*descriptorpb.FieldDescriptorProto{fld("key", 1, optional, key, ""), fld("value", 2, optional, value, valueType)},
	}
}

func enumValues(names ...string) []*descriptorpb.EnumValueDescriptorProto {
	var vs []*descriptorpb.EnumValueDescriptorProto
	for i, n := range names {
		vs = append(vs, &descriptorpb.EnumValueDescriptorProto{Name: proto.String(n), Number: proto.Int32(int32(i))})
	}
	return vs
}

const ev = ".test.schema.v1.Everything"

// everythingFile is proto3 test.schema.v1.Everything: every scalar kind,
// an enum with an alias, lists, maps of every key kind, a oneof, a proto3
// optional, recursion, every well-known type, a json_name of its own.
func everythingFile() *descriptorpb.FileDescriptorProto {
	wkt := func(name string, num int32, typ string) *descriptorpb.FieldDescriptorProto {
		return fld(name, num, optional, tMessage, ".google.protobuf."+typ)
	}
	oneof := func(f *descriptorpb.FieldDescriptorProto, index int32) *descriptorpb.FieldDescriptorProto {
		f.OneofIndex = proto.Int32(index)
		return f
	}
	optInt := fld("opt_int32", 31, optional, tInt32, "")
	optInt.Proto3Optional = proto.Bool(true)
	named := fld("json_named", 54, optional, tString, "")
	named.JsonName = proto.String("customName")
	kind := &descriptorpb.EnumDescriptorProto{
		Name:    proto.String("Kind"),
		Value:   append(enumValues("KIND_UNSPECIFIED", "KIND_A", "KIND_B"), &descriptorpb.EnumValueDescriptorProto{Name: proto.String("KIND_ALIAS_OF_A"), Number: proto.Int32(1)}),
		Options: &descriptorpb.EnumOptions{AllowAlias: proto.Bool(true)},
	}
	return &descriptorpb.FileDescriptorProto{
		Name:    proto.String("test/schema/v1/everything.proto"),
		Package: proto.String("test.schema.v1"),
		Syntax:  proto.String("proto3"),
		Dependency: []string{
			"google/protobuf/any.proto", "google/protobuf/timestamp.proto", "google/protobuf/duration.proto",
			"google/protobuf/struct.proto", "google/protobuf/wrappers.proto", "google/protobuf/field_mask.proto",
			"google/protobuf/empty.proto",
		},
		EnumType: []*descriptorpb.EnumDescriptorProto{kind},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Everything"),
			Field: []*descriptorpb.FieldDescriptorProto{
				fld("f_double", 1, optional, tDouble, ""), fld("f_float", 2, optional, tFloat, ""),
				fld("f_int32", 3, optional, tInt32, ""), fld("f_int64", 4, optional, tInt64, ""),
				fld("f_uint32", 5, optional, tUint32, ""), fld("f_uint64", 6, optional, tUint64, ""),
				fld("f_sint32", 7, optional, tSint32, ""), fld("f_sint64", 8, optional, tSint64, ""),
				fld("f_fixed32", 9, optional, tFixed32, ""), fld("f_fixed64", 10, optional, tFixed64, ""),
				fld("f_sfixed32", 11, optional, tSfixed32, ""), fld("f_sfixed64", 12, optional, tSfixed64, ""),
				fld("f_bool", 13, optional, tBool, ""), fld("f_string", 14, optional, tString, ""),
				fld("f_bytes", 15, optional, tBytes, ""),
				fld("kind", 16, optional, tEnum, ".test.schema.v1.Kind"),
				fld("child", 17, optional, tMessage, ev),
				fld("r_int64", 18, repeated, tInt64, ""), fld("r_kind", 19, repeated, tEnum, ".test.schema.v1.Kind"),
				fld("r_child", 20, repeated, tMessage, ev), fld("r_double", 21, repeated, tDouble, ""),
				fld("r_bytes", 22, repeated, tBytes, ""),
				fld("m_str", 23, repeated, tMessage, ev+".MStrEntry"),
				fld("m_int32", 24, repeated, tMessage, ev+".MInt32Entry"),
				fld("m_uint64", 25, repeated, tMessage, ev+".MUint64Entry"),
				fld("m_bool", 26, repeated, tMessage, ev+".MBoolEntry"),
				fld("m_sint64", 27, repeated, tMessage, ev+".MSint64Entry"),
				oneof(fld("c_text", 28, optional, tString, ""), 0),
				oneof(fld("c_child", 29, optional, tMessage, ev), 0),
				oneof(fld("c_kind", 30, optional, tEnum, ".test.schema.v1.Kind"), 0),
				oneof(optInt, 1),
				wkt("any", 32, "Any"), wkt("ts", 33, "Timestamp"), wkt("dur", 34, "Duration"),
				wkt("st", 35, "Struct"), wkt("val", 36, "Value"), wkt("lv", 37, "ListValue"),
				fld("nv", 38, optional, tEnum, ".google.protobuf.NullValue"),
				wkt("fm", 39, "FieldMask"), wkt("empty", 40, "Empty"),
				wkt("w_double", 41, "DoubleValue"), wkt("w_float", 42, "FloatValue"),
				wkt("w_int64", 43, "Int64Value"), wkt("w_uint64", 44, "UInt64Value"),
				wkt("w_int32", 45, "Int32Value"), wkt("w_uint32", 46, "UInt32Value"),
				wkt("w_bool", 47, "BoolValue"), wkt("w_string", 48, "StringValue"),
				wkt("w_bytes", 49, "BytesValue"),
				fld("r_val", 50, repeated, tMessage, ".google.protobuf.Value"),
				fld("m_val", 51, repeated, tMessage, ev+".MValEntry"),
				fld("r_nv", 52, repeated, tEnum, ".google.protobuf.NullValue"),
				fld("r_any", 53, repeated, tMessage, ".google.protobuf.Any"),
				named,
				fld("r_ts", 55, repeated, tMessage, ".google.protobuf.Timestamp"),
				fld("f_float_b", 56, optional, tFloat, ""),
			},
			NestedType: []*descriptorpb.DescriptorProto{
				mapEntry("MStrEntry", tString, tInt64, ""),
				mapEntry("MInt32Entry", tInt32, tEnum, ".test.schema.v1.Kind"),
				mapEntry("MUint64Entry", tUint64, tMessage, ev),
				mapEntry("MBoolEntry", tBool, tString, ""),
				mapEntry("MSint64Entry", tSint64, tBytes, ""),
				mapEntry("MValEntry", tString, tMessage, ".google.protobuf.Value"),
			},
			OneofDecl: []*descriptorpb.OneofDescriptorProto{{Name: proto.String("choice")}, {Name: proto.String("_opt_int32")}},
		}},
	}
}

// legacyFile is proto2 test.schema.v1.Legacy: a required field, optional
// fields with explicit presence, a closed enum, a group, extensions.
func legacyFile() *descriptorpb.FileDescriptorProto {
	ext := func(name string, num int32, typ ftype) *descriptorpb.FieldDescriptorProto {
		f := fld(name, num, optional, typ, "")
		f.Extendee = proto.String(".test.schema.v1.Legacy")
		return f
	}
	return &descriptorpb.FileDescriptorProto{
		Name:     proto.String("test/schema/v1/legacy.proto"),
		Package:  proto.String("test.schema.v1"),
		Syntax:   proto.String("proto2"),
		EnumType: []*descriptorpb.EnumDescriptorProto{{Name: proto.String("Closed"), Value: enumValues("CLOSED_ZERO", "CLOSED_ONE")}},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Legacy"),
			Field: []*descriptorpb.FieldDescriptorProto{
				fld("id", 1, required, tString, ""),
				fld("count", 2, optional, tInt32, ""),
				fld("closed", 3, optional, tEnum, ".test.schema.v1.Closed"),
				fld("r_closed", 4, repeated, tEnum, ".test.schema.v1.Closed"),
				fld("grp", 5, optional, tGroup, ".test.schema.v1.Legacy.Grp"),
				fld("next", 7, optional, tMessage, ".test.schema.v1.Legacy"),
				fld("big", 8, optional, tUint64, ""),
			},
			NestedType: []*descriptorpb.DescriptorProto{{
				Name:  proto.String("Grp"),
				Field: []*descriptorpb.FieldDescriptorProto{fld("note", 6, optional, tString, "")},
			}},
			ExtensionRange: []*descriptorpb.DescriptorProto_ExtensionRange{{Start: proto.Int32(100), End: proto.Int32(201)}},
		}},
		Extension: []*descriptorpb.FieldDescriptorProto{ext("ext_count", 100, tInt32), ext("ext_note", 101, tString)},
	}
}

// acmeSet is the descriptor set of the acme example.
const acmeSet = "../../examples/acme/acme.binpb"

// fixtureTypes is a registry with the fixtures, test.mixed.v1.Mixed and the
// acme example loaded; shop.v1 is compiled in.
func fixtureTypes(tb testing.TB) (*payload.Registry, string) {
	tb.Helper()
	set := payloadtest.WriteSet(tb, everythingFile(), legacyFile(), payloadtest.MixedFile())
	r, err := payload.NewRegistry([]string{set, acmeSet})
	if err != nil {
		tb.Fatal(err)
	}
	return r, set
}

// fuzzTypes are the types the fuzz target renders.
var fuzzTypes = []string{
	"shop.v1.OrderCreated", "shop.v1.OrderStatusChanged", "shop.v1.Money", "shop.v1.LineItem", "shop.v1.Customer",
	"acme.billing.v1.InvoicePaid", "acme.billing.v1.InvoiceVoided", "acme.billing.v1.LineItem",
	"test.mixed.v1.Mixed", "test.schema.v1.Everything", "test.schema.v1.Legacy",
}
