package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	billingv1 "github.com/sse-bridge/bridge/gen/acme/billing/v1"
	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// fakeBridge records what Publish receives. It stands in for the bridge
// because the test is about what the publisher sends, not about rendering;
// the bridge's own tests cover the rest.
type fakeBridge struct {
	bridgev1.UnimplementedBridgeServiceServer
	err error // returned by every Publish when set

	mu   sync.Mutex
	reqs []*bridgev1.PublishRequest
}

var _ bridgev1.BridgeServiceServer = (*fakeBridge)(nil)

func (f *fakeBridge) Publish(_ context.Context, req *bridgev1.PublishRequest) (*bridgev1.PublishResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, req)
	if f.err != nil {
		return nil, f.err
	}
	return &bridgev1.PublishResponse{Id: uint64(1000 + len(f.reqs))}, nil
}

func (f *fakeBridge) requests() []*bridgev1.PublishRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*bridgev1.PublishRequest(nil), f.reqs...)
}

// serve starts a real gRPC server for f on loopback and returns its address.
func serve(t *testing.T, f *fakeBridge) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := grpc.NewServer()
	bridgev1.RegisterBridgeServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func TestRunPublishesInvoicePaidAsAny(t *testing.T) {
	t.Parallel()
	f := &fakeBridge{}
	addr := serve(t, f)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	var out bytes.Buffer
	before := time.Now().Truncate(time.Millisecond)
	if err := run(ctx, []string{"-addr", addr, "-stream", "billing.eu", "-n", "3"}, &out); err != nil {
		t.Fatalf("run() = %v, want nil", err)
	}
	after := time.Now()

	reqs := f.requests()
	if len(reqs) != 3 {
		t.Fatalf("server got %d requests, want 3", len(reqs))
	}
	var wantOut strings.Builder
	for i, req := range reqs {
		if got, want := req.GetStream(), "billing.eu"; got != want {
			t.Errorf("request %d: stream = %q, want %q", i, got, want)
		}
		if got := req.GetType(); got != "" {
			t.Errorf("request %d: type = %q, want empty (the bridge then uses the message name)", i, got)
		}
		// The exact type URL is what the bridge resolves against its descriptor sets.
		if got, want := req.GetEvent().GetTypeUrl(), "type.googleapis.com/acme.billing.v1.InvoicePaid"; got != want {
			t.Errorf("request %d: event type URL = %q, want %q", i, got, want)
		}
		var got billingv1.InvoicePaid
		if err := proto.Unmarshal(req.GetEvent().GetValue(), &got); err != nil {
			t.Errorf("request %d: event value does not unmarshal as InvoicePaid: %v", i, err)
			continue
		}
		paidAt := got.GetPaidAt().AsTime()
		if paidAt.Before(before) || paidAt.After(after) {
			t.Errorf("request %d: paid_at = %v, want within [%v, %v]", i, paidAt, before, after)
		}
		if diff := cmp.Diff(newInvoicePaid(i, paidAt), &got, protocmp.Transform()); diff != "" {
			t.Errorf("request %d: event mismatch (-want +got):\n%s", i, diff)
		}
		fmt.Fprintf(&wantOut, "published invoice %s to stream %q: id %d\n", got.GetInvoiceId(), "billing.eu", 1001+i)
	}
	if diff := cmp.Diff(wantOut.String(), out.String()); diff != "" {
		t.Errorf("output mismatch (-want +got):\n%s", diff)
	}
}

func TestRunDefaultsToStreamBillingAndOneEvent(t *testing.T) {
	t.Parallel()
	f := &fakeBridge{}
	addr := serve(t, f)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	var out bytes.Buffer
	if err := run(ctx, []string{"-addr", addr}, &out); err != nil {
		t.Fatalf("run() = %v, want nil", err)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("server got %d requests, want 1", len(reqs))
	}
	if got, want := reqs[0].GetStream(), "billing"; got != want {
		t.Errorf("stream = %q, want %q", got, want)
	}
}

func TestRunReportsStatus(t *testing.T) {
	t.Parallel()
	// A port nobody listens on: grab one, then close it.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	closedAddr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		t.Fatalf("close listener: %v", err)
	}

	tests := []struct {
		name     string
		addr     func(t *testing.T) string
		wantCode codes.Code
		wantText []string // substrings of the error text
	}{
		{
			name: "rejected",
			addr: func(t *testing.T) string {
				t.Helper()
				return serve(t, &fakeBridge{err: status.Error(codes.InvalidArgument,
					`event: unknown type "acme.billing.v1.InvoicePaid"`)})
			},
			wantCode: codes.InvalidArgument,
			wantText: []string{
				`publish invoice inv-`,
				`to stream "billing"`,
				`InvalidArgument: event: unknown type "acme.billing.v1.InvoicePaid"`,
			},
		},
		{
			name:     "no bridge",
			addr:     func(*testing.T) string { return closedAddr },
			wantCode: codes.Unavailable,
			wantText: []string{"at " + closedAddr + ": Unavailable: ", "(is the bridge running there?)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			var out bytes.Buffer
			err := run(ctx, []string{"-addr", tt.addr(t)}, &out)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("run() = %v, want status %v", err, tt.wantCode)
			}
			for _, want := range tt.wantText {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("run() error = %q, want it to contain %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "rpc error:") {
				t.Errorf("run() error = %q, want the status without grpc-go's prefix", err)
			}
			if out.Len() != 0 {
				t.Errorf("output = %q, want none", out.String())
			}
		})
	}
}

func TestRunRejectsBadArguments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
	}{
		{"zero events", []string{"-n", "0"}},
		{"extra argument", []string{"billing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			// No server: a bad argument must fail before any call.
			if err := run(t.Context(), append([]string{"-addr", "127.0.0.1:1"}, tt.args...), &out); err == nil {
				t.Errorf("run(%q) = nil, want an error", tt.args)
			}
		})
	}
}

func TestNewInvoicePaid(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 11, 0, 0, 123456789, time.FixedZone("CET", 3600))
	eur := func(minor int64) *billingv1.Money {
		return &billingv1.Money{Currency: "EUR", AmountMinor: minor}
	}
	want := &billingv1.InvoicePaid{
		InvoiceId:     "inv-20261125-100000-2",
		CustomerId:    "cus-1002",
		Amount:        eur(4900 + 2*900),
		PaymentMethod: billingv1.PaymentMethod_PAYMENT_METHOD_SEPA_DEBIT,
		LineItems: []*billingv1.LineItem{
			{Description: "Pro plan, monthly", Sku: "plan-pro-m", Quantity: 1, UnitPrice: eur(4900), Total: eur(4900)},
			{Description: "Extra seat, monthly", Sku: "seat-m", Quantity: 2, UnitPrice: eur(900), Total: eur(1800)},
		},
		PaidAt:          timestamppb.New(time.Date(2026, 11, 25, 10, 0, 0, 123000000, time.UTC)),
		SettlementDelay: durationpb.New(120 * time.Hour),
	}
	if diff := cmp.Diff(want, newInvoicePaid(1, now), protocmp.Transform()); diff != "" {
		t.Errorf("newInvoicePaid(1, %v) mismatch (-want +got):\n%s", now, diff)
	}
}
