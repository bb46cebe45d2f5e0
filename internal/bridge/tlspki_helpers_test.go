package bridge_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/sse-bridge/bridge/internal/testpki"
)

// pkiCA is a certificate authority made for one test (testpki's, with the
// shorthands these tests use).
type pkiCA struct {
	*testpki.CA
	cert    *x509.Certificate
	certPEM []byte
}

// pkiLeaf is a certificate the test CA issued, with its key.
type pkiLeaf struct {
	cert            *x509.Certificate
	certPEM, keyPEM []byte
	tls             tls.Certificate
}

func newPKICA(t *testing.T, name string) *pkiCA {
	t.Helper()
	ca := testpki.NewCA(t, name)
	return &pkiCA{CA: ca, cert: ca.Cert, certPEM: ca.PEM}
}

// pool returns a pool holding only this CA.
func (ca *pkiCA) pool() *x509.CertPool { return ca.Pool() }

// serverCert issues a server certificate for 127.0.0.1 and localhost.
func (ca *pkiCA) serverCert(t *testing.T, name string) *pkiLeaf {
	t.Helper()
	return leafOf(ca.Server(t, testpki.Names{CommonName: name, DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}))
}

// clientCert issues a client certificate (the clientAuth usage a TLS server
// requires) named name.
func (ca *pkiCA) clientCert(t *testing.T, name string) *pkiLeaf {
	t.Helper()
	return leafOf(ca.Client(t, testpki.Names{CommonName: name}))
}

func leafOf(l testpki.Leaf) *pkiLeaf {
	return &pkiLeaf{cert: l.Cert, certPEM: l.CertPEM, keyPEM: l.KeyPEM, tls: l.TLS}
}

// tlsCertificate is the leaf as a client presents it.
func (l *pkiLeaf) tlsCertificate(*testing.T) *tls.Certificate {
	c := l.tls
	return &c
}

// pkiPairFiles are a certificate and key file on disk, rewritten by tests.
type pkiPairFiles struct{ cert, key string }

func newPKIPairFiles(t *testing.T, l *pkiLeaf) pkiPairFiles {
	t.Helper()
	dir := t.TempDir()
	p := pkiPairFiles{cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem")}
	p.write(t, l)
	return p
}

// write replaces the files with l's certificate and key, each by a rename,
// as a certificate manager does.
func (p pkiPairFiles) write(t *testing.T, l *pkiLeaf) {
	t.Helper()
	pkiReplaceFile(t, p.cert, l.certPEM)
	pkiReplaceFile(t, p.key, l.keyPEM)
}

func pkiReplaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func pkiWriteFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
