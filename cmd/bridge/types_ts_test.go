package main

import (
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sse-bridge/bridge/internal/bridge"
)

// TestTypesTS: --format ts prints the TypeScript module of the types kept,
// deterministic, in the mapping of the flags.
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

	if _, err := typesCLI(t, "--format", "ts", "--addr", "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "--addr goes with --url") {
		t.Errorf("--format ts --addr without --url: %v, want the mistake", err)
	}
	if _, err := typesCLI(t, "--format", "ts", "nope.v1.*"); err == nil || !strings.Contains(err.Error(), `no type matches "nope.v1.*"`) {
		t.Errorf("--format ts nope.v1.*: %v, want no type matches", err)
	}
	if _, err := typesCLI(t, "--format", "yaml"); err == nil || !strings.Contains(err.Error(), "give jsonschema or ts") {
		t.Errorf("--format yaml: %v", err)
	}
}

// TestTypesTSFromARunningBridge: --url --format ts prints, from a running
// bridge's /types (names, mapping) and its reflection (definitions), the
// module the offline command prints with the bridge's set and flags; a
// reflection that cannot be reached is an error that says so.
func TestTypesTSFromARunningBridge(t *testing.T) {
	t.Parallel()
	grpcAddr, url, _ := startBridge(t, bridge.Config{DescriptorSets: []string{acmeSet}, JSONProtoNames: true, JSONEmitDefaults: true})
	for _, names := range [][]string{{"acme.billing.v1.*", "shop.v1.OrderCreated"}, nil} {
		online, err := typesCLI(t, append([]string{"--format", "ts", "--url", url, "--addr", grpcAddr}, names...)...)
		if err != nil {
			t.Fatal(err)
		}
		offline, err := typesCLI(t, append([]string{"--format", "ts", "--descriptor-set", acmeSet, "--json-names", "proto", "--emit-defaults"}, names...)...)
		if err != nil {
			t.Fatal(err)
		}
		if online != offline {
			t.Errorf("bridge types --format ts --url and offline (%v) differ:\n%.600s\n---\n%.600s", names, online, offline)
		}
		if !strings.Contains(online, `"acme.billing.v1.InvoicePaid": acme_billing_v1_InvoicePaid;`) || !strings.Contains(online, "  invoice_id: string;\n") {
			t.Errorf("the module from the bridge lacks InvoicePaid in the bridge's mapping")
		}
	}
	_, err := typesCLI(t, "--format", "ts", "--url", url, "--addr", "127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("--format ts --url with an unreachable --addr: %v, want an error naming the address", err)
	}
}

// TestTypesTSWithBothAuths: with subscriber and publisher auth both on, a
// publisher's token is the one credential `bridge types --url --format ts`
// needs: /types takes it as reflection does. A subscriber's token reads
// /types but not reflection, and says so.
func TestTypesTSWithBothAuths(t *testing.T) {
	t.Parallel()
	key := writeTemp(t, "key", "0123456789abcdef0123456789abcdef-types-secret")
	grpcAddr, url, _ := startBridge(t, bridge.Config{JWTKey: key, Publishers: publishersFile(t), DescriptorSets: []string{acmeSet}})
	online, err := typesCLI(t, "--format", "ts", "--url", url, "--addr", grpcAddr, "--token", cliToken, "acme.billing.v1.*")
	if err != nil {
		t.Fatalf("bridge types --format ts --url with a publisher's token = %v", err)
	}
	offline, err := typesCLI(t, "--format", "ts", "--descriptor-set", acmeSet, "acme.billing.v1.*")
	if err != nil {
		t.Fatal(err)
	}
	if online != offline {
		t.Errorf("bridge types --format ts --url with a publisher's token and offline differ:\n%.600s\n---\n%.600s", online, offline)
	}
	sub, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u", "exp": 4102444800, "bridge": map[string]any{"subscribe": []string{"x"}}}).
		SignedString([]byte("0123456789abcdef0123456789abcdef-types-secret"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := typesCLI(t, "--url", url, "--token", sub, "acme.billing.v1.*"); err != nil {
		t.Errorf("bridge types --url with a subscriber's token = %v", err)
	}
	_, err = typesCLI(t, "--format", "ts", "--url", url, "--addr", grpcAddr, "--token", sub, "acme.billing.v1.*")
	if err == nil || exitCode(err) != exitRefused {
		t.Errorf("bridge types --format ts --url with a subscriber's token = %v (exit %d), want exit %d: reflection takes a publisher's", err, exitCode(err), exitRefused)
	}
	if _, err := typesCLI(t, "--url", url, "--token", "not-a-token"); err == nil || exitCode(err) != exitRefused || !strings.Contains(err.Error(), "401") {
		t.Errorf("bridge types --url with a bad token = %v, want exit %d and 401", err, exitRefused)
	}
}
