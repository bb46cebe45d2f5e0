package bridge_test

import (
	"log/slog"
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/sse-bridge/bridge/internal/bridge"
	"github.com/sse-bridge/bridge/internal/payload/payloadtest"
)

// TestTypesLogSaysWhatChanged: the start says which types the descriptor
// sets gave, a reload what it added and removed, and a bridge without sets
// says nothing of them at all.
func TestTypesLogSaysWhatChanged(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))

	none, err := bridge.New(bridge.Config{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := none.ReloadTypes(); err != nil {
		t.Fatal(err)
	}
	if got := logs.take(); strings.Contains(got, "descriptor set") {
		t.Errorf("a bridge without descriptor sets logged %q", got)
	}

	path := payloadtest.WriteSet(t, payloadtest.PingFile("a"))
	srv, err := bridge.New(bridge.Config{Logger: logger, DescriptorSets: []string{path}})
	if err != nil {
		t.Fatal(err)
	}
	if got := logs.take(); !strings.Contains(got, "loaded descriptor sets") || !strings.Contains(got, "test.a.v1.Ping") {
		t.Errorf("start logged %q, want the loaded set and its type", got)
	}

	rewriteSet(t, path, payloadtest.PingFile("b"))
	if err := srv.ReloadTypes(); err != nil {
		t.Fatal(err)
	}
	got := logs.take()
	if !strings.Contains(got, `added=test.b.v1.Ping`) || !strings.Contains(got, `removed=test.a.v1.Ping`) || strings.Count(got, "\n") != 1 {
		t.Errorf("reload logged %q, want one line with the added and the removed type", got)
	}
	if err := srv.ReloadTypes(); err != nil {
		t.Fatal(err)
	}
	if got := logs.take(); !strings.Contains(got, "no type added or removed") {
		t.Errorf("a reload that changed nothing logged %q", got)
	}
}

// rewriteSet replaces the descriptor set at path with one of files.
func rewriteSet(t *testing.T, path string, files ...*descriptorpb.FileDescriptorProto) {
	t.Helper()
	raw, err := proto.Marshal(&descriptorpb.FileDescriptorSet{File: files})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}
