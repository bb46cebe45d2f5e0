package bridge

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/testpki"
)

// countingService is a BridgeService that counts the publishes that reach
// it: zero means the interceptor stopped every call.
type countingService struct {
	bridgev1.UnimplementedBridgeServiceServer
	n atomic.Int32
}

func (c *countingService) Publish(context.Context, *bridgev1.PublishRequest) (*bridgev1.PublishResponse, error) {
	return &bridgev1.PublishResponse{Id: uint64(c.n.Add(1))}, nil
}

func testPublisherSet(t *testing.T, file string) *publishers {
	t.Helper()
	set, err := parsePublishers([]byte(file))
	if err != nil {
		t.Fatalf("parsePublishers: %v", err)
	}
	p := &publishers{file: "test"}
	p.cur.Store(set)
	return p
}

// TestMTLSPrincipals runs a gRPC server with TLS that verifies client
// certificates against a test CA when given, behind the publisher
// interceptor, and calls it with certificates carrying different names.
func TestMTLSPrincipals(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "bridge test clients")
	other := testpki.NewCA(t, "someone else")
	serverCert := ca.Server(t, testpki.Names{CommonName: "bridge", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	pubs := `{"publishers": [
		{"name": "orders", "cert": "spiffe://acme.example/orders", "streams": ["orders"]},
		{"name": "billing", "cert": "billing.acme.example", "streams": ["billing.>"]},
		{"name": "reporting", "cert": "reporting", "streams": ["reports"]},
		{"name": "token", "token_sha256": "` + sha256Hex("a-token") + `", "streams": ["orders"]}
	]}`

	names := func(n testpki.Names) *testpki.Names { return &n }
	for _, tc := range []struct {
		name   string
		cert   *testpki.Names // the client certificate's names; nil: none
		signer *testpki.CA    // nil: the client CA
		md     metadata.MD
		stream string
		code   codes.Code
		msg    string
		reason string
	}{
		{name: "URI SAN granted", cert: names(testpki.Names{CommonName: "ignored", URIs: []string{"spiffe://acme.example/orders"}, DNSNames: []string{"ignored.example"}}),
			stream: "orders", code: codes.OK},
		{name: "DNS SAN granted", cert: names(testpki.Names{CommonName: "ignored", DNSNames: []string{"billing.acme.example", "second.example"}}),
			stream: "billing.eu", code: codes.OK},
		{name: "common name granted", cert: names(testpki.Names{CommonName: "reporting"}), stream: "reports", code: codes.OK},
		{name: "principal refused another stream", cert: names(testpki.Names{DNSNames: []string{"billing.acme.example"}}), stream: "orders",
			code: codes.PermissionDenied, msg: `publisher "billing" may not publish to stream "orders"`, reason: reasonNotGranted},
		{name: "unknown principal", cert: names(testpki.Names{URIs: []string{"spiffe://acme.example/intruder"}}), stream: "orders",
			code: codes.Unauthenticated, msg: `"spiffe://acme.example/intruder" is not a publisher`, reason: reasonUnknownCert},
		{name: "URI SAN before DNS SAN", cert: names(testpki.Names{URIs: []string{"spiffe://acme.example/other"}, DNSNames: []string{"billing.acme.example"}}),
			stream: "billing.eu", code: codes.Unauthenticated, msg: `"spiffe://acme.example/other"`, reason: reasonUnknownCert},
		{name: "no client certificate", stream: "orders", code: codes.Unauthenticated, msg: "no credential", reason: reasonNoCredential},
		{name: "token decides before the certificate", cert: names(testpki.Names{URIs: []string{"spiffe://acme.example/orders"}}),
			md: metadata.Pairs("authorization", "Bearer wrong"), stream: "orders", code: codes.Unauthenticated, reason: reasonBadToken},
		{name: "token without certificate", md: metadata.Pairs("authorization", "Bearer a-token"), stream: "orders", code: codes.OK},
		// Go's client sends only a certificate the server's CA list accepts,
		// so this call carries none.
		{name: "certificate of another CA", cert: names(testpki.Names{URIs: []string{"spiffe://acme.example/orders"}}), signer: other,
			stream: "orders", code: codes.Unauthenticated, msg: "no credential", reason: reasonNoCredential},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := newMetrics(nil, nil)
			svc := &countingService{}
			addr := serveMTLS(t, ca, serverCert, &grpcAuth{pubs: testPublisherSet(t, pubs), metrics: m, log: slog.New(slog.DiscardHandler)}, svc)

			clientTLS := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}
			if tc.cert != nil {
				signer := ca
				if tc.signer != nil {
					signer = tc.signer
				}
				clientTLS.Certificates = []tls.Certificate{signer.Client(t, *tc.cert).TLS}
			}
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = conn.Close() }()
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			if tc.md != nil {
				ctx = metadata.NewOutgoingContext(ctx, tc.md)
			}
			_, err = bridgev1.NewBridgeServiceClient(conn).Publish(ctx, &bridgev1.PublishRequest{Stream: tc.stream})
			if got := status.Code(err); got != tc.code {
				t.Fatalf("Publish(%q) = %v, want code %v", tc.stream, err, tc.code)
			}
			if !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Errorf("Publish(%q) message %q, want it to contain %q", tc.stream, status.Convert(err).Message(), tc.msg)
			}
			want := int32(0)
			if tc.code == codes.OK {
				want = 1
			}
			if n := svc.n.Load(); n != want {
				t.Errorf("publishes reaching the service = %d, want %d", n, want)
			}
			if tc.reason != "" {
				var d dto.Metric
				if err := m.authFailures.WithLabelValues(sidePublisher, tc.reason).Write(&d); err != nil {
					t.Fatal(err)
				}
				if n := d.GetCounter().GetValue(); n != 1 {
					t.Errorf("auth failures %q = %v, want 1", tc.reason, n)
				}
			}
		})
	}
}

// serveMTLS serves svc behind a's interceptors with TLS, verifying client
// certificates against ca when a client sends one, until the test ends.
func serveMTLS(t *testing.T, ca *testpki.CA, cert testpki.Leaf, a *grpcAuth, svc bridgev1.BridgeServiceServer) string {
	t.Helper()
	creds := credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert.TLS},
		ClientCAs:    ca.Pool(),
		ClientAuth:   tls.VerifyClientCertIfGiven,
		MinVersion:   tls.VersionTLS12,
	})
	gs := grpc.NewServer(grpc.Creds(creds), grpc.ChainUnaryInterceptor(a.unary), grpc.ChainStreamInterceptor(a.stream))
	bridgev1.RegisterBridgeServiceServer(gs, svc)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return lis.Addr().String()
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestCertPrincipal: the principal comes only from a verified chain, and is
// its leaf's first URI SAN, else first DNS SAN, else common name.
func TestCertPrincipal(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "principals")
	leaf := func(n testpki.Names) *x509.Certificate { return ca.Client(t, n).Cert }
	for _, tc := range []struct {
		name  string
		state *tls.ConnectionState // nil: no TLS at all
		want  string
		ok    bool
	}{
		{"no TLS", nil, "", false},
		{"TLS without a client certificate", &tls.ConnectionState{}, "", false},
		{"unverified certificate", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf(testpki.Names{CommonName: "mallory"})}}, "", false},
		{"URI SAN first", verified(leaf(testpki.Names{CommonName: "cn", DNSNames: []string{"dns.example"}, URIs: []string{"spiffe://a.example/x", "spiffe://a.example/y"}})), "spiffe://a.example/x", true},
		{"then DNS SAN", verified(leaf(testpki.Names{CommonName: "cn", DNSNames: []string{"dns.example", "other.example"}})), "dns.example", true},
		{"then common name", verified(leaf(testpki.Names{CommonName: "cn"})), "cn", true},
		{"no name at all", verified(leaf(testpki.Names{})), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 9}}
			if tc.state != nil {
				p.AuthInfo = credentials.TLSInfo{State: *tc.state}
			}
			got, ok := certPrincipal(peer.NewContext(t.Context(), p))
			if got != tc.want || ok != tc.ok {
				t.Errorf("certPrincipal = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func verified(leaf *x509.Certificate) *tls.ConnectionState {
	return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf}}}
}

func TestIsLocal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr net.Addr
		want bool
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, true},
		{&net.TCPAddr{IP: net.IPv4(127, 255, 0, 9), Port: 1}, true},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 1}, true},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.1"), Port: 1}, true},
		{&net.UnixAddr{Name: "/run/bridge.sock", Net: "unix"}, true},
		{&net.UnixAddr{Name: "", Net: "unix"}, true}, // an unnamed client socket
		{&net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}, false},
		{&net.TCPAddr{IP: net.IPv4(0, 0, 0, 0), Port: 1}, false},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:203.0.113.7"), Port: 1}, false},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 1}, false},
		{otherAddr{"tcp", "127.0.0.1:80"}, true},
		{otherAddr{"tcp", "[::1]:80"}, true},
		{otherAddr{"tcp", "192.0.2.1:80"}, false},
		{otherAddr{"bufconn", "bufconn"}, false}, // unknown: fail closed
		{nil, false},
	} {
		if got := isLocal(tc.addr); got != tc.want {
			t.Errorf("isLocal(%v) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

type otherAddr struct{ network, s string }

func (a otherAddr) Network() string { return a.network }
func (a otherAddr) String() string  { return a.s }

func TestBearerToken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER  abc ", "abc", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Basic abc", "", false},
		{"abc", "", false},
		{"", "", false},
	} {
		if got, ok := bearerToken(tc.in); got != tc.want || ok != tc.ok {
			t.Errorf("bearerToken(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestByTokenFindsEveryEntry: the constant-time search finds each entry of
// a long list, whichever its position, and no cert entry ever matches.
func TestByTokenFindsEveryEntry(t *testing.T) {
	t.Parallel()
	var entries []string
	for i := range 50 {
		entries = append(entries, fmt.Sprintf(`{"name": "p%d", "token_sha256": %q, "streams": ["s"]}`, i, sha256Hex(fmt.Sprintf("token-%d", i))),
			fmt.Sprintf(`{"name": "c%d", "cert": "c%d.example", "streams": ["s"]}`, i, i))
	}
	set, err := parsePublishers([]byte(`{"publishers": [` + strings.Join(entries, ",") + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if p := set.byToken(fmt.Sprintf("token-%d", i)); p == nil || p.name != fmt.Sprintf("p%d", i) {
			t.Errorf("byToken(token-%d) = %v, want p%d", i, p, i)
		}
	}
	for _, tok := range []string{"", "token-50", "c1.example"} {
		if p := set.byToken(tok); p != nil {
			t.Errorf("byToken(%q) = %q, want none", tok, p.name)
		}
	}
}
