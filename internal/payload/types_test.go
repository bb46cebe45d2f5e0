package payload

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
	"github.com/sse-bridge/bridge/internal/payload/payloadtest"
)

func TestTypeRegistryLoads(t *testing.T) {
	t.Parallel()
	r, err := NewRegistry([]string{payloadtest.WriteSet(t, payloadtest.PingFile("a")), payloadtest.WriteSet(t, payloadtest.PingFile("b"), payloadtest.PingFile("a"))})
	if err != nil {
		t.Fatalf("NewRegistry = %v", err)
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
	changed := payloadtest.PingFile("a")
	changed.MessageType[0].Field[0].Name = proto.String("text")
	missingImport := payloadtest.PingFile("c")
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
		{"empty set", []string{payloadtest.WriteSet(t)}, []string{"holds no files"}},
		{"conflicting versions", []string{payloadtest.WriteSet(t, payloadtest.PingFile("a")), payloadtest.WriteSet(t, changed)}, []string{"test/a/v1/ping.proto", "differently"}},
		{"missing import", []string{payloadtest.WriteSet(t, missingImport)}, []string{"acme/missing.proto", "--include_imports", "test/c/v1/ping.proto"}},
		{"clash with compiled-in type", []string{payloadtest.WriteSet(t, compiledIn)}, []string{"shop.v1.", "elsewhere/order.proto", "compiled into the bridge"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewRegistry(tc.paths)
			if err == nil {
				t.Fatalf("NewRegistry(%v) = nil, want an error", tc.paths)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("NewRegistry error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestTypeRegistryReloadKeepsOldTypesOnError(t *testing.T) {
	t.Parallel()
	path := payloadtest.WriteSet(t, payloadtest.PingFile("a"))
	r, err := NewRegistry([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := proto.Marshal(&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{payloadtest.PingFile("a"), payloadtest.PingFile("b")}})
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

// TestRegistryRefusesAChangedCompiledInFile: a set may carry a copy of a
// file the bridge has compiled in (a set built with its imports does); the
// same file is skipped, but a changed copy would be ignored without a word,
// so it is an error that names the file and what to do.
func TestRegistryRefusesAChangedCompiledInFile(t *testing.T) {
	t.Parallel()
	compiled := protodesc.ToFileDescriptorProto(shopv1.File_shop_v1_order_proto)
	deps := func() []*descriptorpb.FileDescriptorProto {
		var out []*descriptorpb.FileDescriptorProto
		for i := range shopv1.File_shop_v1_order_proto.Imports().Len() {
			out = append(out, protodesc.ToFileDescriptorProto(shopv1.File_shop_v1_order_proto.Imports().Get(i).FileDescriptor))
		}
		return out
	}
	withNew := proto.Clone(compiled).(*descriptorpb.FileDescriptorProto)
	withNew.MessageType = append(withNew.MessageType, &descriptorpb.DescriptorProto{Name: proto.String("ShopNew")})
	renamed := proto.Clone(compiled).(*descriptorpb.FileDescriptorProto)
	renamed.MessageType[0].Field[0].Name = proto.String("renamed_field")
	optionsOnly := proto.Clone(compiled).(*descriptorpb.FileDescriptorProto)
	optionsOnly.Options = &descriptorpb.FileOptions{GoPackage: proto.String("example.com/elsewhere/shopv1")}
	optionsOnly.SourceCodeInfo = nil

	for _, tc := range []struct {
		name string
		file *descriptorpb.FileDescriptorProto
		want []string // in the error; none: it loads
	}{
		{name: "the same file", file: compiled},
		{name: "only its options differ", file: optionsOnly},
		{name: "a message added", file: withNew, want: []string{"shop/v1/order.proto", "shop.v1.ShopNew", "own path and package"}},
		{name: "a field renamed", file: renamed, want: []string{"shop/v1/order.proto", "renamed_field", "own path and package"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			files := append(deps(), tc.file)
			_, err := NewRegistry([]string{payloadtest.WriteSet(t, files...)})
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("NewRegistry = %v, want the set to load", err)
				}
				return
			}
			if err == nil {
				t.Fatal("NewRegistry = nil, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("NewRegistry error %q does not mention %q", err, w)
				}
			}
		})
	}
}
