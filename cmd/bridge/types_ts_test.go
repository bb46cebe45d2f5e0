package main

import (
	"strings"
	"testing"
)

// TestTypesTS: --format ts prints the TypeScript module of the types kept,
// deterministic, in the mapping of the flags; not with --url.
func TestTypesTS(t *testing.T) {
	t.Parallel()
	out, err := typesCLI(t, "--format", "ts", "--descriptor-set", acmeSet, "acme.billing.v1.*", "shop.v1.OrderCreated")
	if err != nil {
		t.Fatal(err)
	}
	again, err := typesCLI(t, "--format", "ts", "--descriptor-set", acmeSet, "acme.billing.v1.*", "shop.v1.OrderCreated")
	if err != nil || again != out {
		t.Errorf("a second run printed something else (%v)", err)
	}
	for _, want := range []string{
		"export interface acme_billing_v1_InvoicePaid {",
		"  orderId?: string;\n",
		`  "shop.v1.OrderCreated": shop_v1_OrderCreated;`,
		`  "acme.billing.v1.InvoicePaid": acme_billing_v1_InvoicePaid;`,
		"export class BridgeEvents {",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("bridge types --format ts lacks %q", want)
		}
	}
	if strings.Contains(out, `"shop.v1.OrderStatusChanged":`) {
		t.Error("a type no NAME keeps is in the EventMap")
	}

	out, err = typesCLI(t, "--format", "ts", "--json-names", "proto", "--emit-defaults", "shop.v1.OrderCreated")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "  order_id: string;\n") || !strings.Contains(out, "  total: shop_v1_Money | null;\n") {
		t.Errorf("--json-names proto --emit-defaults: the module is not in that mapping:\n%s", out)
	}

	if _, err := typesCLI(t, "--format", "ts", "--url", "http://127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "--format ts reads the types offline") {
		t.Errorf("--format ts --url: %v, want the offline-only mistake", err)
	}
	if _, err := typesCLI(t, "--format", "ts", "nope.v1.*"); err == nil || !strings.Contains(err.Error(), `no type matches "nope.v1.*"`) {
		t.Errorf("--format ts nope.v1.*: %v, want no type matches", err)
	}
	if _, err := typesCLI(t, "--format", "yaml"); err == nil || !strings.Contains(err.Error(), "give jsonschema or ts") {
		t.Errorf("--format yaml: %v", err)
	}
}
