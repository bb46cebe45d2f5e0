// Package payloadtest holds fixtures for tests of event payloads and frames:
// hand-built proto files (no protoc needed), descriptor set files, typed
// Publish requests and golden-file checks. It imports no package of the
// module but the generated code, so any package's tests may use it.
package payloadtest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// PingFile is a small proto file, built by hand so that tests need no
// protoc: package test.<pkg>.v1 with `message Ping { string note = 1;
// int64 n = 2; google.protobuf.Timestamp at = 3; }`.
func PingFile(pkg string) *descriptorpb.FileDescriptorProto {
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

// WriteSet writes a FileDescriptorSet of files to a new file and returns its path.
func WriteSet(tb testing.TB, files ...*descriptorpb.FileDescriptorProto) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "set.binpb")
	WriteSetAt(tb, path, files...)
	return path
}

// WriteSetAt writes a FileDescriptorSet of files to path, replacing what
// it held.
func WriteSetAt(tb testing.TB, path string, files ...*descriptorpb.FileDescriptorProto) {
	tb.Helper()
	raw, err := proto.Marshal(&descriptorpb.FileDescriptorSet{File: files})
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// MixedFile is a hand-built proto file whose message test.mixed.v1.Mixed has
// a field of each kind the JSON contract covers.
func MixedFile() *descriptorpb.FileDescriptorProto {
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

// WrappersFile is google/protobuf/wrappers.proto, built by hand: the bridge
// does not have it compiled in, so a set whose files use the wrappers (as
// MixedFile does) carries it, as `buf build` would.
func WrappersFile() *descriptorpb.FileDescriptorProto {
	fd := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("google/protobuf/wrappers.proto"),
		Package: proto.String("google.protobuf"),
		Syntax:  proto.String("proto3"),
	}
	for _, w := range []struct {
		name string
		typ  descriptorpb.FieldDescriptorProto_Type
	}{
		{"DoubleValue", descriptorpb.FieldDescriptorProto_TYPE_DOUBLE}, {"FloatValue", descriptorpb.FieldDescriptorProto_TYPE_FLOAT},
		{"Int64Value", descriptorpb.FieldDescriptorProto_TYPE_INT64}, {"UInt64Value", descriptorpb.FieldDescriptorProto_TYPE_UINT64},
		{"Int32Value", descriptorpb.FieldDescriptorProto_TYPE_INT32}, {"UInt32Value", descriptorpb.FieldDescriptorProto_TYPE_UINT32},
		{"BoolValue", descriptorpb.FieldDescriptorProto_TYPE_BOOL}, {"StringValue", descriptorpb.FieldDescriptorProto_TYPE_STRING},
		{"BytesValue", descriptorpb.FieldDescriptorProto_TYPE_BYTES},
	} {
		fd.MessageType = append(fd.MessageType, &descriptorpb.DescriptorProto{
			Name: proto.String(w.name),
			Field: []*descriptorpb.FieldDescriptorProto{{
				Name: proto.String("value"), JsonName: proto.String("value"), Number: proto.Int32(1),
				Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: w.typ.Enum(),
			}},
		})
	}
	return fd
}

// PublishAny is a Publish request for stream "s" whose payload is m, as an
// Any.
func PublishAny(tb testing.TB, m proto.Message) *bridgev1.PublishRequest {
	tb.Helper()
	a, err := anypb.New(m)
	if err != nil {
		tb.Fatal(err)
	}
	return &bridgev1.PublishRequest{Stream: "s", Payload: &bridgev1.PublishRequest_Event{Event: a}}
}

// CheckGolden compares v, as indented JSON, with the golden file at path
// semantically (protojson's output is not stable byte for byte); with update
// it writes the file instead.
func CheckGolden(t *testing.T, path string, v any, update bool) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	got = append(got, '\n')
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path) //nolint:gosec // G304: a test's own golden file
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
