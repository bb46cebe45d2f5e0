// Command baseline serves the plain r3labs/sse/v2 server that the load tool
// (cmd/bridge-load) compares the bridge with: GET /events?stream=X and
// POST /publish?stream=X. It is deliberately naive; see package
// internal/baseline.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sse-bridge/bridge/internal/baseline"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("baseline", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8090", "HTTP listen address: /events and /publish")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return serve(ctx, lis)
}

// serve runs the baseline on lis until ctx ends. Streams never end on their
// own, so shutdown closes the connections instead of waiting for them.
func serve(ctx context.Context, lis net.Listener) error {
	b := baseline.New()
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }() // ends with Close below
	fmt.Fprintln(os.Stderr, "baseline: serving on", lis.Addr())
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	_ = srv.Close()
	if err == nil {
		err = <-errc
	}
	b.Close()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
