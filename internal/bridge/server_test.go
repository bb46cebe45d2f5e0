package bridge_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
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

// TestAdminListener: with an admin listener, /metrics, /healthz, /readyz
// and pprof are served there and not on the public listener; without one,
// the public listener serves the first three and pprof is nowhere.
func TestAdminListener(t *testing.T) {
	t.Parallel()
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	srv, err := bridge.New(bridge.Config{})
	if err != nil {
		t.Fatal(err)
	}
	l := bridge.Listeners{GRPC: listen(), HTTP: listen(), Admin: listen()}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.ServeListeners(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeListeners = %v", err)
		}
	})
	public, admin := "http://"+l.HTTP.Addr().String(), "http://"+l.Admin.Addr().String()

	without := startBridge(t, bridge.Config{})
	for _, tc := range []struct {
		base, path string
		want       int
	}{
		{admin, "/metrics", http.StatusOK},
		{admin, "/healthz", http.StatusOK},
		{admin, "/readyz", http.StatusOK},
		{admin, "/debug/pprof/", http.StatusOK},
		{admin, "/debug/pprof/cmdline", http.StatusOK},
		{public, "/metrics", http.StatusNotFound},
		{public, "/healthz", http.StatusNotFound},
		{public, "/readyz", http.StatusNotFound},
		{public, "/debug/pprof/", http.StatusNotFound},
		{without.baseURL, "/metrics", http.StatusOK},
		{without.baseURL, "/readyz", http.StatusOK},
		{without.baseURL, "/debug/pprof/", http.StatusNotFound},
	} {
		resp := httpGet(t, tc.base+tc.path)
		if resp != tc.want {
			t.Errorf("GET %s%s = %d, want %d", tc.base, tc.path, resp, tc.want)
		}
	}
	// The public listener still serves the page and the stream.
	if got := httpGet(t, public+"/"); got != http.StatusOK {
		t.Errorf("GET / on the public listener = %d, want 200", got)
	}
}

// httpGet returns the status of GET url.
func httpGet(t *testing.T, url string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestStartAndStopFacts: one line at start says what runs (version,
// listeners, engine, auth, limits), one at stop what was drained.
func TestStartAndStopFacts(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	b := startBridge(t, bridge.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil)), MaxConnections: 500})
	c := subscribe(t, b.baseURL, "stream=facts", "")
	b.publish(t, jsonReq(t, "facts", 1))
	c.next(t) // the connection is live
	start := logs.take()
	for _, want := range []string{"msg=\"bridge serving\"", "version=", "engine=memory", "subscriber_auth=off", `publisher_auth="protected mode (loopback only)"`, "max_connections=500", "history_size=1000", "admin=\"none"} {
		if !strings.Contains(start, want) {
			t.Errorf("start logged %q, want %q in it", start, want)
		}
	}
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	if stop := logs.take(); !strings.Contains(stop, `msg="bridge stopped" sse_connections_closed=1`) {
		t.Errorf("stop logged %q, want the connections it closed", stop)
	}
}
