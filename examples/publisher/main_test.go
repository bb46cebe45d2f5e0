package main

import (
	"bytes"
	"context"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sse-bridge/bridge/internal/bridge"
)

// TestRun publishes with the example against a real bridge on loopback:
// one line with an id per event.
func TestRun(t *testing.T) {
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- bridge.Serve(ctx, bridge.Config{}, gl, hl) }() // ends with ctx
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	}()

	var out bytes.Buffer
	runCtx, stop := context.WithTimeout(t.Context(), 30*time.Second)
	defer stop()
	if err := run(runCtx, []string{"-addr", gl.Addr().String(), "-n", "3"}, &out); err != nil {
		t.Fatalf("run = %v; printed %q", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	line := regexp.MustCompile(`^event \d: id \d+$`)
	if len(lines) != 3 {
		t.Fatalf("printed %q, want 3 lines", out.String())
	}
	for _, l := range lines {
		if !line.MatchString(l) {
			t.Errorf("line %q, want event N: id ID", l)
		}
	}
}
