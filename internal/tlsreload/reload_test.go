package tlsreload

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned returns a PEM certificate and key named cn.
func selfSigned(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// TestWatchedKeyPairPolling drives the poll step by step: a change is loaded
// once it has settled, so a pair caught half-written is not reported; a
// broken pair is reported once, keeps the pair before in force, and a forced
// load reports it again.
func TestWatchedKeyPairPolling(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	write := func(file string, data []byte) {
		t.Helper()
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	subject := func(w *watchedFiles[tls.Certificate]) string { return w.current().Leaf.Subject.CommonName }
	poll := func(w *watchedFiles[tls.Certificate], wantLoaded bool, wantErr string) {
		t.Helper()
		loaded, err := w.load(false)
		if loaded != wantLoaded || (err == nil) != (wantErr == "") || (err != nil && !strings.Contains(err.Error(), wantErr)) {
			t.Fatalf("poll = %v, %v; want %v and an error with %q", loaded, err, wantLoaded, wantErr)
		}
	}

	certA, keyA := selfSigned(t, "a")
	write(certFile, certA)
	write(keyFile, keyA)
	w := newKeyPairFiles("test pair", certFile, keyFile)
	if loaded, err := w.load(true); !loaded || err != nil {
		t.Fatalf("first load = %v, %v; want loaded", loaded, err)
	}
	poll(w, false, "") // unchanged

	// The certificate is rewritten first, the key later.
	certB, keyB := selfSigned(t, "b")
	write(certFile, certB)
	poll(w, false, "") // a change: wait for it to settle
	write(keyFile, keyB)
	poll(w, false, "") // changed again: still settling
	poll(w, true, "")  // settled
	if got := subject(w); got != "b" {
		t.Fatalf("in force: %q, want b", got)
	}

	// A pair left broken is reported once, after it settled.
	write(keyFile, []byte("garbage"))
	poll(w, false, "")
	poll(w, false, keyFile)
	poll(w, false, "")
	poll(w, false, "")
	if got := subject(w); got != "b" {
		t.Errorf("in force after a broken pair: %q, want b", got)
	}
	if _, err := w.load(true); err == nil {
		t.Errorf("forced load of a broken pair = nil, want the error again")
	}

	// A missing file is an error too, reported once.
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	poll(w, false, "")
	poll(w, false, keyFile)
	poll(w, false, "")
	write(keyFile, keyB)
	poll(w, false, "")
	poll(w, true, "")
	if got := subject(w); got != "b" {
		t.Errorf("in force: %q, want b", got)
	}
}

func TestParseCAPool(t *testing.T) {
	t.Parallel()
	certA, keyA := selfSigned(t, "a")
	certB, _ := selfSigned(t, "b")
	for _, tc := range []struct {
		name      string
		data      []byte
		wantCount int
		wantErr   string
	}{
		{name: "one", data: certA, wantCount: 1},
		{name: "two, with text and a key between", data: append(append(append([]byte("# CAs\n"), certA...), keyA...), certB...), wantCount: 2},
		{name: "empty", data: nil, wantErr: "no PEM certificate"},
		{name: "only a key", data: keyA, wantErr: "no PEM certificate"},
		{name: "a broken certificate", data: append(append([]byte{}, certA...), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"...), wantErr: "certificate 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := parseCAPool(tc.data)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("parseCAPool() = %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || p.count != tc.wantCount {
				t.Errorf("parseCAPool() = %v certificates, %v; want %d", p, err, tc.wantCount)
			}
		})
	}
}
