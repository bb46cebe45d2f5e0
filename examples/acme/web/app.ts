// Acme's live invoices: the events of the billing stream, typed by the
// module `bridge types --format ts` generated from Acme's descriptor set
// (bridge-events.ts; build.sh regenerates it and compiles both to JS).
// Strings from events reach the page as text only.
import { BridgeEvents, EventMeta, ResetData, acme_billing_v1_Money } from "./bridge-events.js";

const q = new URLSearchParams(location.search);
const bridge = (q.get("bridge") ?? "http://localhost:8080").replace(/\/$/, "");
const stream = q.get("stream") ?? "billing";
const format = q.get("format") ?? "data";

const $ = (id: string): HTMLElement => {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`no #${id}`);
  return el;
};
const counts = { events: 0, reconnects: 0, resets: 0 };

function bump(name: keyof typeof counts): void {
  counts[name]++;
  $("n-" + name).textContent = String(counts[name]);
  $("status").dataset[name] = String(counts[name]);
}

function setState(state: string): void {
  $("state").textContent = state;
  $("status").dataset.state = state;
}

// money shows an amount: amountMinor is an int64, so a string of digits,
// exact even beyond 2^53.
function money(m: acme_billing_v1_Money | undefined): string {
  const minor = BigInt(m?.amountMinor ?? "0");
  const sign = minor < 0n ? "-" : "";
  const abs = minor < 0n ? -minor : minor;
  return `${sign}${abs / 100n}.${String(abs % 100n).padStart(2, "0")} ${m?.currency ?? ""}`.trim();
}

// show lists one event, newest first.
function show(meta: EventMeta, kind: string, ...cells: string[]): void {
  bump("events");
  const li = document.createElement("li");
  li.dataset.eventId = meta.id;
  li.dataset.kind = kind;
  const k = document.createElement("span");
  k.className = "kind";
  k.textContent = kind;
  li.append(k);
  for (const c of cells) {
    const span = document.createElement("span");
    span.textContent = c;
    li.append(span);
  }
  $("invoices").prepend(li);
}

// A reset: the bridge could not replay everything missed. A real page
// refetches its invoices from the billing API here; this one starts its
// list over and says so.
function reset(r: ResetData): void {
  bump("resets");
  $("invoices").replaceChildren();
  $("reset").textContent = `Events were missed (${r.reason}): the list starts again here.`;
  $("reset").dataset.reason = r.reason;
  $("reset").hidden = false;
}

const params = new URLSearchParams({ stream });
if (format !== "data") params.set("format", format);
const url = `${bridge}/events?${params}`;
$("url").textContent = url;

const events = new BridgeEvents(url)
  .on("acme.billing.v1.InvoicePaid", (ev, meta) => {
    show(meta, "paid", ev.invoiceId ?? "", money(ev.amount), String(ev.paymentMethod ?? "PAYMENT_METHOD_UNSPECIFIED"), ev.paidAt ?? "");
  })
  .on("acme.billing.v1.InvoiceVoided", (ev, meta) => {
    show(meta, "voided", ev.invoiceId ?? "", String(ev.reason ?? "VOID_REASON_UNSPECIFIED"), ev.note ?? "");
  })
  .onJSON((data, meta) => show(meta, "other", JSON.stringify(data)))
  .onReset(reset);

let opened = false;
events.source.onopen = () => {
  if (opened) bump("reconnects");
  opened = true;
  setState("open");
};
events.source.onerror = () => {
  // The browser reconnects by itself (sending Last-Event-ID) unless the
  // bridge refused the subscription.
  setState(events.source.readyState === EventSource.CLOSED ? "closed" : "connecting");
};
