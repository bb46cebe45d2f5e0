package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sse-bridge/bridge/internal/bridge"
	"github.com/sse-bridge/bridge/internal/schema/schematest"
)

const acmeSet = "../../examples/acme/acme.binpb"

func typesCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := runTypes(t.Context(), args, &out, &errOut)
	return out.String(), err
}

type typesOutput struct {
	JSONNames    string `json:"jsonNames"`
	EmitDefaults bool   `json:"emitDefaults"`
	Types        []struct {
		Name, Origin string
		Schema       json.RawMessage
	}
	Envelope, Cloudevents, Reset json.RawMessage
}

func parseTypes(t *testing.T, out string) typesOutput {
	t.Helper()
	var o typesOutput
	if err := json.Unmarshal([]byte(out), &o); err != nil {
		t.Fatalf("bridge types printed no list: %v\n%s", err, out)
	}
	return o
}

// TestTypesOffline: the schemas of a descriptor set's types, filtered by
// package, deterministic, in the mapping of the flags, each a valid schema
// that a rendered event validates against.
func TestTypesOffline(t *testing.T) {
	t.Parallel()
	out, err := typesCLI(t, "--descriptor-set", acmeSet, "acme.billing.v1.*")
	if err != nil {
		t.Fatal(err)
	}
	again, err := typesCLI(t, "--descriptor-set", acmeSet, "acme.billing.v1.*")
	if err != nil || again != out {
		t.Errorf("a second run printed something else (%v)", err)
	}
	o := parseTypes(t, out)
	var names []string
	for _, ty := range o.Types {
		names = append(names, ty.Name)
		if ty.Origin != acmeSet {
			t.Errorf("origin of %s = %q, want %s", ty.Name, ty.Origin, acmeSet)
		}
	}
	if strings.Join(names, " ") != "acme.billing.v1.InvoicePaid acme.billing.v1.InvoiceVoided acme.billing.v1.LineItem acme.billing.v1.Money" || o.JSONNames != "camel" || o.EmitDefaults {
		t.Fatalf("bridge types acme.billing.v1.* = %v (%s, %v), want the four acme messages, camel, no defaults", names, o.JSONNames, o.EmitDefaults)
	}
	paid := schematest.MustCompile(t, []byte(o.Types[0].Schema))
	paid.Check(t, "InvoicePaid", []byte(`{"invoiceId":"inv-1","amount":{"amountMinor":"1250"},"paymentMethod":"PAYMENT_METHOD_CARD","paidAt":"2026-11-25T10:00:00Z","settlementDelay":"86400s"}`))
	if paid.Validate([]byte(`{"invoice_id":"inv-1"}`)) == nil {
		t.Errorf("the camel schema accepts proto names")
	}
	for _, s := range []json.RawMessage{o.Envelope, o.Cloudevents, o.Reset} {
		schematest.MustCompile(t, []byte(s))
	}

	out, err = typesCLI(t, "--descriptor-set", acmeSet, "--json-names", "proto", "--emit-defaults", "acme.billing.v1.InvoicePaid", "shop.v1.OrderCreated")
	if err != nil {
		t.Fatal(err)
	}
	o = parseTypes(t, out)
	if len(o.Types) != 2 || o.Types[1].Name != "shop.v1.OrderCreated" || o.Types[1].Origin != "compiled in" || o.JSONNames != "proto" || !o.EmitDefaults {
		t.Fatalf("bridge types --json-names proto --emit-defaults InvoicePaid OrderCreated = %+v", o)
	}
	if !strings.Contains(string(o.Types[0].Schema), `"invoice_id"`) || !strings.Contains(string(o.Types[0].Schema), `"required"`) {
		t.Errorf("the proto names, emit-defaults schema of InvoicePaid has no invoice_id or no required: %s", o.Types[0].Schema)
	}
}

// TestTypesFromARunningBridge: --url prints what the bridge serves, the same
// as offline with the same descriptor sets and mapping.
func TestTypesFromARunningBridge(t *testing.T) {
	t.Parallel()
	_, url, _ := startBridge(t, bridge.Config{DescriptorSets: []string{acmeSet}, JSONProtoNames: true})
	online, err := typesCLI(t, "--url", url)
	if err != nil {
		t.Fatal(err)
	}
	offline, err := typesCLI(t, "--descriptor-set", acmeSet, "--json-names", "proto")
	if err != nil {
		t.Fatal(err)
	}
	if online != offline {
		t.Errorf("bridge types --url and offline with the same set and mapping differ:\n%.600s\n---\n%.600s", online, offline)
	}
	if o := parseTypes(t, online); len(o.Types) < 10 || o.JSONNames != "proto" {
		t.Errorf("bridge types --url lists %d types in mapping %s", len(o.Types), o.JSONNames)
	}
}

func TestTypesErrors(t *testing.T) {
	t.Parallel()
	key := filepath.Join(t.TempDir(), "key")
	secret := []byte("0123456789abcdef0123456789abcdef-types-secret")
	if err := os.WriteFile(key, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	_, authURL, _ := startBridge(t, bridge.Config{JWTKey: key})
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u", "exp": 4102444800, "bridge": map[string]any{"subscribe": []string{"x"}}}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := typesCLI(t, "--url", authURL, "--token", tok, "shop.v1.Money"); err != nil || len(parseTypes(t, out).Types) != 1 {
		t.Errorf("bridge types --url with a token = %v", err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"unknown format", []string{"--format", "typescript"}, exitUsage, "jsonschema"},
		{"bad json names", []string{"--json-names", "snake"}, exitUsage, "camel or proto"},
		{"url and set", []string{"--url", "http://127.0.0.1:1", "--descriptor-set", acmeSet}, exitUsage, "--url"},
		{"missing set", []string{"--descriptor-set", "/nonexistent.binpb"}, exitUsage, "nonexistent.binpb"},
		{"unknown name", []string{"acme.billing.v1.InvoicePaid"}, exitUsage, "--descriptor-set"},
		{"unreachable", []string{"--url", "http://127.0.0.1:1"}, exitConnect, "connect"},
		{"no token", []string{"--url", authURL}, exitRefused, "401"},
	} {
		_, err := typesCLI(t, tc.args...)
		if err == nil || exitCode(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: bridge types %v = %v (exit %d), want exit %d mentioning %q", tc.name, tc.args, err, exitCode(err), tc.code, tc.msg)
		}
	}
}
