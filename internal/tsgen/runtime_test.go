package tsgen_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sse-bridge/bridge/internal/schema"
)

// runtimeCheck drives BridgeEvents with a fake EventSource: frames of each
// format, a reset, and checks what the handlers get. It throws on a
// mismatch; node runs it after tsc compiles it.
const runtimeCheck = `import { BridgeEvents, EventMeta, JsonValue, ResetData } from "./events";

type Listener = (e: MessageEvent<string>) => void;
class FakeEventSource {
  static last: FakeEventSource;
  listeners = new Map<string, Listener[]>();
  closed = false;
  constructor(readonly url: string, readonly init?: { withCredentials?: boolean }) {
    FakeEventSource.last = this;
  }
  addEventListener(name: string, l: Listener): void {
    const ls = this.listeners.get(name) ?? [];
    ls.push(l);
    this.listeners.set(name, ls);
  }
  close(): void {
    this.closed = true;
  }
  emit(name: string, id: string, data: unknown): void {
    const e = { data: JSON.stringify(data), lastEventId: id } as MessageEvent<string>;
    for (const l of this.listeners.get(name) ?? []) l(e);
  }
}
(globalThis as unknown as { EventSource: unknown }).EventSource = FakeEventSource;

function expect(what: string, got: unknown, want: unknown): void {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(what + ": got " + JSON.stringify(got) + ", want " + JSON.stringify(want));
  }
}

const order = { orderId: "o-1", total: { currency: "EUR", amountMinor: "9007199254740993" } };
const seen: Array<[string, unknown, EventMeta]> = [];
const resets: ResetData[] = [];
function open(url: string): [BridgeEvents, FakeEventSource] {
  seen.length = 0;
  resets.length = 0;
  const ev = new BridgeEvents(url, { withCredentials: true })
    .on("shop.v1.OrderCreated", (o, meta) => seen.push(["created", o.total?.amountMinor, meta]))
    .onJSON((data: JsonValue, meta) => seen.push(["json", data, meta]))
    .onReset((r) => resets.push(r));
  return [ev, FakeEventSource.last];
}

// format=data: named frames to on(), unnamed to onJSON, the URL's one stream.
let [ev, src] = open("http://bridge.test/events?stream=orders");
expect("withCredentials", src.init, { withCredentials: true });
expect("format", ev.format, "data");
src.emit("shop.v1.OrderCreated", "7", order);
src.emit("message", "8", { hello: "world" });
src.emit("bridge.reset", "9", { reason: "too_far_behind", lastEventId: "9" });
expect("data frames", seen, [
  ["created", "9007199254740993", { id: "7", stream: "orders", lastEventId: "7", type: "shop.v1.OrderCreated" }],
  ["json", { hello: "world" }, { id: "8", stream: "orders", lastEventId: "8" }],
]);
expect("reset", resets, [{ reason: "too_far_behind", lastEventId: "9" }]);
ev.close();
expect("closed", src.closed, true);

// Two streams: no stream in the data format.
[ev, src] = open("http://bridge.test/events?stream=a&stream=b");
src.emit("shop.v1.OrderCreated", "1", order);
expect("two streams", seen[0][2].stream, undefined);

// format=envelope: unwrapped, by type.
[ev, src] = open("http://bridge.test/events?stream=a&stream=b&format=envelope");
src.emit("message", "5", { id: "5", stream: "b", type: "shop.v1.OrderCreated", time: "2026-11-25T10:00:00Z", traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", data: order });
src.emit("message", "6", { id: "6", stream: "a", time: "2026-11-25T10:00:01Z", data: [1, "two", null] });
expect("envelope frames", seen, [
  ["created", "9007199254740993", { id: "5", stream: "b", lastEventId: "5", type: "shop.v1.OrderCreated", time: "2026-11-25T10:00:00Z", traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" }],
  ["json", [1, "two", null], { id: "6", stream: "a", lastEventId: "6", time: "2026-11-25T10:00:01Z" }],
]);

// format=cloudevents: subject is the stream; bridge.json to onJSON.
[ev, src] = open("/events?stream=a&format=cloudevents");
const ce = { specversion: "1.0", source: "/sse-bridge", time: "2026-11-25T10:00:00Z", datacontenttype: "application/json" };
src.emit("message", "3", { ...ce, id: "3", type: "shop.v1.OrderCreated", subject: "a", data: order });
src.emit("message", "4", { ...ce, id: "4", type: "bridge.json", subject: "a", data: { k: true } });
src.emit("bridge.reset", "4", { reason: "unknown_id", lastEventId: "4" });
expect("cloudevents frames", seen, [
  ["created", "9007199254740993", { id: "3", stream: "a", lastEventId: "3", type: "shop.v1.OrderCreated", time: "2026-11-25T10:00:00Z" }],
  ["json", { k: true }, { id: "4", stream: "a", lastEventId: "4", type: "bridge.json", time: "2026-11-25T10:00:00Z" }],
]);
expect("cloudevents reset", resets, [{ reason: "unknown_id", lastEventId: "4" }]);
console.log("ok");
`

// TestWrapperRuntime compiles the module and runtimeCheck to JavaScript and
// runs it with node, EventSource faked: what each handler gets in each
// format.
func TestWrapperRuntime(t *testing.T) {
	bin := tsc(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node to run the compiled wrapper")
	}
	dir := t.TempDir()
	files := map[string]string{"events.ts": generate(t, schema.Options{}, "shop.v1."), "check.ts": runtimeCheck}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), name, args...)
		cmd.Dir = dir
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s", filepath.Base(name), err, out.String())
		}
		return out.String()
	}
	run(bin, "--strict", "--target", "ES2020", "--lib", "ES2020,DOM", "--module", "commonjs", "--outDir", "out", "check.ts", "events.ts")
	// The url of "/events?...": a page has a location.
	if err := os.WriteFile(filepath.Join(dir, "out", "location.js"), []byte(`globalThis.location = { href: "http://bridge.test/app/" };`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := run(node, "--require", "./out/location.js", "out/check.js"); out != "ok\n" {
		t.Fatalf("node printed %q, want ok", out)
	}
}
