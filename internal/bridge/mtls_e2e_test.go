package bridge_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/sse-bridge/bridge/internal/bridge"
	"github.com/sse-bridge/bridge/internal/testpki"
)

// TestMTLSPublishersEndToEnd: a bridge serving gRPC over TLS with a client
// CA, and a publishers file naming certificate principals, seen from a
// caller that is not on this machine: the verified certificate is the
// publisher's credential, its grants apply, and a token still works
// without a certificate. The rows run in turn, so that the history count
// at the end is theirs alone; the test is not parallel so that its rows
// need not be.
func TestMTLSPublishersEndToEnd(t *testing.T) {
	ca := testpki.NewCA(t, "publishers")
	other := testpki.NewCA(t, "someone else")
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	server := ca.Server(t, testpki.Names{CommonName: "bridge", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	b, _ := startBridgeFrom(t, bridge.Config{
		GRPCTLSCert:       write("cert.pem", server.CertPEM),
		GRPCTLSKey:        write("key.pem", server.KeyPEM),
		GRPCClientCA:      write("clients.pem", ca.PEM),
		TLSReloadInterval: -1,
		Publishers: testPublishers(t,
			pubEntry{Name: "orders-by-cert", Cert: "spiffe://acme.example/orders", Streams: []string{"orders"}}),
	}, elsewhere)

	cert := func(ca *testpki.CA, uri string) *tls.Certificate {
		c := ca.Client(t, testpki.Names{URIs: []string{uri}}).TLS
		return &c
	}
	for _, tc := range []struct {
		name   string
		cert   *tls.Certificate
		md     metadata.MD
		stream string
		code   codes.Code
		msg    []string
	}{
		{"granted certificate", cert(ca, "spiffe://acme.example/orders"), nil, "orders", codes.OK, nil},
		{"granted certificate, other stream", cert(ca, "spiffe://acme.example/orders"), nil, "billing", codes.PermissionDenied,
			[]string{`publisher "orders-by-cert" may not publish to stream "billing"`}},
		{"unknown principal", cert(ca, "spiffe://acme.example/intruder"), nil, "orders", codes.Unauthenticated,
			[]string{`"spiffe://acme.example/intruder" is not a publisher`}},
		{"token, no certificate", nil, bearer(ordersToken), "orders", codes.OK, nil},
		{"neither", nil, nil, "orders", codes.Unauthenticated, []string{"no credential"}},
		{"certificate of another CA", cert(other, "spiffe://acme.example/orders"), nil, "orders", codes.Unavailable, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := dialGRPC(t, b.grpcAddr, ca.Pool(), tc.cert)
			ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
			defer cancel()
			if tc.md != nil {
				ctx = metadata.NewOutgoingContext(ctx, tc.md)
			}
			_, err := client.Publish(ctx, jsonReq(t, tc.stream, "x"))
			checkCall(t, "Publish", err, tc.code, tc.msg...)
		})
	}
	if n := historyEvents(t, b.baseURL); n != 2 {
		t.Errorf("history holds %v events, want 2 (the two accepted publishes)", n)
	}
}
