package bridge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// TestNATSEngineCredentials connects with each kind of credential the flags
// offer (but creds files, which need an operator setup: nats.go reads them)
// and publishes once.
func TestNATSEngineCredentials(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	tlsServer := func(o *server.Options) {
		cfg, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: pki.serverCert, KeyFile: pki.serverKey, CaFile: pki.ca, Verify: true})
		if err != nil {
			t.Fatalf("GenTLSConfig: %v", err)
		}
		o.TLS, o.TLSVerify, o.TLSConfig, o.TLSTimeout = true, true, cfg, 5
	}
	token := startNATS(t, func(o *server.Options) { o.Authorization = "s3cret" })
	password := startNATS(t, func(o *server.Options) { o.Username, o.Password = "bridge", "pw" })
	mutualTLS := startNATS(t, tlsServer)

	for _, tc := range []struct {
		name    string
		cfg     NATSConfig
		wantErr string // "" for success
	}{
		{name: "token", cfg: NATSConfig{URLs: []string{token.URL}, Token: "s3cret"}},
		{name: "wrong token", cfg: NATSConfig{URLs: []string{token.URL}, Token: "guess"}, wantErr: "--nats-token"},
		{name: "user and password", cfg: NATSConfig{URLs: []string{password.URL}, User: "bridge", Password: "pw"}},
		{name: "no credentials", cfg: NATSConfig{URLs: []string{password.URL}}, wantErr: "--nats-user"},
		{name: "TLS with a client certificate", cfg: NATSConfig{URLs: []string{mutualTLS.URL}, TLSCA: pki.ca, TLSCert: pki.clientCert, TLSKey: pki.clientKey}},
		{name: "TLS without a client certificate", cfg: NATSConfig{URLs: []string{mutualTLS.URL}, TLSCA: pki.ca}, wantErr: "connect to NATS"},
		{name: "TLS with an unknown CA", cfg: NATSConfig{URLs: []string{mutualTLS.URL}, TLSCA: pki.clientCert, TLSCert: pki.clientCert, TLSKey: pki.clientKey}, wantErr: "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.cfg.ConnectTimeout = 5 * time.Second
			e, err := NewNATSEngine(t.Context(), tc.cfg, 10, time.Hour, 0, nil)
			if tc.wantErr != "" {
				if err == nil {
					e.Close()
					t.Fatalf("NewNATSEngine = nil error, want one saying %q", tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("NewNATSEngine error %q does not say %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewNATSEngine: %v", err)
			}
			t.Cleanup(e.Close)
			pub(t, e, "orders")
		})
	}
}

// testPKI is a CA and a server and a client certificate it signed, as PEM
// files.
type testPKI struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, caCert, caDER := newCert(t, nil, nil, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "bridge test CA"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	})
	write := func(name, typ string, der []byte) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	leaf := func(name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
		t.Helper()
		key, _, der := newCert(t, caKey, caCert, &x509.Certificate{
			Subject:     pkix.Name{CommonName: name},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{usage},
		})
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", keyDER)
	}
	p := testPKI{ca: write("ca.pem", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = leaf("server", x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = leaf("client", x509.ExtKeyUsageClientAuth)
	return p
}

// newCert makes a key and a certificate from tmpl, signed by parent (self
// signed when parent is nil).
func newCert(t *testing.T, parentKey *ecdsa.PrivateKey, parent, tmpl *x509.Certificate) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert, der
}
