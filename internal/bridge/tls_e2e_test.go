package bridge_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gosse "github.com/tmaxmax/go-sse"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
)

// tlsBridge is a bridge with TLS served on loopback.
type tlsBridge struct {
	srv      *bridge.Server
	grpcAddr string
	httpAddr string
	baseURL  string // https://
	logs     *logBuffer
	stop     func() error // cancels Serve and returns its error
}

// startTLSBridge serves cfg on loopback, logging into a buffer the test can
// read.
func startTLSBridge(t *testing.T, cfg bridge.Config) *tlsBridge {
	t.Helper()
	logs := &logBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := bridge.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := serveUntilCleanup(t, srv, grpcLis, httpLis)
	return &tlsBridge{
		srv:      srv,
		grpcAddr: grpcLis.Addr().String(),
		httpAddr: httpLis.Addr().String(),
		baseURL:  "https://" + httpLis.Addr().String(),
		logs:     logs,
		stop:     stop,
	}
}

// logBuffer collects log lines; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// h2Client returns a client that trusts roots and speaks HTTP/2 (or only
// HTTP/1.1 when h1Only), and counts the connections it dials.
func h2Client(t *testing.T, roots *x509.CertPool, h1Only bool) (*http.Client, *atomic.Int32) {
	t.Helper()
	var dials atomic.Int32
	var d net.Dialer
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(!h1Only)
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		Protocols:       &protocols,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, &dials
}

// subscribeVia opens baseURL/events?query with client and checks the answer
// is a 200 event stream over HTTP/protoMajor. Once it returns, the bridge
// has registered the connection.
func subscribeVia(t *testing.T, client *http.Client, baseURL, query string, protoMajor int) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	resp := getEvents(ctx, t, client, baseURL, query, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" || resp.ProtoMajor != protoMajor {
		_ = resp.Body.Close()
		cancel()
		t.Fatalf("GET /events?%s = %d %q over %s, want 200 text/event-stream over HTTP/%d", query, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Proto, protoMajor)
	}
	return readEvents(t, resp, cancel)
}

// dialGRPC returns a Publish client over TLS trusting roots, presenting cert
// when it is not nil.
func dialGRPC(t *testing.T, addr string, roots *x509.CertPool, cert *tls.Certificate) bridgev1.BridgeServiceClient {
	t.Helper()
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.GetClientCertificate = presentAlways(cert)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return bridgev1.NewBridgeServiceClient(conn)
}

// presentAlways returns a GetClientCertificate that presents cert even when
// the server's list of acceptable CAs does not name its issuer (with
// Certificates, a Go client would then send none, and be let in as a client
// without a certificate).
func presentAlways(cert *tls.Certificate) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
}

// tryPublish publishes the JSON string data to stream.
func tryPublish(t *testing.T, c bridgev1.BridgeServiceClient, stream, data string) (uint64, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	res, err := c.Publish(ctx, jsonReq(t, stream, data))
	return res.GetId(), err
}

// servedCert completes a TLS handshake with addr, verifying the server
// against roots, and returns the certificate it presented.
func servedCert(t *testing.T, addr string, roots *x509.CertPool, proto string) *x509.Certificate {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{RootCAs: roots, NextProtos: []string{proto}, MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer func() { _ = conn.Close() }()
	state := conn.(*tls.Conn).ConnectionState()
	if state.NegotiatedProtocol != proto {
		t.Errorf("ALPN with %s = %q, want %q", addr, state.NegotiatedProtocol, proto)
	}
	return state.PeerCertificates[0]
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

func assertServed(t *testing.T, what string, got, want *x509.Certificate) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s presents %s (serial %s), want %s (serial %s)", what, got.Subject, got.SerialNumber, want.Subject, want.SerialNumber)
	}
}

func TestTLSConfigValidation(t *testing.T) {
	t.Parallel()
	ca := newPKICA(t, "validation CA")
	dir := t.TempDir()
	a, b := ca.serverCert(t, "a"), ca.serverCert(t, "b")
	certA := pkiWriteFile(t, dir, "a.pem", a.certPEM)
	keyA := pkiWriteFile(t, dir, "a-key.pem", a.keyPEM)
	keyB := pkiWriteFile(t, dir, "b-key.pem", b.keyPEM)
	garbage := pkiWriteFile(t, dir, "garbage.pem", []byte("not a certificate\n"))
	caFile := pkiWriteFile(t, dir, "ca.pem", ca.certPEM)
	missing := dir + "/missing.pem"

	for _, tc := range []struct {
		name string
		cfg  bridge.Config
		want []string // every one in the error; none: no error
	}{
		{name: "HTTP pair", cfg: bridge.Config{TLSCert: certA, TLSKey: keyA}},
		{name: "gRPC pair and client CA", cfg: bridge.Config{GRPCTLSCert: certA, GRPCTLSKey: keyA, GRPCClientCA: caFile}},
		{name: "certificate without key", cfg: bridge.Config{TLSCert: certA}, want: []string{"--tls-cert", "--tls-key", "set both or neither"}},
		{name: "key without certificate", cfg: bridge.Config{TLSKey: keyA}, want: []string{"--tls-cert", "--tls-key"}},
		{name: "gRPC certificate without key", cfg: bridge.Config{GRPCTLSCert: certA}, want: []string{"--grpc-tls-cert", "--grpc-tls-key"}},
		{name: "client CA without gRPC TLS", cfg: bridge.Config{TLSCert: certA, TLSKey: keyA, GRPCClientCA: caFile}, want: []string{"--grpc-client-ca", "needs TLS on the gRPC listener"}},
		{name: "unreadable certificate", cfg: bridge.Config{TLSCert: missing, TLSKey: keyA}, want: []string{"HTTP TLS certificate", missing}},
		{name: "key of another certificate", cfg: bridge.Config{GRPCTLSCert: certA, GRPCTLSKey: keyB}, want: []string{"gRPC TLS certificate", certA, keyB, "does not match"}},
		{name: "garbage certificate", cfg: bridge.Config{TLSCert: garbage, TLSKey: keyA}, want: []string{garbage, keyA}},
		{name: "garbage client CA", cfg: bridge.Config{GRPCTLSCert: certA, GRPCTLSKey: keyA, GRPCClientCA: garbage}, want: []string{"gRPC client CA", garbage, "no PEM certificate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := bridge.New(tc.cfg)
			switch {
			case len(tc.want) == 0 && err != nil:
				t.Errorf("New() = %v, want nil", err)
			case len(tc.want) > 0 && (err == nil || !containsAll(err.Error(), tc.want)):
				t.Errorf("New() = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestTLSServesHTTP2AndGRPC: with both pairs configured, events published
// over gRPC with TLS reach SSE subscribers over HTTP/2 — many streams on one
// connection, the point of HTTP/2 for browsers — and over HTTP/1.1.
func TestTLSServesHTTP2AndGRPC(t *testing.T) {
	t.Parallel()
	ca := newPKICA(t, "test CA")
	httpPair := newPKIPairFiles(t, ca.serverCert(t, "bridge http"))
	grpcPair := newPKIPairFiles(t, ca.serverCert(t, "bridge grpc"))
	b := startTLSBridge(t, bridge.Config{TLSCert: httpPair.cert, TLSKey: httpPair.key, GRPCTLSCert: grpcPair.cert, GRPCTLSKey: grpcPair.key})

	client, dials := h2Client(t, ca.pool(), false)
	// More than the six connections per origin a browser allows over HTTP/1.1.
	var subs []*sseClient
	for range 10 {
		subs = append(subs, subscribeVia(t, client, b.baseURL, "stream=tls.orders", 2))
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("10 subscriptions dialled %d connections, want 1", n)
	}
	h1, _ := h2Client(t, ca.pool(), true)
	subs = append(subs, subscribeVia(t, h1, b.baseURL, "stream=tls.orders", 1))

	pub := dialGRPC(t, b.grpcAddr, ca.pool(), nil)
	for i := range 3 {
		if _, err := tryPublish(t, pub, "tls.orders", "order "+strconv.Itoa(i)); err != nil {
			t.Fatalf("Publish over TLS = %v", err)
		}
	}
	for i, s := range subs {
		for j := range 3 {
			if got, want := s.next(t).Data, `"order `+strconv.Itoa(j)+`"`; got != want {
				t.Errorf("subscriber %d, event %d: data %s, want %s", i, j, got, want)
			}
		}
	}

	// Plaintext to a TLS port gets net/http's 400, not a hang.
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.httpAddr+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("plain HTTP to the TLS port: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("plain HTTP to the TLS port = %d, want 400", resp.StatusCode)
	}
}

// TestTLSGRPCClientCertificates: with a client CA, a publisher presenting a
// certificate the CA signed connects, one signed by another CA fails the
// handshake, and one with no certificate connects (it authenticates some
// other way). Reloading the CA file changes who is accepted.
func TestTLSGRPCClientCertificates(t *testing.T) {
	t.Parallel()
	serverCA, clientCA, otherCA := newPKICA(t, "server CA"), newPKICA(t, "client CA"), newPKICA(t, "other CA")
	pair := newPKIPairFiles(t, serverCA.serverCert(t, "bridge"))
	caFile := pkiWriteFile(t, t.TempDir(), "clients.pem", clientCA.certPEM)
	b := startTLSBridge(t, bridge.Config{GRPCTLSCert: pair.cert, GRPCTLSKey: pair.key, GRPCClientCA: caFile, TLSReloadInterval: -1})

	signed := clientCA.clientCert(t, "spiffe-less publisher").tlsCertificate(t)
	foreign := otherCA.clientCert(t, "stranger").tlsCertificate(t)
	check := func(t *testing.T, name string, cert *tls.Certificate, want codes.Code) {
		t.Helper()
		_, err := tryPublish(t, dialGRPC(t, b.grpcAddr, serverCA.pool(), cert), "mtls", name)
		if status.Code(err) != want {
			t.Errorf("Publish with %s = %v, want %v", name, err, want)
		}
	}
	check(t, "a certificate from the client CA", signed, codes.OK)
	check(t, "a certificate from another CA", foreign, codes.Unavailable)
	check(t, "no certificate", nil, codes.OK)
	if err := tlsHandshakeWithCert(t, b.grpcAddr, serverCA.pool(), foreign); err == nil {
		t.Errorf("TLS handshake with a certificate from another CA succeeded, want it refused")
	}
	if err := tlsHandshakeWithCert(t, b.grpcAddr, serverCA.pool(), signed); err != nil {
		t.Errorf("TLS handshake with a certificate from the client CA = %v, want success", err)
	}

	// The CA file now trusts the other CA only: new connections follow it.
	pkiReplaceFile(t, caFile, otherCA.certPEM)
	if err := b.srv.ReloadTLS(); err != nil {
		t.Fatalf("ReloadTLS() = %v", err)
	}
	check(t, "a certificate from the new client CA", foreign, codes.OK)
	check(t, "a certificate from the CA no longer trusted", signed, codes.Unavailable)
}

// tlsHandshakeWithCert handshakes with the gRPC listener presenting cert,
// and returns the server's verdict: with TLS 1.3 the client learns that its
// certificate was refused on its first read, from the server's alert.
func tlsHandshakeWithCert(t *testing.T, addr string, roots *x509.CertPool, cert *tls.Certificate) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{RootCAs: roots, GetClientCertificate: presentAlways(cert), NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	// A refused client gets an alert; an accepted one the server's HTTP/2
	// SETTINGS frame.
	_ = conn.SetReadDeadline(time.Now().Add(waitLimit))
	_, err = conn.Read(make([]byte, 1))
	return err
}

// TestTLSStalledHTTP2ReaderIsDropped: a subscriber that stops reading its
// HTTP/2 stream is dropped by the write deadline (the HTTP/2 server resets
// the stream), while a subscriber on another connection gets every event.
// The queue is larger than the burst, so only the deadline can drop it.
func TestTLSStalledHTTP2ReaderIsDropped(t *testing.T) {
	t.Parallel()
	ca := newPKICA(t, "test CA")
	pair := newPKIPairFiles(t, ca.serverCert(t, "bridge"))
	grpcPair := newPKIPairFiles(t, ca.serverCert(t, "bridge grpc"))
	b := startTLSBridge(t, bridge.Config{TLSCert: pair.cert, TLSKey: pair.key, GRPCTLSCert: grpcPair.cert, GRPCTLSKey: grpcPair.key, WriteTimeout: time.Second, QueueSize: 4096})

	// The staller's flow-control windows are the smallest HTTP/2 allows, so
	// the server's writes to it stop after 64 KiB; it never reads its body.
	var protocols http.Protocols
	protocols.SetHTTP2(true)
	stallTr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.pool(), MinVersion: tls.VersionTLS12},
		Protocols:       &protocols,
		HTTP2:           &http.HTTP2Config{MaxReceiveBufferPerStream: 64 << 10, MaxReceiveBufferPerConnection: 64 << 10},
	}
	t.Cleanup(stallTr.CloseIdleConnections)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, b.baseURL+"/events?stream=stall", nil)
	if err != nil {
		t.Fatal(err)
	}
	stalled, err := (&http.Client{Transport: stallTr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stalled.Body.Close() }()
	if stalled.StatusCode != http.StatusOK || stalled.ProtoMajor != 2 {
		t.Fatalf("stalled subscriber: %d over %s, want 200 over HTTP/2", stalled.StatusCode, stalled.Proto)
	}
	client, _ := h2Client(t, ca.pool(), false)
	healthy := subscribeVia(t, client, b.baseURL, "stream=stall", 2)

	const events = 64
	payload := strings.Repeat("x", 16<<10) // 64 × 16 KiB: far past the staller's window
	pub := dialGRPC(t, b.grpcAddr, ca.pool(), nil)
	for range events {
		if _, err := tryPublish(t, pub, "stall", payload); err != nil {
			t.Fatal(err)
		}
	}
	for i := range events {
		if ev := healthy.next(t); len(ev.Data) != len(payload)+2 {
			t.Fatalf("healthy subscriber, event %d: %d bytes, want %d", i, len(ev.Data), len(payload)+2)
		}
	}
	// The staller's connection is dropped for its write deadline; what it
	// buffered before ends in a stream error, not in all the events.
	deadline := time.Now().Add(waitLimit)
	for scrapeVia(t, client, b.baseURL)[`bridge_sse_evictions_total{reason="write_deadline"}`] != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("stalled HTTP/2 subscriber not evicted for its write deadline within %v", waitLimit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := 0
	var readErr error
	for _, err := range gosse.Read(stalled.Body, &gosse.ReadConfig{MaxEventSize: 1 << 20}) {
		if err != nil {
			readErr = err
			break
		}
		got++
	}
	if got >= events || readErr == nil {
		t.Errorf("stalled subscriber read %d events then %v, want fewer than %d then a stream error", got, readErr, events)
	}
}

// scrapeVia reads /metrics with client, returning each sample by its name
// and labels.
func scrapeVia(t *testing.T, client *http.Client, baseURL string) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	samples := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			samples[name] = v
		}
	}
	return samples
}

// TestTLSShutdownLeaksNothing: with TLS on both listeners, HTTP/2 streams
// open and the poll running, Serve stops every goroutine it started.
func TestTLSShutdownLeaksNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	ca := newPKICA(t, "test CA")
	pair := newPKIPairFiles(t, ca.serverCert(t, "bridge"))
	caFile := pkiWriteFile(t, t.TempDir(), "clients.pem", ca.certPEM)
	b := startTLSBridge(t, bridge.Config{TLSCert: pair.cert, TLSKey: pair.key, GRPCTLSCert: pair.cert, GRPCTLSKey: pair.key, GRPCClientCA: caFile, TLSReloadInterval: 10 * time.Millisecond})

	client, _ := h2Client(t, ca.pool(), false)
	subs := []*sseClient{
		subscribeVia(t, client, b.baseURL, "stream=leak", 2),
		subscribeVia(t, client, b.baseURL, "stream=leak", 2),
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	cfg := &tls.Config{RootCAs: ca.pool(), Certificates: []tls.Certificate{*ca.clientCert(t, "publisher").tlsCertificate(t)}, MinVersion: tls.VersionTLS12}
	conn, err := grpc.NewClient(b.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bridgev1.NewBridgeServiceClient(conn).Publish(ctx, jsonReq(t, "leak", "one")); err != nil {
		t.Fatalf("Publish = %v", err)
	}
	for _, s := range subs {
		if got := s.next(t).Data; got != `"one"` {
			t.Errorf("data %s, want \"one\"", got)
		}
	}
	if err := b.srv.ReloadTLS(); err != nil {
		t.Fatalf("ReloadTLS() = %v", err)
	}

	_ = conn.Close()
	if err := b.stop(); err != nil {
		t.Fatalf("Serve() = %v, want nil", err)
	}
	for i, s := range subs {
		select {
		case _, ok := <-s.events:
			if ok {
				t.Errorf("subscriber %d: an event after shutdown, want the stream to end", i)
			}
		case <-time.After(waitLimit):
			t.Errorf("subscriber %d: stream still open after shutdown", i)
		}
		s.close()
	}
	client.CloseIdleConnections()
}
