package bridge_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
	"github.com/sse-bridge/bridge/internal/payload/payloadtest"
)

// pingAny builds a test.<pkg>.v1.Ping event, a type this test binary does not
// have compiled in, as an Any.
func pingAny(t *testing.T, pkg, note string, n int64) *anypb.Any {
	t.Helper()
	fd, err := protodesc.NewFile(payloadtest.PingFile(pkg), protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	md := fd.Messages().ByName("Ping")
	msg := dynamicpb.NewMessage(md)
	msg.Set(md.Fields().ByName("note"), protoreflect.ValueOfString(note))
	msg.Set(md.Fields().ByName("n"), protoreflect.ValueOfInt64(n))
	value, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	return &anypb.Any{TypeUrl: "type.googleapis.com/" + string(md.FullName()), Value: value}
}

func writeSetFile(t *testing.T, path string, files ...*descriptorpb.FileDescriptorProto) {
	t.Helper()
	raw, err := proto.Marshal(&descriptorpb.FileDescriptorSet{File: files})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDescriptorSetTypesRenderAndReload: types known only from a descriptor
// set render as JSON; a reload adds types without dropping a connected
// client; a bad set is refused and the old types keep working.
func TestDescriptorSetTypesRenderAndReload(t *testing.T) {
	t.Parallel()
	path := payloadtest.WriteSet(t, payloadtest.PingFile("a"))
	b := startBridge(t, bridge.Config{DescriptorSets: []string{path}})
	watch := subscribe(t, b.baseURL, "stream=pings", "")

	publishPing := func(pkg string, n int64) (uint64, error) {
		res, err := b.client.Publish(t.Context(), &bridgev1.PublishRequest{
			Stream: "pings", Payload: &bridgev1.PublishRequest_Event{Event: pingAny(t, pkg, "hi "+pkg, n)},
		})
		return res.GetId(), err
	}
	expect := func(id uint64, pkg string, n int64) {
		t.Helper()
		got := toFrame(t, watch.next(t))
		want := frame{ID: idString(id), Type: "test." + pkg + ".v1.Ping", Data: map[string]any{"note": "hi " + pkg, "n": strconvI(n)}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("frame (-want +got):\n%s", diff)
		}
	}

	id, err := publishPing("a", 1)
	if err != nil {
		t.Fatalf("Publish(test.a.v1.Ping) = %v", err)
	}
	expect(id, "a", 1)

	_, err = publishPing("b", 2)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"test.b.v1.Ping" is unknown`) || !strings.Contains(err.Error(), "--descriptor-set") {
		t.Fatalf("Publish(unknown test.b.v1.Ping) = %v, want InvalidArgument naming the type and --descriptor-set", err)
	}

	writeSetFile(t, path, payloadtest.PingFile("a"), payloadtest.PingFile("b"))
	if err := b.srv.ReloadTypes(); err != nil {
		t.Fatalf("ReloadTypes = %v", err)
	}
	if id, err = publishPing("b", 3); err != nil {
		t.Fatalf("Publish(test.b.v1.Ping) after reload = %v", err)
	}
	expect(id, "b", 3) // on the connection opened before the reload

	if err := os.WriteFile(path, []byte("no longer a descriptor set"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.srv.ReloadTypes(); err == nil {
		t.Fatalf("ReloadTypes with a broken set = nil, want an error")
	}
	for i, pkg := range []string{"a", "b"} {
		id, err := publishPing(pkg, int64(10+i))
		if err != nil {
			t.Fatalf("Publish(test.%s.v1.Ping) after a failed reload = %v, want the old types kept", pkg, err)
		}
		expect(id, pkg, int64(10+i))
	}
}

// TestReflectionServesLoadedTypes asks the reflection service what a client
// without proto files asks: the services, and the file of a loaded type.
func TestReflectionServesLoadedTypes(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{DescriptorSets: []string{payloadtest.WriteSet(t, payloadtest.PingFile("r"))}})
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	stream, err := reflectionv1.NewServerReflectionClient(b.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ask := func(req *reflectionv1.ServerReflectionRequest) *reflectionv1.ServerReflectionResponse {
		t.Helper()
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		res, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	var services []string
	for _, s := range ask(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}}).GetListServicesResponse().GetService() {
		services = append(services, s.GetName())
	}
	if !strings.Contains(strings.Join(services, " "), "bridge.v1.BridgeService") {
		t.Errorf("ListServices = %v, want bridge.v1.BridgeService", services)
	}

	res := ask(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "test.r.v1.Ping"}})
	var names []string
	for _, raw := range res.GetFileDescriptorResponse().GetFileDescriptorProto() {
		var fdp descriptorpb.FileDescriptorProto
		if err := proto.Unmarshal(raw, &fdp); err != nil {
			t.Fatal(err)
		}
		names = append(names, fdp.GetName())
		if fdp.GetName() == "test/r/v1/ping.proto" && fdp.GetMessageType()[0].GetName() != "Ping" {
			t.Errorf("file %s describes %v, want Ping", fdp.GetName(), fdp.GetMessageType())
		}
	}
	if !strings.Contains(strings.Join(names, " "), "test/r/v1/ping.proto") {
		t.Errorf("FileContainingSymbol(test.r.v1.Ping) = files %v (error %v), want test/r/v1/ping.proto", names, res.GetErrorResponse())
	}
}

// TestGrpcurlPublishesThroughReflection runs the real grpcurl binary, which
// knows no proto files, against a bridge with a descriptor set.
func TestGrpcurlPublishesThroughReflection(t *testing.T) {
	t.Parallel()
	grpcurl, err := exec.LookPath("grpcurl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("grpcurl is not on PATH; .ci/run installs it")
		}
		t.Skip("grpcurl is not installed: go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3")
	}
	b := startBridge(t, bridge.Config{DescriptorSets: []string{payloadtest.WriteSet(t, payloadtest.PingFile("g"))}})
	watch := subscribe(t, b.baseURL, "stream=cli", "")

	publish := func(body string) uint64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
		defer cancel()
		out, err := exec.CommandContext(ctx, grpcurl, "-plaintext", "-d", body, b.grpcAddr, "bridge.v1.BridgeService/Publish").CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl -d %s: %v\n%s", body, err, out)
		}
		var res struct{ ID string }
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("grpcurl output %q: %v", out, err)
		}
		return parseID(t, res.ID)
	}
	typed := publish(`{"stream":"cli","event":{"@type":"type.googleapis.com/test.g.v1.Ping","note":"from grpcurl","n":"42","at":"2026-11-25T10:00:00Z"}}`)
	untyped := publish(`{"stream":"cli","type":"note","json":{"hello":["world",1]}}`)

	want := []frame{
		{ID: idString(typed), Type: "test.g.v1.Ping", Data: map[string]any{"note": "from grpcurl", "n": "42", "at": "2026-11-25T10:00:00Z"}},
		{ID: idString(untyped), Type: "note", Data: map[string]any{"hello": []any{"world", 1.0}}},
	}
	got := []frame{toFrame(t, watch.next(t)), toFrame(t, watch.next(t))}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("frames (-want +got):\n%s", diff)
	}
}
