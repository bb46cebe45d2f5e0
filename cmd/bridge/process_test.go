package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// processLimit bounds each wait on the bridge process: a hang fails the test.
const processLimit = 30 * time.Second

// bridgeProcess is the real binary, built by the test and run on loopback.
type bridgeProcess struct {
	cmd      *exec.Cmd
	grpcAddr string
	baseURL  string
	exited   chan struct{} // closed when the process has exited
	err      error         // its exit status, once exited is closed
}

func buildBinary(t *testing.T) string {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("signals: POSIX only")
	}
	bin := filepath.Join(t.TempDir(), "bridge")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func startProcess(t *testing.T, bin string, args ...string) *bridgeProcess {
	t.Helper()
	p := &bridgeProcess{grpcAddr: freeAddr(t), exited: make(chan struct{})}
	httpAddr := freeAddr(t)
	p.baseURL = "http://" + httpAddr
	p.cmd = exec.Command(bin, append([]string{"--grpc-addr", p.grpcAddr, "--http-addr", httpAddr}, args...)...)
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill() // an error: it has exited already
		<-p.exited
	})
	// Ready once /readyz answers 200.
	deadline := time.Now().Add(processLimit)
	for p.status(t, "/readyz") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("bridge not ready within %v", processLimit)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

// status returns the HTTP status of GET path, 0 when the request fails.
func (p *bridgeProcess) status(t *testing.T, path string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.baseURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestSIGTERMDrainsAndExits: on SIGTERM the bridge reports not ready while it
// drains, ends its SSE streams (so browsers reconnect elsewhere) and exits 0.
func TestSIGTERMDrainsAndExits(t *testing.T) {
	t.Parallel()
	p := startProcess(t, buildBinary(t), "--drain-delay", "1s", "--shutdown-timeout", "5s")

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, p.baseURL+"/events?stream=drain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("subscribe = %d", resp.StatusCode)
	}
	streamEnded := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		streamEnded <- err
	}()

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Readiness flips while the process still serves (the drain delay).
	sawNotReady := false
	for !sawNotReady {
		switch p.status(t, "/readyz") {
		case http.StatusServiceUnavailable:
			sawNotReady = true
		case 0:
			t.Fatalf("the bridge stopped serving before /readyz reported not ready")
		}
	}
	select {
	case err := <-streamEnded:
		if err != nil {
			t.Errorf("SSE stream ended with %v, want a clean end", err)
		}
	case <-time.After(processLimit):
		t.Fatalf("SSE stream still open after SIGTERM")
	}
	select {
	case <-p.exited:
		if p.err != nil {
			t.Errorf("bridge exited with %v, want status 0", p.err)
		}
	case <-time.After(processLimit):
		t.Fatalf("bridge still running after SIGTERM")
	}
}

// TestSIGHUPReloadsDescriptorSets: after the set file changes, SIGHUP makes
// its new types publishable, with no restart, and bridge types --url (the
// schemas of /types, and the TypeScript module) lists them.
func TestSIGHUPReloadsDescriptorSets(t *testing.T) {
	t.Parallel()
	set := filepath.Join(t.TempDir(), "events.binpb")
	// A valid set with no types of its own yet.
	raw, err := proto.Marshal(&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{
		protodesc.ToFileDescriptorProto(timestamppb.File_google_protobuf_timestamp_proto),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(set, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, buildBinary(t), "--descriptor-set", set)
	invoice := `{"@type":"type.googleapis.com/acme.billing.v1.InvoicePaid","invoiceId":"inv-9"}`
	if _, err := publishCLI(t, "--addr", p.grpcAddr, "--stream", "billing", invoice); exitCode(err) != exitUsage || !strings.Contains(err.Error(), "unknown") {
		t.Fatalf("publish before reload = %v, want the type unknown", err)
	}

	listed := func() (schemas, module string) {
		t.Helper()
		var err error
		if schemas, err = typesCLI(t, "--url", p.baseURL); err != nil {
			t.Fatalf("bridge types --url: %v", err)
		}
		if module, err = typesCLI(t, "--format", "ts", "--url", p.baseURL, "--addr", p.grpcAddr); err != nil {
			t.Fatalf("bridge types --format ts --url: %v", err)
		}
		return schemas, module
	}
	if schemas, module := listed(); strings.Contains(schemas, "acme.billing.v1.InvoicePaid") || strings.Contains(module, "acme_billing_v1_InvoicePaid") {
		t.Fatalf("bridge types lists acme before the reload")
	}

	acme, err := os.ReadFile("../../examples/acme/acme.binpb")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(set, acme, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reload is asynchronous to the signal: retry until it took effect.
	deadline := time.Now().Add(processLimit)
	for {
		_, err := publishCLI(t, "--addr", p.grpcAddr, "--stream", "billing", invoice)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish after SIGHUP = %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// /types and bridge types follow the reload.
	schemas, module := listed()
	if !strings.Contains(schemas, `"name": "acme.billing.v1.InvoicePaid"`) || !strings.Contains(module, `"acme.billing.v1.InvoicePaid": acme_billing_v1_InvoicePaid;`) {
		t.Errorf("after SIGHUP, bridge types (--format ts) --url does not list acme.billing.v1.InvoicePaid")
	}
	// The process is still the same one, serving.
	select {
	case <-p.exited:
		t.Fatalf("bridge exited: %v", p.err)
	default:
	}
}

// TestProcessCommandLine: the binary's exit status and output for help, the
// version and a mistake, as main hands them to the process.
func TestProcessCommandLine(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	for _, tc := range []struct {
		args       []string
		code       int
		stdout     string // a part of it
		stderrLine int    // how many lines on stderr
	}{
		{args: []string{"--help"}, code: 0, stdout: "\nListeners:\n  --grpc-addr ADDRESS\n"},
		{args: []string{"publish", "--help"}, code: 0, stdout: "\nCredentials:\n"},
		{args: []string{"--version"}, code: 0, stdout: "bridge "},
		{args: []string{"--htp-addr", "x"}, code: exitCommandLine, stderrLine: 3},
		{args: []string{"tail", "--strem", "x"}, code: exitUsage, stderrLine: 3},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), processLimit)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, tc.args...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || strings.Count(stderr.String(), "\n") != tc.stderrLine {
				t.Errorf("bridge %q: exit %d, stdout %.80q..., stderr %q; want exit %d, stdout with %q, %d lines on stderr",
					tc.args, code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderrLine)
			}
		})
	}
}
