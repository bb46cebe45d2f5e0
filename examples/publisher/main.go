// Command publisher publishes a few events to a bridge with the batching
// client of package github.com/sse-bridge/bridge/publisher, as a service
// would, and prints each event's id as the bridge answers.
//
//	go run ./examples/publisher [-addr localhost:50051] [-stream orders] [-n 5]
//
// Watch them arrive with ./bin/bridge tail --stream orders (or the page at
// http://localhost:8080/?stream=orders). A refused event is printed with
// its gRPC status, and the exit status is 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/publisher"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "publisher:", err)
		os.Exit(1)
	}
}

// run publishes n events and writes one line per event to out.
func run(ctx context.Context, args []string, out io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	fs := flag.NewFlagSet("publisher", flag.ContinueOnError)
	addr := fs.String("addr", "localhost:50051", "the bridge's gRPC address")
	stream := fs.String("stream", "orders", "the stream to publish to")
	n := fs.Int("n", 5, "how many events to publish")
	if err := fs.Parse(args); err != nil {
		return err
	}

	// The connection is the caller's: credentials and TLS go here
	// (grpc.WithPerRPCCredentials for a publisher's token).
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	// The defaults: 100 events or 10 ms per call. Its goroutines outlive any
	// one context: Close(ctx) bounds them.
	p, err := publisher.New(conn, publisher.Settings{}) //nolint:contextcheck // see above
	if err != nil {
		return err
	}

	// Publish returns at once: the events go together, in one call.
	results := make([]*publisher.Result, *n)
	for i := range results {
		results[i] = p.Publish(ctx, &bridgev1.PublishRequest{
			Stream: *stream,
			Type:   "order.updated",
			Payload: &bridgev1.PublishRequest_Json{Json: structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
				"order": structpb.NewStringValue(fmt.Sprintf("o-%d", i+1)),
				"at":    structpb.NewStringValue(time.Now().UTC().Format(time.RFC3339Nano)),
			}})},
		})
	}
	var failed error
	for i, r := range results {
		// Get waits for the bridge's answer; a bridge that is down is
		// retried for up to a minute (Settings.RetryTimeout).
		id, duplicate, err := r.Get(ctx)
		switch {
		case err != nil:
			fmt.Fprintf(out, "event %d: %s: %s\n", i+1, status.Code(err), err)
			failed = errors.New("some events were not published")
		case duplicate:
			fmt.Fprintf(out, "event %d: id %d (a duplicate: stored before)\n", i+1, id)
		default:
			fmt.Fprintf(out, "event %d: id %d\n", i+1, id)
		}
	}

	// Close sends whatever is still buffered (nothing here: every Result
	// was waited for) and stops the Publisher's goroutines.
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return errors.Join(failed, p.Close(closeCtx))
}
