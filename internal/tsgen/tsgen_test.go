package tsgen_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sse-bridge/bridge/internal/payload"
	"github.com/sse-bridge/bridge/internal/schema"
	"github.com/sse-bridge/bridge/internal/tsgen"
)

const acmeSet = "../../examples/acme/acme.binpb"

// eventTypes are the types of the registry with the acme set whose names
// have one of the prefixes (all when none), and the registry.
func eventTypes(t *testing.T, prefixes ...string) ([]protoreflect.MessageDescriptor, *payload.Registry) {
	t.Helper()
	reg, err := payload.NewRegistry([]string{acmeSet})
	if err != nil {
		t.Fatal(err)
	}
	all, _ := reg.Types()
	var mds []protoreflect.MessageDescriptor
	for _, ti := range all {
		keep := len(prefixes) == 0
		for _, p := range prefixes {
			keep = keep || strings.HasPrefix(string(ti.Name()), p)
		}
		if keep {
			mds = append(mds, ti.Desc)
		}
	}
	return mds, reg
}

func generate(t *testing.T, o schema.Options, prefixes ...string) string {
	t.Helper()
	mds, reg := eventTypes(t, prefixes...)
	o.Extensions = reg
	out, err := tsgen.Generate(mds, o)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestOrderCreated(t *testing.T) {
	out := generate(t, schema.Options{}, "shop.v1.")
	for _, want := range []string{
		"export interface shop_v1_OrderCreated {\n",
		"  orderId?: string;\n",
		"  customer?: shop_v1_Customer;\n",
		"  items?: shop_v1_LineItem[];\n",
		"  total?: shop_v1_Money;\n",
		"  status?: shop_v1_OrderStatus;\n",
		"  createdAt?: string;\n",
		"  amountMinor?: string;\n",
		`export type shop_v1_OrderStatus = "ORDER_STATUS_UNSPECIFIED" | "ORDER_STATUS_PENDING" | "ORDER_STATUS_PAID" | "ORDER_STATUS_SHIPPED" | "ORDER_STATUS_CANCELLED" | number;`,
		`  "shop.v1.OrderCreated": shop_v1_OrderCreated;`,
		"export class BridgeEvents {",
		"export interface Envelope<T = JsonValue> {",
		"export interface CloudEvent<T = JsonValue> {",
		`export type ResetReason = "too_far_behind" | "history_trimmed" | "history_lost" | "unknown_id";`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the module lacks %q", want)
		}
	}
	if strings.Contains(out, "import ") {
		t.Error("the module imports")
	}
}

func TestOptions(t *testing.T) {
	out := generate(t, schema.Options{ProtoNames: true, EmitDefaults: true}, "shop.v1.")
	for _, want := range []string{
		"  order_id: string;\n",
		"  total: shop_v1_Money | null;\n",
		"  created_at: string | null;\n",
		"  items: shop_v1_LineItem[];\n",
		"  amount_minor: string;\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the module lacks %q", want)
		}
	}
}

func TestWellKnown(t *testing.T) {
	mds, _ := eventTypes(t, "google.protobuf.")
	for _, m := range []proto.Message{&fieldmaskpb.FieldMask{}, &emptypb.Empty{}, &wrapperspb.Int64Value{}, &wrapperspb.Int32Value{}, &wrapperspb.BytesValue{}} {
		mds = append(mds, m.ProtoReflect().Descriptor())
	}
	b, err := tsgen.Generate(mds, schema.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	for _, want := range []string{
		`  "google.protobuf.Timestamp": string;`,
		`  "google.protobuf.Duration": string;`,
		`  "google.protobuf.FieldMask": string;`,
		`  "google.protobuf.Struct": { [key: string]: JsonValue };`,
		`  "google.protobuf.Value": JsonValue;`,
		`  "google.protobuf.ListValue": JsonValue[];`,
		`  "google.protobuf.Empty": Record<string, never>;`,
		`  "google.protobuf.Any": { "@type": string; [key: string]: unknown };`,
		`  "google.protobuf.Int64Value": string;`,
		`  "google.protobuf.Int32Value": number;`,
		`  "google.protobuf.BytesValue": string;`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the module lacks %q", want)
		}
	}
}

func TestDeterministic(t *testing.T) {
	for range 3 {
		a := generate(t, schema.Options{})
		b := generate(t, schema.Options{})
		if a != b {
			t.Fatal("two generations differ")
		}
	}
}

// tsc finds the TypeScript compiler .ci/run installs, else one on PATH.
func tsc(t *testing.T) string {
	t.Helper()
	local, err := filepath.Abs("../../.ci/node/node_modules/.bin/tsc")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(local); err == nil {
		return local
	}
	if p, err := exec.LookPath("tsc"); err == nil {
		return p
	}
	t.Skip("no TypeScript compiler: run npm install --prefix .ci/node typescript@5.9.3 (as .ci/run does) to compile the generated module")
	return ""
}

const goodUsage = `import { BridgeEvents, EventMap, Envelope, CloudEvent, ResetData, JsonValue } from "./events";

const events = new BridgeEvents("/events?stream=orders", { withCredentials: true })
  .on("shop.v1.OrderCreated", (ev, meta) => {
    const id: string | undefined = ev.orderId;
    const amount: string | undefined = ev.total?.amountMinor;
    const when: string | undefined = ev.createdAt;
    const first: number | undefined = ev.items?.[0]?.quantity;
    const stream: string | undefined = meta.stream;
    console.log(id, amount, when, first, stream, meta.id, meta.lastEventId);
  })
  .on("acme.billing.v1.InvoicePaid", (ev) => console.log(ev))
  .onJSON((data: JsonValue) => console.log(data))
  .onReset((reset: ResetData) => console.log(reset.reason, reset.lastEventId));
events.close();

const created: EventMap["shop.v1.OrderCreated"] = { orderId: "o-1", status: "ORDER_STATUS_PAID" };
const env: Envelope<EventMap["shop.v1.OrderCreated"]> = { id: "1", stream: "orders", time: "2026-11-25T10:00:00Z", data: created };
const ce: CloudEvent = { specversion: "1.0", id: "1", source: "/sse-bridge", type: "bridge.json", subject: "orders", time: "2026-11-25T10:00:00Z", datacontenttype: "application/json", data: [1, "two", null] };
console.log(env, ce);
`

const badUsage = `import { BridgeEvents } from "./events";

new BridgeEvents("/events?stream=orders").on("shop.v1.OrderCreated", (ev) => {
  console.log(ev.nope);
});
`

// compile writes the module and usage to a directory and runs tsc there.
func compile(t *testing.T, module, usage string) (string, error) {
	t.Helper()
	bin := tsc(t)
	dir := t.TempDir()
	for name, text := range map[string]string{"events.ts": module, "usage.ts": usage} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(t.Context(), bin, "--noEmit", "--strict", "--target", "ES2020", "--lib", "ES2020,DOM",
		"--module", "ES2020", "--moduleResolution", "bundler", "usage.ts", "events.ts")
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func TestTSC(t *testing.T) {
	for _, o := range []schema.Options{{}, {ProtoNames: true, EmitDefaults: true}} {
		// Every type: the compiled-in ones (well-known, descriptor, shop.v1,
		// ...) and acme's.
		module := generate(t, o)
		usage := goodUsage
		if o.ProtoNames {
			usage = strings.NewReplacer("ev.orderId", "ev.order_id", "ev.total?.amountMinor", "ev.total?.amount_minor",
				"ev.createdAt", "ev.created_at ?? undefined", "{ orderId: \"o-1\", status: \"ORDER_STATUS_PAID\" }",
				"{ order_id: \"o-1\", customer: null, items: [], total: null, status: \"ORDER_STATUS_PAID\", created_at: null }").Replace(usage)
		}
		if out, err := compile(t, module, usage); err != nil {
			t.Fatalf("tsc %+v: %v\n%s", o, err, out)
		}
	}
}

func TestTSCRejectsUnknownField(t *testing.T) {
	out, err := compile(t, generate(t, schema.Options{}, "shop.v1."), badUsage)
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("tsc accepted ev.nope (%v):\n%s", err, out)
	}
	if !strings.Contains(out, "Property 'nope' does not exist on type 'shop_v1_OrderCreated'") {
		t.Fatalf("tsc failed without naming the field:\n%s", out)
	}
	t.Logf("tsc, as expected:\n%s", out)
}
