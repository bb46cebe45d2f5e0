package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sse-bridge/bridge/internal/bridge"
)

// publishLinesCLI runs `bridge publish args` with stdin, and returns its
// output lines and error; it skips the test when the bridge has no
// PublishStream.
func publishLinesCLI(t *testing.T, stdin string, args ...string) ([]string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err := runPublish(ctx, args, strings.NewReader(stdin), &out, &errOut)
	if status.Code(err) == codes.Unimplemented {
		t.Skipf("needs the bridge's PublishStream, not implemented by internal/bridge yet: %v", err)
	}
	return strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"), err
}

// isID reports whether s is an event id, as publish prints it.
func isID(s string) bool {
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

// TestPublishLinesOfPayloads: with --stream, each line of stdin is a
// payload (JSON, or a typed event); one output line per event, in order;
// a line that is not JSON gets its line number and exit status 1, and the
// others are published all the same, in order.
func TestPublishLinesOfPayloads(t *testing.T) {
	t.Parallel()
	addr, url, _ := startBridge(t, bridge.Config{})
	stdin := `{"n":1}

2
{nope
{"@type":"type.googleapis.com/shop.v1.OrderCreated","orderId":"o-1"}
"last"
`
	lines, err := publishLinesCLI(t, stdin, "--addr", addr, "--stream", "nd", "--type", "row")
	if exitCode(err) != exitUsage || err == nil || !strings.Contains(err.Error(), "1 of 5 lines not events") {
		t.Errorf("publish = %v (exit %d), want exit %d saying 1 of 5 lines are not events", err, exitCode(err), exitUsage)
	}
	if len(lines) != 5 {
		t.Fatalf("publish printed %q, want 5 lines (the blank line skipped)", lines)
	}
	for i, l := range lines {
		if i == 2 {
			if !strings.HasPrefix(l, "line 4: not JSON") {
				t.Errorf("output line 3 = %q, want line 4 reported as not JSON", l)
			}
			continue
		}
		if !isID(l) {
			t.Errorf("output line %d = %q, want an id", i+1, l)
		}
	}
	first, _ := strconv.ParseUint(lines[0], 10, 64)
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := runTail(ctx, []string{"--url", url, "--stream", "nd", "--last-event-id", strconv.FormatUint(first-1, 10), "--count", "4"}, &out, &errOut); err != nil {
		t.Fatalf("tail = %v (%s)", err, errOut.String())
	}
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{lines[0] + "\trow\t{\"n\":1}", lines[1] + "\trow\t2", lines[3] + "\trow\t{\"orderId\":\"o-1\"", lines[4] + "\trow\t\"last\""}
	for i, w := range want {
		if i >= len(got) || !strings.HasPrefix(got[i], w) {
			t.Errorf("tail printed %q, want line %d to start with %q", got, i+1, w)
		}
	}
}

// TestPublishLinesOfRequests: without --stream, each line is a
// PublishRequest in JSON: its own stream, type and idempotency key; a key
// seen again is printed as a duplicate with the first id; a type only the
// bridge knows is resolved through its reflection; refusals get their
// line number and exit status 3.
func TestPublishLinesOfRequests(t *testing.T) {
	t.Parallel()
	addr, _, _ := startBridge(t, bridge.Config{DescriptorSets: []string{"../../examples/acme/acme.binpb"}})
	stdin := strings.Join([]string{
		`{"stream":"a","json":1}`,
		`{"stream":"b","type":"note","json":{"x":1},"idempotencyKey":"k-1"}`,
		`{"stream":"b","type":"note","json":{"x":1},"idempotencyKey":"k-1"}`,
		`{"stream":"bad name","json":1}`,
		`{"json":1}`,
		`{"stream":"billing","event":{"@type":"type.googleapis.com/acme.billing.v1.InvoicePaid","invoiceId":"inv-1"}}`,
		`{"stream":"a","event":{"@type":"type.googleapis.com/acme.v9.Nope"}}`,
	}, "\n")
	lines, err := publishLinesCLI(t, stdin, "--addr", addr)
	if exitCode(err) != exitRefused || err == nil || !strings.Contains(err.Error(), "1 of 7 lines refused") {
		t.Errorf("publish = %v (exit %d), want exit %d saying 1 of 7 lines were refused", err, exitCode(err), exitRefused)
	}
	if len(lines) != 7 {
		t.Fatalf("publish printed %q, want 7 lines", lines)
	}
	for i, check := range []func(string) bool{
		isID,
		isID,
		func(l string) bool { return l == lines[1]+" duplicate" },
		func(l string) bool { return strings.HasPrefix(l, "line 4: refused: InvalidArgument") },
		func(l string) bool { return strings.HasPrefix(l, "line 5: no \"stream\"") },
		isID,
		func(l string) bool { return strings.HasPrefix(l, "line 7: ") && strings.Contains(l, "acme.v9.Nope") },
	} {
		if !check(lines[i]) {
			t.Errorf("output line %d = %q; all: %q", i+1, lines[i], lines)
		}
	}
}

// TestPublishLinesBridgeDown: with no bridge to reach, the lines are
// reported unpublished, and the exit status is 2.
func TestPublishLinesBridgeDown(t *testing.T) {
	t.Parallel()
	_, err := publishLinesCLI(t, "1\n2\n", "--addr", "127.0.0.1:1", "--timeout", "5s", "--stream", "s")
	if exitCode(err) != exitConnect {
		t.Errorf("publish = %v (exit %d), want exit %d", err, exitCode(err), exitConnect)
	}
}
