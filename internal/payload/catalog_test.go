package payload

import (
	"cmp"
	"os"
	"slices"
	"testing"

	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	shopv1 "github.com/sse-bridge/bridge/gen/shop/v1"
	"github.com/sse-bridge/bridge/internal/payload/payloadtest"
)

func origins(types []TypeInfo) map[protoreflect.FullName]string {
	m := map[protoreflect.FullName]string{}
	for _, t := range types {
		m[t.Name()] = t.Origin
	}
	return m
}

// TestTypesListsEveryTypeWithItsOrigin: compiled-in types and those of each
// set, sorted, each once, with the set that defined it; a set's copy of a
// compiled-in file counts as compiled in.
func TestTypesListsEveryTypeWithItsOrigin(t *testing.T) {
	t.Parallel()
	setA := payloadtest.WriteSet(t, payloadtest.PingFile("a"), protodesc.ToFileDescriptorProto(shopv1.File_shop_v1_order_proto))
	setB := payloadtest.WriteSet(t, payloadtest.PingFile("b"), payloadtest.PingFile("a"))
	r, err := NewRegistry([]string{setA, setB})
	if err != nil {
		t.Fatal(err)
	}
	types, gen := r.Types()
	if gen != r.Generation() {
		t.Errorf("Types() generation %d, Generation() %d: want the same", gen, r.Generation())
	}
	if !slices.IsSortedFunc(types, func(a, b TypeInfo) int { return cmp.Compare(a.Name(), b.Name()) }) {
		t.Errorf("Types() not sorted by name")
	}
	got := origins(types)
	if len(got) != len(types) {
		t.Errorf("Types() lists %d types, %d names: want each once", len(types), len(got))
	}
	for name, want := range map[protoreflect.FullName]string{
		"test.a.v1.Ping":            setA,
		"test.b.v1.Ping":            setB,
		"shop.v1.OrderCreated":      CompiledIn,
		"google.protobuf.Timestamp": CompiledIn,
		"bridge.v1.PublishRequest":  CompiledIn,
	} {
		if got[name] != want {
			t.Errorf("origin of %s = %q, want %q", name, got[name], want)
		}
	}
}

// TestGenerationChangesOnReloadOnly: a successful reload starts a new
// generation, a failed one keeps the old; a registry from memory has one.
func TestGenerationChangesOnReloadOnly(t *testing.T) {
	t.Parallel()
	path := payloadtest.WriteSet(t, payloadtest.PingFile("a"))
	r, err := NewRegistry([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	g1 := r.Generation()
	if g := r.Generation(); g != g1 {
		t.Fatalf("Generation() = %d then %d without a reload", g1, g)
	}
	payloadtest.WriteSetAt(t, path, payloadtest.PingFile("a"), payloadtest.PingFile("b"))
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	g2 := r.Generation()
	if g2 == g1 {
		t.Errorf("Generation() = %d after a reload, want a new one", g2)
	}
	if _, ok := origins(must(r.Types()))["test.b.v1.Ping"]; !ok {
		t.Errorf("Types() after the reload lacks test.b.v1.Ping")
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil {
		t.Fatal("Reload of garbage = nil")
	}
	if g := r.Generation(); g != g2 {
		t.Errorf("Generation() = %d after a failed reload, want %d kept", g, g2)
	}

	mem, err := NewRegistryFromSet("reflection of host:1", &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{payloadtest.PingFile("m")}})
	if err != nil {
		t.Fatal(err)
	}
	if o := origins(must(mem.Types()))["test.m.v1.Ping"]; o != "reflection of host:1" {
		t.Errorf("origin from NewRegistryFromSet = %q, want the origin given", o)
	}
}

func must(types []TypeInfo, _ uint64) []TypeInfo { return types }
