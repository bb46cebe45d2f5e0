package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestSIGHUPReloadsTLSCertificate: after the gRPC listener's certificate
// files change, SIGHUP makes new handshakes present the new certificate,
// with no restart. Polling is off, so only the signal can do it.
func TestSIGHUPReloadsTLSCertificate(t *testing.T) {
	t.Parallel()
	caKey, caCert := tlsTestCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := tlsTestLeaf(t, caKey, caCert, "first", certFile, keyFile)

	p := startProcess(t, buildBinary(t), "--grpc-tls-cert", certFile, "--grpc-tls-key", keyFile, "--tls-reload-interval", "-1s")
	if got := tlsServedSerial(t, p.grpcAddr, roots); got.Cmp(first) != 0 {
		t.Fatalf("gRPC listener presents serial %s, want %s", got, first)
	}

	second := tlsTestLeaf(t, caKey, caCert, "second", certFile, keyFile)
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

func tlsTestCA(t *testing.T) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "process test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

// tlsTestLeaf issues a server certificate for 127.0.0.1, writes it and its
// key to certFile and keyFile, and returns its serial number.
func tlsTestLeaf(t *testing.T, caKey *ecdsa.PrivateKey, caCert *x509.Certificate, name, certFile, keyFile string) *big.Int {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	serial.Add(serial, big.NewInt(2)) // never the CA's
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return serial
}
