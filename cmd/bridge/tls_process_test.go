package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sse-bridge/bridge/internal/testpki"
)

// TestSIGHUPReloadsTLSCertificate: after the gRPC listener's certificate
// files change, SIGHUP makes new handshakes present the new certificate,
// with no restart. Polling is off, so only the signal can do it.
func TestSIGHUPReloadsTLSCertificate(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "process test CA")
	roots := ca.Pool()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := tlsTestLeaf(t, ca, "first", certFile, keyFile)

	p := startProcess(t, buildBinary(t), "--grpc-tls-cert", certFile, "--grpc-tls-key", keyFile, "--tls-reload-interval", "-1s")
	if got := tlsServedSerial(t, p.grpcAddr, roots); got.Cmp(first) != 0 {
		t.Fatalf("gRPC listener presents serial %s, want %s", got, first)
	}

	second := tlsTestLeaf(t, ca, "second", certFile, keyFile)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reload is asynchronous to the signal: retry until it took effect.
	deadline := time.Now().Add(processLimit)
	for {
		got := tlsServedSerial(t, p.grpcAddr, roots)
		if got.Cmp(second) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gRPC listener presents serial %s %v after SIGHUP, want %s", got, processLimit, second)
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-p.exited:
		t.Fatalf("bridge exited: %v", p.err)
	default:
	}
}

// tlsServedSerial handshakes with addr and returns the serial number of the
// certificate it presented.
func tlsServedSerial(t *testing.T, addr string, roots *x509.CertPool) *big.Int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), processLimit)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{RootCAs: roots, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer func() { _ = conn.Close() }()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber
}

// tlsTestLeaf issues a server certificate for 127.0.0.1, writes it and its
// key to certFile and keyFile, and returns its serial number.
func tlsTestLeaf(t *testing.T, ca *testpki.CA, name, certFile, keyFile string) *big.Int {
	t.Helper()
	leaf := ca.Server(t, testpki.Names{CommonName: name, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err := os.WriteFile(certFile, leaf.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, leaf.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return leaf.Cert.SerialNumber
}
