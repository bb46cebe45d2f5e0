package bridge

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	shopv1 "github.com/sse-bridge/bridge/gen/shop/v1"
)

// pingFile is a small proto file, built by hand so that tests need no
// protoc: package test.<pkg>.v1 with `message Ping { string note = 1;
// int64 n = 2; google.protobuf.Timestamp at = 3; }`.
func pingFile(pkg string) *descriptorpb.FileDescriptorProto {
	return &descriptorpb.FileDescriptorProto{
		Name:       proto.String("test/" + pkg + "/v1/ping.proto"),
		Package:    proto.String("test." + pkg + ".v1"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/protobuf/timestamp.proto"},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Ping"),
			Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("note"), JsonName: proto.String("note"), Number: proto.Int32(1), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()},
				{Name: proto.String("n"), JsonName: proto.String("n"), Number: proto.Int32(2), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_INT64.Enum()},
				{Name: proto.String("at"), JsonName: proto.String("at"), Number: proto.Int32(3), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(), TypeName: proto.String(".google.protobuf.Timestamp")},
			},
		}},
	}
}

// writeSet writes a FileDescriptorSet of files to a new file and returns its path.
func writeSet(tb testing.TB, files ...*descriptorpb.FileDescriptorProto) string {
	tb.Helper()
	raw, err := proto.Marshal(&descriptorpb.FileDescriptorSet{File: files})
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "set.binpb")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

func TestTypeRegistryLoads(t *testing.T) {
	t.Parallel()
	r, err := NewTypeRegistry([]string{writeSet(t, pingFile("a")), writeSet(t, pingFile("b"), pingFile("a"))})
	if err != nil {
		t.Fatalf("NewTypeRegistry = %v", err)
	}
	for _, name := range []string{"test.a.v1.Ping", "test.b.v1.Ping", "shop.v1.OrderCreated", "google.protobuf.Timestamp"} {
		if _, err := r.FindMessageByURL("type.googleapis.com/" + name); err != nil {
			t.Errorf("FindMessageByURL(%s) = %v", name, err)
		}
		if _, err := r.FindDescriptorByName("test.a.v1.Ping"); err != nil {
			t.Errorf("FindDescriptorByName = %v", err)
		}
	}
	if r.Count() != 2 {
		t.Errorf("Count() = %d, want 2", r.Count())
	}
}

func TestTypeRegistryRefusesBadSets(t *testing.T) {
	t.Parallel()
	changed := pingFile("a")
	changed.MessageType[0].Field[0].Name = proto.String("text")
	missingImport := pingFile("c")
	missingImport.Dependency = append(missingImport.Dependency, "acme/missing.proto")
	compiledIn := protodesc.ToFileDescriptorProto(shopv1.File_shop_v1_order_proto)
	compiledIn.Name = proto.String("elsewhere/order.proto")
	garbage := filepath.Join(t.TempDir(), "garbage.binpb")
	if err := os.WriteFile(garbage, []byte("not a descriptor set \xff\xff"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		paths []string
		want  []string // all in the error
	}{
		{"missing file", []string{filepath.Join(t.TempDir(), "none.binpb")}, []string{"none.binpb"}},
		{"not a set", []string{garbage}, []string{"garbage.binpb", "not a FileDescriptorSet"}},
		{"empty set", []string{writeSet(t)}, []string{"holds no files"}},
		{"conflicting versions", []string{writeSet(t, pingFile("a")), writeSet(t, changed)}, []string{"test/a/v1/ping.proto", "differently"}},
		{"missing import", []string{writeSet(t, missingImport)}, []string{"acme/missing.proto", "--include_imports", "test/c/v1/ping.proto"}},
		{"clash with compiled-in type", []string{writeSet(t, compiledIn)}, []string{"shop.v1.", "elsewhere/order.proto", "compiled into the bridge"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewTypeRegistry(tc.paths)
			if err == nil {
				t.Fatalf("NewTypeRegistry(%v) = nil, want an error", tc.paths)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("NewTypeRegistry error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestTypeRegistryReloadKeepsOldTypesOnError(t *testing.T) {
	t.Parallel()
	path := writeSet(t, pingFile("a"))
	r, err := NewTypeRegistry([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := proto.Marshal(&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{pingFile("a"), pingFile("b")}})
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatalf("Reload = %v", err)
	}
	if _, err := r.FindMessageByName("test.b.v1.Ping"); err != nil {
		t.Errorf("after reload: %v", err)
	}
	if err := os.WriteFile(path, []byte("broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil {
		t.Fatalf("Reload of a broken set = nil, want an error")
	}
	for _, name := range []string{"test.a.v1.Ping", "test.b.v1.Ping"} {
		if _, err := r.FindMessageByName(protoreflect.FullName(name)); err != nil {
			t.Errorf("after a failed reload, %s: %v (want the old types kept)", name, err)
		}
	}
}

// mixedFile is a hand-built proto file whose message test.mixed.v1.Mixed has
// a field of each kind the JSON contract covers.
func mixedFile() *descriptorpb.FileDescriptorProto {
	field := func(name string, num int32, typ descriptorpb.FieldDescriptorProto_Type, typeName string, repeated bool) *descriptorpb.FieldDescriptorProto {
		label := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
		if repeated {
			label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
		}
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num), Label: label.Enum(), Type: typ.Enum()}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	msg := descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	return &descriptorpb.FileDescriptorProto{
		Name:    proto.String("test/mixed/v1/mixed.proto"),
		Package: proto.String("test.mixed.v1"),
		Syntax:  proto.String("proto3"),
		Dependency: []string{
			"google/protobuf/timestamp.proto", "google/protobuf/duration.proto",
			"google/protobuf/struct.proto", "google/protobuf/wrappers.proto",
		},
		EnumType: []*descriptorpb.EnumDescriptorProto{{
			Name: proto.String("Color"),
			Value: []*descriptorpb.EnumValueDescriptorProto{
				{Name: proto.String("COLOR_UNSPECIFIED"), Number: proto.Int32(0)},
				{Name: proto.String("COLOR_RED"), Number: proto.Int32(1)},
			},
		}},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Mixed"),
			Field: []*descriptorpb.FieldDescriptorProto{
				field("order_id", 1, descriptorpb.FieldDescriptorProto_TYPE_STRING, "", false),
				field("amount_minor", 2, descriptorpb.FieldDescriptorProto_TYPE_INT64, "", false),
				field("count", 3, descriptorpb.FieldDescriptorProto_TYPE_INT32, "", false),
				field("ratio", 4, descriptorpb.FieldDescriptorProto_TYPE_DOUBLE, "", false),
				field("paid", 5, descriptorpb.FieldDescriptorProto_TYPE_BOOL, "", false),
				field("color", 6, descriptorpb.FieldDescriptorProto_TYPE_ENUM, ".test.mixed.v1.Color", false),
				field("raw", 7, descriptorpb.FieldDescriptorProto_TYPE_BYTES, "", false),
				field("tags", 8, descriptorpb.FieldDescriptorProto_TYPE_STRING, "", true),
				field("at", 9, msg, ".google.protobuf.Timestamp", false),
				field("delay", 10, msg, ".google.protobuf.Duration", false),
				field("attrs", 11, msg, ".google.protobuf.Struct", false),
				field("maybe_count", 12, msg, ".google.protobuf.Int64Value", false),
				field("maybe_name", 13, msg, ".google.protobuf.StringValue", false),
				field("big_unsigned", 14, descriptorpb.FieldDescriptorProto_TYPE_UINT64, "", false),
			},
		}},
	}
}
