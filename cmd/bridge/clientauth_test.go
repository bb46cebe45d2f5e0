package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
	"github.com/sse-bridge/bridge/internal/testpki"
)

const cliToken = "cli-token-7d2e41"

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// publishersFile grants the publisher of cliToken the streams cli and cli.>.
func publishersFile(t *testing.T) string {
	t.Helper()
	sum := sha256.Sum256([]byte(cliToken))
	return writeTemp(t, "publishers.json", `{"publishers": [{"name": "cli", "token_sha256": "`+hex.EncodeToString(sum[:])+`", "streams": ["cli", "cli.>"]}]}`)
}

// TestPublishWithToken: against a bridge with publishers, bridge publish
// succeeds with the token (from the flag or a file) and, without it, exits 3
// saying how to give one.
func TestPublishWithToken(t *testing.T) {
	t.Parallel()
	addr, _, _ := startBridge(t, bridge.Config{Publishers: publishersFile(t), DescriptorSets: []string{"../../examples/acme/acme.binpb"}})
	tokenFile := writeTemp(t, "token", cliToken+"\n")
	typed := `{"@type":"type.googleapis.com/acme.billing.v1.InvoicePaid","invoiceId":"inv-1"}` // resolved through reflection
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  []string
		not  string
	}{
		{name: "token flag", args: []string{"--token", cliToken, "--stream", "cli", `1`}, code: exitOK},
		{name: "token file", args: []string{"--token-file", tokenFile, "--stream", "cli.a", `1`}, code: exitOK},
		{name: "typed event through reflection", args: []string{"--token", cliToken, "--stream", "cli", typed}, code: exitOK},
		{name: "no token", args: []string{"--stream", "cli", `1`}, code: exitRefused,
			msg: []string{"Unauthenticated", "no credential", "--token-file, --token or BRIDGE_TOKEN"}},
		{name: "no token, reflection refused", args: []string{"--stream", "cli", typed}, code: exitRefused, msg: []string{"Unauthenticated", "--token"}},
		{name: "wrong token", args: []string{"--token", "nope", "--stream", "cli", `1`}, code: exitRefused,
			msg: []string{"Unauthenticated", "not a publisher's token"}, not: "BRIDGE_TOKEN"},
		{name: "stream not granted", args: []string{"--token", cliToken, "--stream", "orders", `1`}, code: exitRefused,
			msg: []string{"PermissionDenied", `"orders"`}},
		{name: "token flag and file", args: []string{"--token", cliToken, "--token-file", tokenFile, "--stream", "cli", `1`}, code: exitUsage,
			msg: []string{"not both"}},
		{name: "empty token file", args: []string{"--token-file", writeTemp(t, "empty", "\n"), "--stream", "cli", `1`}, code: exitUsage,
			msg: []string{"is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := publishCLI(t, append([]string{"--addr", addr}, tc.args...)...)
			if got := exitCode(err); got != tc.code {
				t.Fatalf("publish %q = %v (exit %d), want exit %d", tc.args, err, got, tc.code)
			}
			if tc.code == exitOK {
				if _, err := strconv.ParseUint(out, 10, 64); err != nil {
					t.Errorf("publish printed %q, want an id", out)
				}
				return
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("publish error %q, want it to mention %q", err, m)
				}
			}
			if tc.not != "" && strings.Contains(err.Error(), tc.not) {
				t.Errorf("publish error %q should not mention %q", err, tc.not)
			}
		})
	}
}

// TestPublishTokenFromEnvironment: BRIDGE_TOKEN is the token when no flag
// gives one. Not parallel: it sets the environment.
func TestPublishTokenFromEnvironment(t *testing.T) {
	addr, _, _ := startBridge(t, bridge.Config{Publishers: publishersFile(t)})
	t.Setenv("BRIDGE_TOKEN", cliToken)
	if _, err := publishCLI(t, "--addr", addr, "--stream", "cli", `1`); err != nil {
		t.Errorf("publish with BRIDGE_TOKEN = %v, want success", err)
	}
	if _, err := publishCLI(t, "--addr", addr, "--token", "nope", "--stream", "cli", `1`); exitCode(err) != exitRefused {
		t.Errorf("publish with --token nope = %v, want the flag to win over BRIDGE_TOKEN", err)
	}
}

// TestTailWithToken: bridge tail sends its token as Authorization: Bearer.
func TestTailWithToken(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef-cli-secret")
	addr, url, _ := startBridge(t, bridge.Config{JWTKey: writeTemp(t, "jwt.key", string(secret))})
	id, err := publishCLI(t, "--addr", addr, "--stream", "private", `"hello"`) // loopback: protected mode lets it in
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.ParseUint(id, 10, 64)
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"exp": time.Now().Add(time.Hour).Unix(), "bridge": map[string]any{"subscribe": []string{"private"}},
	}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--url", url, "--stream", "private", "--last-event-id", strconv.FormatUint(n-1, 10), "--count", "1"}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	if err := runTail(ctx, append(args, "--token", token), &out, &errOut); err != nil {
		t.Fatalf("tail --token = %v (%s)", err, errOut.String())
	}
	if want := id + "\tmessage\t\"hello\"\n"; out.String() != want {
		t.Errorf("tail printed %q, want %q", out.String(), want)
	}
	err = runTail(ctx, args, &bytes.Buffer{}, &bytes.Buffer{})
	if exitCode(err) != exitRefused || !strings.Contains(err.Error(), "401") {
		t.Errorf("tail without a token = %v (exit %d), want exit %d with the 401", err, exitCode(err), exitRefused)
	}
}

// tlsFixture is a CA, a server certificate for 127.0.0.1, and a client
// certificate, written to files for the flags.
type tlsFixture struct {
	ca               *testpki.CA
	server           testpki.Leaf
	caFile, crt, key string
}

func newTLSFixture(t *testing.T) tlsFixture {
	t.Helper()
	ca := testpki.NewCA(t, "bridge test")
	client := ca.Client(t, testpki.Names{URIs: []string{"spiffe://acme.example/cli"}})
	return tlsFixture{
		ca:     ca,
		server: ca.Server(t, testpki.Names{CommonName: "bridge", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}),
		caFile: writeTemp(t, "ca.pem", string(ca.PEM)),
		crt:    writeTemp(t, "client.pem", string(client.CertPEM)),
		key:    writeTemp(t, "client-key.pem", string(client.KeyPEM)),
	}
}

func (f tlsFixture) serverTLS() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{f.server.TLS},
		ClientCAs:    f.ca.Pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
}

// checkingService answers Publish only for a call with the client
// certificate and the token the test gives.
type checkingService struct {
	bridgev1.UnimplementedBridgeServiceServer
}

func (checkingService) Publish(ctx context.Context, _ *bridgev1.PublishRequest) (*bridgev1.PublishResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+cliToken {
		return nil, status.Errorf(codes.Unauthenticated, "authorization %q", got)
	}
	p, _ := peer.FromContext(ctx)
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || info.State.VerifiedChains[0][0].URIs[0].String() != "spiffe://acme.example/cli" {
		return nil, status.Error(codes.Unauthenticated, "no verified client certificate")
	}
	return &bridgev1.PublishResponse{Id: 42}, nil
}

// TestPublishOverTLS: --ca, --cert and --key make bridge publish connect with
// TLS and present the client certificate, with the token on top.
func TestPublishOverTLS(t *testing.T) {
	t.Parallel()
	f := newTLSFixture(t)
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(f.serverTLS())))
	bridgev1.RegisterBridgeServiceServer(gs, checkingService{})
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
	addr := lis.Addr().String()
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"mTLS and token", []string{"--ca", f.caFile, "--cert", f.crt, "--key", f.key, "--token", cliToken}, exitOK, ""},
		{"server not trusted", []string{"--cert", f.crt, "--key", f.key, "--token", cliToken}, exitConnect, "Unavailable"},
		{"plaintext to a TLS server", []string{"--token", cliToken}, exitConnect, "seems to speak TLS: connect with --ca FILE"},
		{"cert without key", []string{"--ca", f.caFile, "--cert", f.crt}, exitUsage, "--cert and --key go together"},
		{"CA file missing", []string{"--ca", filepath.Join(t.TempDir(), "nope.pem")}, exitUsage, "--ca"},
		{"CA file not PEM", []string{"--ca", writeTemp(t, "bad.pem", "not a certificate")}, exitUsage, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := publishCLI(t, append(append([]string{"--addr", addr, "--timeout", "5s"}, tc.args...), "--stream", "s", `1`)...)
			if got := exitCode(err); got != tc.code || (err != nil && !strings.Contains(err.Error(), tc.msg)) {
				t.Fatalf("publish %q = %v (exit %d), want exit %d mentioning %q", tc.args, err, got, tc.code, tc.msg)
			}
			if tc.code == exitOK && out != "42" {
				t.Errorf("publish printed %q, want 42", out)
			}
		})
	}
}

// TestTailOverTLS: with --ca, --cert and --key, bridge tail reads https
// (even from an http:// URL) with its client certificate and token.
func TestTailOverTLS(t *testing.T) {
	t.Parallel()
	f := newTLSFixture(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || r.Header.Get("Authorization") != "Bearer "+cliToken {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "id: 7\nevent: greeting\ndata: {\"to\":\""+r.URL.Query().Get("stream")+"\"}\n\n")
	}))
	srv.TLS = f.serverTLS()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	plainURL := "http://" + strings.TrimPrefix(srv.URL, "https://")

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	args := []string{"--url", plainURL, "--stream", "tls", "--count", "1", "--ca", f.caFile, "--cert", f.crt, "--key", f.key, "--token", cliToken}
	if err := runTail(ctx, args, &out, &errOut); err != nil {
		t.Fatalf("tail over TLS = %v (%s)", err, errOut.String())
	}
	if want := "7\tgreeting\t{\"to\":\"tls\"}\n"; out.String() != want {
		t.Errorf("tail printed %q, want %q", out.String(), want)
	}
	err := runTail(ctx, args[:len(args)-2], &bytes.Buffer{}, &bytes.Buffer{})
	if exitCode(err) != exitRefused || !strings.Contains(err.Error(), "401") {
		t.Errorf("tail over TLS without the token = %v (exit %d), want exit %d with the 401", err, exitCode(err), exitRefused)
	}
}

func TestWarnPlaintext(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		host string
		warn bool
	}{
		{"localhost:50051", false},
		{"127.0.0.1:50051", false},
		{"[::1]:50051", false},
		{"127.0.0.1", false},
		{"bridge.internal:50051", true},
		{"10.0.0.7:8080", true},
	} {
		var b strings.Builder
		warnPlaintext(&b, tc.host)
		if got := b.Len() > 0; got != tc.warn {
			t.Errorf("warnPlaintext(%q) wrote %q, want a warning: %v", tc.host, b.String(), tc.warn)
		}
	}
}

func TestHashToken(t *testing.T) {
	t.Parallel()
	// sha256("test"), as printf %s test | sha256sum prints it.
	const testSum = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		out   string
		code  int
		msg   string
	}{
		{name: "token", stdin: "test", out: testSum + "\n"},
		{name: "trailing newline ignored", stdin: "test\n", out: testSum + "\n"},
		{name: "CRLF ignored", stdin: "test\r\n", out: testSum + "\n"},
		{name: "empty", stdin: "\n", code: exitUsage, msg: "no token"},
		{name: "token as argument", args: []string{"test"}, code: exitUsage, msg: "stdin"},
		{name: "Bearer prefix", stdin: "Bearer test", code: exitUsage, msg: "white space"},
		{name: "too long", stdin: strings.Repeat("x", maxToken+1), code: exitUsage, msg: "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			err := runHashToken(tc.args, strings.NewReader(tc.stdin), &out)
			if got := exitCode(err); got != tc.code || (err != nil && !strings.Contains(err.Error(), tc.msg)) {
				t.Fatalf("hash-token = %v (exit %d), want exit %d mentioning %q", err, got, tc.code, tc.msg)
			}
			if out.String() != tc.out {
				t.Errorf("hash-token printed %q, want %q", out.String(), tc.out)
			}
		})
	}
}

func TestParsePublisherFlags(t *testing.T) {
	t.Parallel()
	env := map[string]string{"BRIDGE_PUBLISHERS": "pubs.json"}
	cfg, err := parseFlags(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
	if err != nil || cfg.Publishers != "pubs.json" || cfg.GRPCInsecure || cfg.PublisherJWT {
		t.Errorf("parseFlags with BRIDGE_PUBLISHERS = %+v, %v", cfg, err)
	}
	cfg, err = parseFlags([]string{"--grpc-insecure"}, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil || !cfg.GRPCInsecure {
		t.Errorf("parseFlags(--grpc-insecure) = %+v, %v", cfg, err)
	}
	cfg, err = parseFlags([]string{"--publisher-jwt", "--jwt-key", "k"}, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil || !cfg.PublisherJWT {
		t.Errorf("parseFlags(--publisher-jwt) = %+v, %v", cfg, err)
	}
	for _, args := range [][]string{
		{"--publisher-jwt"},
		{"--grpc-insecure", "--publishers", "pubs.json"},
	} {
		if _, err := parseFlags(args, func(string) (string, bool) { return "", false }, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) = nil error, want one", args)
		}
	}
	help := serveHelpText()
	for _, want := range []string{"--publishers", "BRIDGE_PUBLISHERS", "--grpc-insecure", "--publisher-jwt", "hash-token"} {
		if !strings.Contains(help, want) {
			t.Errorf("help does not mention %q", want)
		}
	}
}
