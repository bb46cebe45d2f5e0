// Command publisher publishes acme.billing.v1.InvoicePaid events to a bridge,
// as a service would whose event types are not compiled into the bridge: the
// bridge knows them only from the descriptor set it loads with
// --descriptor-set examples/acme/acme.binpb (see examples/acme/README.md).
//
//	go run ./examples/acme/publisher [-addr localhost:50051] [-stream billing] [-n 1]
//
// It prints one line per event with the id the bridge assigned. A rejected
// publish ends it with the gRPC status code and message, and exit status 1.
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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	billingv1 "github.com/sse-bridge/bridge/gen/acme/billing/v1"
	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
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

// run parses args, then publishes the events and writes one line per event
// to out. Usage and flag errors go to stderr.
func run(ctx context.Context, args []string, out io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	fs := flag.NewFlagSet("publisher", flag.ContinueOnError)
	addr := fs.String("addr", "localhost:50051", "the bridge's gRPC address")
	stream := fs.String("stream", "billing", "the stream to publish to")
	n := fs.Int("n", 1, "how many InvoicePaid events to publish")
	timeout := fs.Duration("timeout", 10*time.Second, "deadline of each Publish call")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *n < 1 {
		return fmt.Errorf("-n is %d, want at least 1", *n)
	}

	// NewClient does not connect yet: a bridge that is not running shows up
	// as UNAVAILABLE from the first Publish.
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", *addr, err)
	}
	defer func() { _ = conn.Close() }()
	client := bridgev1.NewBridgeServiceClient(conn)

	for i := range *n {
		ev := newInvoicePaid(i, time.Now())
		payload, err := anypb.New(ev)
		if err != nil {
			return fmt.Errorf("wrap %s in Any: %w", ev.GetInvoiceId(), err)
		}
		callCtx, cancel := context.WithTimeout(ctx, *timeout)
		res, err := client.Publish(callCtx, &bridgev1.PublishRequest{
			Stream:  *stream,
			Payload: &bridgev1.PublishRequest_Event{Event: payload},
		})
		cancel()
		if err != nil {
			return fmt.Errorf("publish invoice %s to stream %q at %s: %w",
				ev.GetInvoiceId(), *stream, *addr, &statusError{err: err})
		}
		if _, err := fmt.Fprintf(out, "published invoice %s to stream %q: id %d\n",
			ev.GetInvoiceId(), *stream, res.GetId()); err != nil {
			return err
		}
	}
	return nil
}

// statusError shows a gRPC error as "Code: message" instead of grpc-go's
// "rpc error: code = Code desc = message". It unwraps to the original, so
// status.Code and status.FromError still see the status.
type statusError struct {
	err error
}

func (e *statusError) Error() string {
	st := status.Convert(e.err)
	msg := fmt.Sprintf("%s: %s", st.Code(), st.Message())
	if st.Code() == codes.Unavailable {
		msg += " (is the bridge running there?)"
	}
	return msg
}

func (e *statusError) Unwrap() error { return e.err }

// payments are the ways the example invoices are paid, in turn, with how long
// each takes to settle on Acme's account.
var payments = []struct {
	method billingv1.PaymentMethod
	delay  time.Duration
}{
	{billingv1.PaymentMethod_PAYMENT_METHOD_CARD, 48 * time.Hour},
	{billingv1.PaymentMethod_PAYMENT_METHOD_SEPA_DEBIT, 5 * 24 * time.Hour},
	{billingv1.PaymentMethod_PAYMENT_METHOD_BANK_TRANSFER, 90 * time.Minute},
	{billingv1.PaymentMethod_PAYMENT_METHOD_ACCOUNT_CREDIT, 0},
}

// newInvoicePaid returns the i-th (from 0) example event of a run, paid at
// now. The invoice id is unique per second and i.
func newInvoicePaid(i int, now time.Time) *billingv1.InvoicePaid {
	now = now.UTC().Truncate(time.Millisecond)
	pay := payments[i%len(payments)]
	eur := func(minor int64) *billingv1.Money {
		return &billingv1.Money{Currency: "EUR", AmountMinor: minor}
	}
	seats := int32(1 + i%5)
	items := []*billingv1.LineItem{
		{
			Description: "Pro plan, monthly",
			Sku:         "plan-pro-m",
			Quantity:    1,
			UnitPrice:   eur(4900),
			Total:       eur(4900),
		},
		{
			Description: "Extra seat, monthly",
			Sku:         "seat-m",
			Quantity:    seats,
			UnitPrice:   eur(900),
			Total:       eur(900 * int64(seats)),
		},
	}
	var total int64
	for _, it := range items {
		total += it.GetTotal().GetAmountMinor()
	}
	return &billingv1.InvoicePaid{
		InvoiceId:       fmt.Sprintf("inv-%s-%d", now.Format("20060102-150405"), i+1),
		CustomerId:      fmt.Sprintf("cus-%d", 1001+i%7),
		Amount:          eur(total),
		PaymentMethod:   pay.method,
		LineItems:       items,
		PaidAt:          timestamppb.New(now),
		SettlementDelay: durationpb.New(pay.delay),
	}
}
