package bridge_test

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/sse-bridge/bridge/internal/bridge"
)

// waitServed waits until a handshake with addr presents want, failing the
// test after waitLimit; for reloads that happen in the background.
func waitServed(t *testing.T, addr string, roots *x509.CertPool, proto string, want *x509.Certificate) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		got := servedCert(t, addr, roots, proto)
		if got.Equal(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still serves %s (serial %s) after %v, want %s (serial %s)", addr, got.Subject, got.SerialNumber, waitLimit, want.Subject, want.SerialNumber)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLog waits until the bridge logged a line containing all of parts.
func waitLog(t *testing.T, logs *logBuffer, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		for line := range strings.Lines(logs.String()) {
			if containsAll(line, parts) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within %v; logs:\n%s", parts, waitLimit, logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// assertNoKeyMaterial fails when the logs hold a private key.
func assertNoKeyMaterial(t *testing.T, logs string, leaves ...*pkiLeaf) {
	t.Helper()
	if strings.Contains(logs, "PRIVATE KEY") {
		t.Errorf("logs hold a PEM private key:\n%s", logs)
	}
	for _, l := range leaves {
		for line := range strings.Lines(string(l.keyPEM)) {
			if line = strings.TrimSpace(line); len(line) > 16 && !strings.HasPrefix(line, "-----") && strings.Contains(logs, line) {
				t.Errorf("logs hold a line of a private key")
			}
		}
	}
}

// TestTLSReloadOnRequest: ReloadTLS puts new pairs in force for new
// handshakes on both listeners while an open SSE stream keeps streaming; a
// broken pair keeps the one before in force and is reported.
func TestTLSReloadOnRequest(t *testing.T) {
	t.Parallel()
	ca := newPKICA(t, "test CA")
	httpA, grpcA := ca.serverCert(t, "http a"), ca.serverCert(t, "grpc a")
	httpPair, grpcPair := newPKIPairFiles(t, httpA), newPKIPairFiles(t, grpcA)
	b := startTLSBridge(t, bridge.Config{TLSCert: httpPair.cert, TLSKey: httpPair.key, GRPCTLSCert: grpcPair.cert, GRPCTLSKey: grpcPair.key, TLSReloadInterval: -1})
	assertServed(t, "HTTP listener", servedCert(t, b.httpAddr, ca.pool(), "h2"), httpA.cert)
	assertServed(t, "gRPC listener", servedCert(t, b.grpcAddr, ca.pool(), "h2"), grpcA.cert)

	client, _ := h2Client(t, ca.pool(), false)
	sub := subscribeVia(t, client, b.baseURL, "stream=reload", 2)
	if got := sub.resp.TLS.PeerCertificates[0]; !got.Equal(httpA.cert) {
		t.Errorf("stream opened with %s, want %s", got.Subject, httpA.cert.Subject)
	}
	pub := dialGRPC(t, b.grpcAddr, ca.pool(), nil)
	if _, err := tryPublish(t, pub, "reload", "before"); err != nil {
		t.Fatal(err)
	}
	if got := sub.next(t).Data; got != `"before"` {
		t.Fatalf("data %s, want \"before\"", got)
	}

	httpB, grpcB := ca.serverCert(t, "http b"), ca.serverCert(t, "grpc b")
	httpPair.write(t, httpB)
	grpcPair.write(t, grpcB)
	if err := b.srv.ReloadTLS(); err != nil {
		t.Fatalf("ReloadTLS() = %v, want nil", err)
	}
	assertServed(t, "HTTP listener after reload", servedCert(t, b.httpAddr, ca.pool(), "h2"), httpB.cert)
	assertServed(t, "gRPC listener after reload", servedCert(t, b.grpcAddr, ca.pool(), "h2"), grpcB.cert)
	// The stream opened before, and the gRPC connection, carry on.
	if _, err := tryPublish(t, pub, "reload", "after"); err != nil {
		t.Fatalf("Publish on the connection made before the reload = %v", err)
	}
	if got := sub.next(t).Data; got != `"after"` {
		t.Errorf("open stream after reload: data %s, want \"after\"", got)
	}
	fresh, _ := h2Client(t, ca.pool(), false)
	if got := subscribeVia(t, fresh, b.baseURL, "stream=reload", 2).resp.TLS.PeerCertificates[0]; !got.Equal(httpB.cert) {
		t.Errorf("new stream opened with %s, want %s", got.Subject, httpB.cert.Subject)
	}

	// Broken pairs: garbage, then the certificate of one pair with the key of
	// another. The pair before stays in force; the error names the files.
	pkiReplaceFile(t, httpPair.cert, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"))
	err := b.srv.ReloadTLS()
	if err == nil || !strings.Contains(err.Error(), httpPair.cert) || strings.Contains(err.Error(), grpcPair.cert) {
		t.Errorf("ReloadTLS() with a garbage HTTP certificate = %v, want an error naming %s only", err, httpPair.cert)
	}
	assertServed(t, "HTTP listener after a failed reload", servedCert(t, b.httpAddr, ca.pool(), "h2"), httpB.cert)
	assertServed(t, "gRPC listener after another listener's failed reload", servedCert(t, b.grpcAddr, ca.pool(), "h2"), grpcB.cert)

	httpC := ca.serverCert(t, "http c")
	pkiReplaceFile(t, httpPair.cert, httpC.certPEM) // the key is still httpB's
	if err := b.srv.ReloadTLS(); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("ReloadTLS() with a mismatched pair = %v, want an error saying the key does not match", err)
	}
	assertServed(t, "HTTP listener after a mismatched pair", servedCert(t, b.httpAddr, ca.pool(), "h2"), httpB.cert)
	if _, err := tryPublish(t, pub, "reload", "still"); err != nil {
		t.Fatal(err)
	}
	if got := sub.next(t).Data; got != `"still"` {
		t.Errorf("open stream after failed reloads: data %s, want \"still\"", got)
	}

	logs := b.logs.String()
	for _, want := range []string{"TLS files reloaded", "TLS reload failed", httpB.cert.SerialNumber.Text(16)} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs have no %q:\n%s", want, logs)
		}
	}
	assertNoKeyMaterial(t, logs, httpA, httpB, grpcA, grpcB, httpC)
}

// TestTLSReloadByPolling: a changed file is picked up with no signal; a
// broken one is reported once and the pair before stays in force until the
// files are whole again.
func TestTLSReloadByPolling(t *testing.T) {
	t.Parallel()
	ca := newPKICA(t, "test CA")
	a := ca.serverCert(t, "poll a")
	pair := newPKIPairFiles(t, a)
	// A short interval so the test waits little; the wait is bounded by
	// waitLimit, not by the interval.
	b := startTLSBridge(t, bridge.Config{TLSCert: pair.cert, TLSKey: pair.key, TLSReloadInterval: 10 * time.Millisecond})
	assertServed(t, "HTTP listener", servedCert(t, b.httpAddr, ca.pool(), "h2"), a.cert)

	next := ca.serverCert(t, "poll b")
	pair.write(t, next)
	waitServed(t, b.httpAddr, ca.pool(), "h2", next.cert)

	pkiReplaceFile(t, pair.key, []byte("garbage\n"))
	waitLog(t, b.logs, "TLS reload failed", pair.key)
	assertServed(t, "HTTP listener with a broken key file", servedCert(t, b.httpAddr, ca.pool(), "http/1.1"), next.cert)

	last := ca.serverCert(t, "poll c")
	pair.write(t, last)
	waitServed(t, b.httpAddr, ca.pool(), "h2", last.cert)
	assertNoKeyMaterial(t, b.logs.String(), a, next, last)
}
