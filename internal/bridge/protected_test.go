package bridge_test

import (
	"net"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/sse-bridge/bridge/internal/bridge"
)

// elsewhere is a caller that is not on this machine (TEST-NET-3): a second
// loopback address would not do, since protected mode lets all of
// 127.0.0.0/8 in.
var elsewhere = &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 1234}

// TestProtectedMode: with no publisher auth and no --grpc-insecure, only
// loopback callers may publish or use reflection; health is always open.
// Each row asserts the code, the refusal counted, and that nothing was
// stored; then that the mode in force was logged at start.
func TestProtectedMode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cfg    func(t *testing.T) bridge.Config
		remote net.Addr // nil: the real loopback peer
		md     metadata.MD
		code   codes.Code
		msg    []string
		log    string // a line of the start log: level and message
	}{
		{
			name: "refused from elsewhere", remote: elsewhere, code: codes.PermissionDenied,
			msg: []string{"protected mode", "203.0.113.7", "--publishers", "--grpc-insecure"},
			log: `level=WARN msg="protected mode: no publisher auth configured`,
		},
		{name: "allowed from loopback", code: codes.OK, log: `level=WARN msg="protected mode`},
		{name: "allowed from IPv6 loopback", remote: &net.TCPAddr{IP: net.IPv6loopback, Port: 1234}, code: codes.OK},
		{name: "allowed from another loopback address", remote: &net.TCPAddr{IP: net.ParseIP("127.3.2.1"), Port: 1234}, code: codes.OK},
		{name: "refused from IPv4-mapped elsewhere", remote: &net.TCPAddr{IP: net.ParseIP("::ffff:203.0.113.7"), Port: 1234}, code: codes.PermissionDenied},
		{
			name: "allowed with --grpc-insecure", remote: elsewhere, code: codes.OK,
			cfg: func(*testing.T) bridge.Config { return bridge.Config{GRPCInsecure: true} },
			log: `level=WARN msg="publisher auth off and protected mode waived (--grpc-insecure)`,
		},
		{
			name: "allowed with publishers and a token", remote: elsewhere, md: bearer(ordersToken), code: codes.OK,
			cfg: func(t *testing.T) bridge.Config { t.Helper(); return bridge.Config{Publishers: testPublishers(t)} },
			log: `level=INFO msg="publisher auth on`,
		},
		{
			name: "publishers configured: no token is unauthenticated, from loopback too", code: codes.Unauthenticated,
			cfg: func(t *testing.T) bridge.Config { t.Helper(); return bridge.Config{Publishers: testPublishers(t)} },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var cfg bridge.Config
			if tc.cfg != nil {
				cfg = tc.cfg(t)
			}
			b, logs := startBridgeFrom(t, cfg, tc.remote)
			b.checkHealth(t)
			_, err := b.publishAs(t, tc.md, "orders")
			checkCall(t, "Publish", err, tc.code, tc.msg...)
			_, err = b.reflect(t, tc.md)
			checkCall(t, "reflection", err, tc.code)
			stored, refusals := 1.0, 0.0
			if tc.code != codes.OK {
				stored = 0
			}
			if tc.code == codes.PermissionDenied {
				refusals = 2 // Publish and reflection
			}
			if n := historyEvents(t, b.baseURL); n != stored {
				t.Errorf("history holds %v events, want %v", n, stored)
			}
			if n := authFailures(t, b.baseURL, "protected_mode"); n != refusals {
				t.Errorf("protected_mode failures = %v, want %v", n, refusals)
			}
			if err := b.stop(); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(logs.String(), tc.log) {
				t.Errorf("start log does not contain %q:\n%s", tc.log, logs.String())
			}
		})
	}
}

// TestProtectedModeUnixSocket: a caller on a unix socket is on this machine.
func TestProtectedModeUnixSocket(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "grpc.sock") // within the limit of about 100 bytes
	grpcLis, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("unix sockets: %v", err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := bridge.New(bridge.Config{})
	if err != nil {
		t.Fatal(err)
	}
	b := serveTest(t, srv, grpcLis, httpLis, "unix://"+sock)
	if _, err := b.publishAs(t, nil, "orders"); err != nil {
		t.Errorf("Publish over a unix socket = %v, want success", err)
	}
}
