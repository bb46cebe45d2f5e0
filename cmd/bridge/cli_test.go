package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sse-bridge/bridge/internal/bridge"
	"github.com/sse-bridge/bridge/internal/testpki"
)

// startBridge serves a bridge on loopback for the duration of the test and
// returns its gRPC address and HTTP base URL.
func startBridge(t *testing.T, cfg bridge.Config) (grpcAddr, baseURL string, stop func()) {
	t.Helper()
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- bridge.Serve(ctx, cfg, gl, hl) }()
	stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	}
	t.Cleanup(func() {
		if ctx.Err() == nil {
			stop()
		}
	})
	return gl.Addr().String(), "http://" + hl.Addr().String(), stop
}

func publishCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := runPublish(t.Context(), args, strings.NewReader(""), &out, &errOut)
	return strings.TrimSpace(out.String()), err
}

func TestPublishAndTail(t *testing.T) {
	t.Parallel()
	addr, url, _ := startBridge(t, bridge.Config{DescriptorSets: []string{"../../examples/acme/acme.binpb"}})
	first, err := publishCLI(t, "--addr", addr, "--stream", "cli", `{"hello":"world"}`)
	if err != nil {
		t.Fatalf("publish json: %v", err)
	}
	if _, err := publishCLI(t, "--addr", addr, "--stream", "cli", `{"@type":"type.googleapis.com/shop.v1.OrderCreated","orderId":"o-1","total":{"amountMinor":"5"}}`); err != nil {
		t.Fatalf("publish compiled-in type: %v", err)
	}
	// A type only the bridge knows (from its descriptor set): resolved
	// through reflection.
	if _, err := publishCLI(t, "--addr", addr, "--stream", "cli", "--type", "paid", `{"@type":"type.googleapis.com/acme.billing.v1.InvoicePaid","invoiceId":"inv-1","paidAt":"2026-11-25T10:00:00Z"}`); err != nil {
		t.Fatalf("publish loaded type: %v", err)
	}
	n, err := strconv.ParseUint(first, 10, 64)
	if err != nil {
		t.Fatalf("publish printed %q, want an id", first)
	}

	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := runTail(ctx, []string{"--url", url, "--stream", "cli", "--last-event-id", strconv.FormatUint(n-1, 10), "--count", "3"}, &out, &errOut); err != nil {
		t.Fatalf("tail = %v (%s)", err, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{first + "\tmessage\t{\"hello\":\"world\"}", "\tshop.v1.OrderCreated\t", "\tpaid\t"}
	if len(lines) != 3 {
		t.Fatalf("tail printed %q, want 3 lines", out.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("tail line %d = %q, want it to contain %q", i, lines[i], w)
		}
	}
	if !strings.Contains(lines[2], `"invoiceId"`) {
		t.Errorf("tail line %q: want the loaded type rendered as JSON", lines[2])
	}
}

func TestCLIErrors(t *testing.T) {
	t.Parallel()
	addr, url, _ := startBridge(t, bridge.Config{})
	dead := "127.0.0.1:1" // nothing listens on port 1
	for _, tc := range []struct {
		name string
		run  func() error
		code int
		msg  string
	}{
		{"publish: no stream", func() error { _, err := publishCLI(t, "--addr", addr, `{}`); return err }, exitUsage, "--stream"},
		{"publish: bad JSON", func() error { _, err := publishCLI(t, "--addr", addr, "--stream", "s", `{nope`); return err }, exitUsage, "not JSON"},
		{"publish: unknown type", func() error {
			_, err := publishCLI(t, "--addr", addr, "--stream", "s", `{"@type":"type.googleapis.com/acme.v9.Nope"}`)
			return err
		}, exitUsage, "acme.v9.Nope"},
		{"publish: refused", func() error { _, err := publishCLI(t, "--addr", addr, "--stream", "bad name", `1`); return err }, exitRefused, "InvalidArgument"},
		{"publish: unreachable", func() error {
			_, err := publishCLI(t, "--addr", dead, "--timeout", "2s", "--stream", "s", `1`)
			return err
		}, exitConnect, dead},
		{"publish: over the payload limit", func() error {
			_, err := publishCLI(t, "--addr", dead, "--max-payload", "10", "--stream", "s", `{"hello": "world, at length"}`)
			return err // refused before any connection: the address is dead
		}, exitUsage, "the limit is 10 (--max-payload"},
		{"publish: TLS to a plaintext bridge", func() error {
			ca := writeTemp(t, "ca.pem", string(testpki.NewCA(t, "bridge test").PEM))
			_, err := publishCLI(t, "--addr", addr, "--ca", ca, "--timeout", "5s", "--stream", "s", `1`)
			return err
		}, exitConnect, "seems to speak plaintext gRPC: drop --ca"},
		{"tail: no stream", func() error { return runTail(t.Context(), []string{"--url", url}, &bytes.Buffer{}, &bytes.Buffer{}) }, exitUsage, "--stream"},
		{"tail: bad url", func() error {
			return runTail(t.Context(), []string{"--url", "ftp://x", "--stream", "s"}, &bytes.Buffer{}, &bytes.Buffer{})
		}, exitUsage, "base URL"},
		{"tail: refused", func() error {
			return runTail(t.Context(), []string{"--url", url, "--stream", "bad name"}, &bytes.Buffer{}, &bytes.Buffer{})
		}, exitRefused, "400"},
		{"tail: unreachable", func() error {
			return runTail(t.Context(), []string{"--url", "http://" + dead, "--stream", "s"}, &bytes.Buffer{}, &bytes.Buffer{})
		}, exitConnect, "connect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.run()
			if exitCode(err) != tc.code || err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %v (exit %d), want exit %d mentioning %q", err, exitCode(err), tc.code, tc.msg)
			}
		})
	}
}

// TestTailExitsWhenStreamEnds: with --reconnect=false, a stream the bridge
// ends (here: it shuts down) is exit status 4.
func TestTailExitsWhenStreamEnds(t *testing.T) {
	t.Parallel()
	addr, url, stop := startBridge(t, bridge.Config{})
	id, err := publishCLI(t, "--addr", addr, "--stream", "end", `"x"`)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.ParseUint(id, 10, 64)
	done := make(chan error, 1)
	pr, pw := io.Pipe()
	go func() {
		err := runTail(t.Context(), []string{"--url", url, "--stream", "end", "--reconnect=false", "--last-event-id", strconv.FormatUint(n-1, 10)}, pw, &bytes.Buffer{})
		_ = pw.Close()
		done <- err
	}()
	// Once the replayed event is printed, the subscription is up.
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, id) {
		t.Fatalf("tail printed %q, %v; want the event %s", line, err, id)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	stop()
	if err := <-done; exitCode(err) != exitStreamEnd {
		t.Errorf("tail = %v (exit %d), want exit %d", err, exitCode(err), exitStreamEnd)
	}
}

// TestTailRawPrintsTheFramesAsSent: --raw prints the stream byte for byte
// as curl -N would (retry:, fields in the bridge's order), counting only
// frames with data.
func TestTailRawPrintsTheFramesAsSent(t *testing.T) {
	t.Parallel()
	addr, url, _ := startBridge(t, bridge.Config{})
	first, err := publishCLI(t, "--addr", addr, "--stream", "raw", `{"n":1}`)
	if err != nil {
		t.Fatal(err)
	}
	second, err := publishCLI(t, "--addr", addr, "--stream", "raw", "--type", "note", `{"n":2}`)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(first, 10, 64)
	if err != nil {
		t.Fatalf("publish printed %q, want an id", first)
	}
	after := strconv.FormatUint(n-1, 10)

	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := runTail(ctx, []string{"--url", url, "--stream", "raw", "--last-event-id", after, "--count", "2", "--raw"}, &out, &errOut); err != nil {
		t.Fatalf("tail --raw = %v (%s)", err, errOut.String())
	}
	// What the bridge sends, read with a plain HTTP client.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/events?stream=raw", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Last-Event-ID", after)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	want := make([]byte, out.Len())
	if _, err := io.ReadFull(resp.Body, want); err != nil {
		t.Fatalf("read %d bytes of the stream: %v", len(want), err)
	}
	got := out.String()
	// The retry: value is jittered per connection; everything else is the same.
	retry := regexp.MustCompile(`(?m)^retry: \d+$`)
	if g, w := retry.ReplaceAllString(got, "retry: N"), retry.ReplaceAllString(string(want), "retry: N"); g != w {
		t.Errorf("tail --raw printed\n%q\nthe bridge sent\n%q", g, w)
	}
	for _, part := range []string{"retry: ", "id: " + first + "\ndata: {\"n\":1}\n\n", "id: " + second + "\ndata: {\"n\":2}\nevent: note\n\n"} {
		if !strings.Contains(got, part) {
			t.Errorf("tail --raw printed %q, want it to contain %q", got, part)
		}
	}
}
