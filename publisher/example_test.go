package publisher_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/publisher"
)

// A service publishes order updates to a bridge on localhost (started with
// ./bin/bridge, as the README says). Publish returns at once; Get waits
// for the bridge's answer. (Compiled, not run: it needs a bridge.)
func Example() {
	conn, err := grpc.NewClient("localhost:50051", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = conn.Close() }() // after Close: deferred calls run last first

	p, err := publisher.New(conn, publisher.Settings{MaxEvents: 500, MaxDelay: 5 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil { // sends what is buffered
			log.Print(err)
		}
	}()

	ctx := context.Background()
	var results []*publisher.Result
	for i := range 3 {
		results = append(results, p.Publish(ctx, &bridgev1.PublishRequest{
			Stream:  "orders",
			Payload: &bridgev1.PublishRequest_Json{Json: structpb.NewNumberValue(float64(i))},
		}))
	}
	for _, r := range results {
		id, duplicate, err := r.Get(ctx)
		if err != nil {
			log.Printf("not published: %v", err) // status.Code(err) says why
			continue
		}
		fmt.Println(id, duplicate)
	}
}
