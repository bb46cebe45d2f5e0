"use strict";
// The bridge's page: subscribe to streams with EventSource and show each
// frame as it arrives. The settings live in the page's URL
// (?stream=orders&stream=users&format=envelope&types=a,b&lastEventId=N), so a
// reload keeps them. Strings from the server reach the page only through
// textContent and text nodes, never as HTML.
//
// The event types come from GET /types: in the data format the page listens
// for the name of every type the bridge renders (and for the other names in
// the form: publishers' own types), and each frame shows its type with a
// link to its schema. Without /types (auth on and no token cookie, an older
// bridge) the page listens for the names in the form only, and says so.

const DEFAULT_STREAMS = ["orders"];
const RESET = "bridge.reset";
const UNTYPED = "bridge.json"; // the cloudevents type of a json event
const MAX_FRAMES = 500;

const $ = (id) => document.getElementById(id);
const split = (s) => s.split(/[\s,]+/).filter(Boolean);

let settings;       // what the page subscribes to: {streams, format, types, lastEventId}
let source = null;  // the EventSource, null when stopped
let lastId = "";    // the id of the last frame seen, for a manual reconnect
let opened = false; // the subscription was open once, so its next open is a reconnect
let known = new Map(); // event type name -> origin, from GET /types
const counts = { events: 0, reconnects: 0, resets: 0 };

function settingsFromURL() {
  const q = new URLSearchParams(location.search);
  const streams = q.getAll("stream");
  return {
    streams: streams.length ? streams : DEFAULT_STREAMS,
    format: q.get("format") || "data",
    types: q.has("types") ? split(q.get("types")) : [],
    lastEventId: q.get("lastEventId") || "",
  };
}

function settingsFromForm() {
  return {
    streams: split($("streams").value),
    format: $("format").value,
    types: split($("types").value),
    lastEventId: $("last-event-id").value.trim(),
  };
}

function fillForm(s) {
  $("streams").value = s.streams.join(", ");
  $("format").value = s.format;
  $("types").value = s.types.join(", ");
  $("types").disabled = s.format !== "data";
  $("last-event-id").value = s.lastEventId;
}

function saveToURL(s) {
  const q = new URLSearchParams();
  for (const name of s.streams) q.append("stream", name);
  if (s.format !== "data") q.set("format", s.format);
  if (s.types.length) q.set("types", s.types.join(","));
  if (s.lastEventId) q.set("lastEventId", s.lastEventId);
  history.replaceState(null, "", "?" + q);
}

// loadTypes fetches the names of the types the bridge renders from /types,
// again for each subscription (a reload of the bridge's descriptor sets may
// have changed them; the ETag makes a repeat cheap). The page's own cookies
// go with it, as with the EventSource: with subscriber auth on, a token
// cookie opens both. On failure the page keeps to the names in the form.
async function loadTypes() {
  let why;
  try {
    const res = await fetch("/types", { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (res.ok) {
      const list = await res.json();
      known = new Map(list.types.map((t) => [t.name, t.origin]));
      setTypes(String(known.size), "");
      return;
    }
    why = `HTTP ${res.status}: ${(await res.text()).trim()}`;
  } catch (err) {
    why = String(err);
  }
  known = new Map();
  setTypes("unavailable", `The bridge did not give its event types (${why}): in the data format the page listens only for the event names in the form.`);
}

function setTypes(count, warning) {
  $("n-types").textContent = count;
  $("status").dataset.types = count;
  $("types-note").textContent = warning;
  $("types-note").hidden = !warning;
}

// subscribe loads the types, then connects.
async function subscribe(from) {
  await loadTypes();
  connect(from);
}

// connect opens an EventSource for the settings, resuming after the id from
// when given. The browser reconnects by itself after a dropped connection,
// sending Last-Event-ID; this is for the first connection and the Reconnect
// button.
function connect(from) {
  disconnect();
  const q = new URLSearchParams();
  for (const name of settings.streams) q.append("stream", name);
  if (settings.format !== "data") q.set("format", settings.format);
  if (from) q.set("lastEventId", from);
  const url = "/events?" + q;
  $("url").textContent = url;

  const es = new EventSource(url);
  source = es;
  setState("connecting");
  es.onopen = () => {
    if (opened) bump("reconnects");
    opened = true;
    setState("open");
  };
  es.onerror = () => {
    if (es.readyState !== EventSource.CLOSED) {
      setState("connecting"); // the browser reconnects by itself
      return;
    }
    setState("closed");
    explain(url);
  };
  // onmessage sees only frames without an event: name (json events, and
  // every frame of the envelope and cloudevents formats). A named frame
  // needs a listener for its name.
  es.onmessage = show;
  es.addEventListener(RESET, show);
  if (settings.format === "data") {
    for (const t of new Set([...known.keys(), ...settings.types])) {
      if (t !== "message" && t !== RESET) es.addEventListener(t, show);
    }
  }
}

function disconnect() {
  if (source) source.close();
  source = null;
  setState("closed");
}

// explain says why EventSource gave up for good: it does so on any status but
// 200, and hides the response from the page.
async function explain(url) {
  try {
    const res = await fetch(url);
    if (res.ok) {
      await res.body?.cancel();
      note("The stream ended and the browser stopped reconnecting: press Reconnect.");
      return;
    }
    note(`The bridge refused the subscription (HTTP ${res.status}): ${(await res.text()).trim()}`);
  } catch {
    note("The bridge cannot be reached: press Reconnect to try again.");
  }
}

function show(e) {
  const reset = e.type === RESET;
  bump(reset ? "resets" : "events");
  if (e.lastEventId) {
    lastId = e.lastEventId;
    $("last-id").textContent = lastId;
  }
  let data, text;
  try {
    data = JSON.parse(e.data);
    text = JSON.stringify(data, null, 2);
  } catch {
    text = e.data;
  }

  const li = document.createElement("li");
  li.dataset.eventId = e.lastEventId;
  li.dataset.eventType = e.type;
  if (reset) li.className = "reset";
  const meta = document.createElement("div");
  meta.className = "meta";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = e.type === "message" ? "message (no event name)" : e.type;
  meta.append(name, field("id", e.lastEventId || "none"));
  if (!reset) meta.append(typeField(li, typeOf(e, data)));
  const stream = reset ? "" : streamOf(data);
  if (stream) meta.append(field("stream", stream));
  meta.append(field("received", new Date().toLocaleTimeString()));
  li.append(meta);
  if (reset) {
    const p = document.createElement("p");
    p.textContent = "History could not cover the gap, so events may be missing: an app refetches its state here.";
    li.append(p);
  }
  const pre = document.createElement("pre");
  pre.textContent = text;
  li.append(pre);

  const list = $("events");
  list.prepend(li);
  while (list.childElementCount > MAX_FRAMES) list.lastElementChild.remove();
}

// typeOf returns the event's type name: its event: name in the data format,
// the type inside the frame in the others; "" for a json event without one.
function typeOf(e, data) {
  if (settings.format === "data") return e.type === "message" ? "" : e.type;
  const t = data?.type;
  return typeof t === "string" && t !== UNTYPED ? t : "";
}

// typeField shows the type of a frame: a link to the schema /types serves
// for a type the bridge renders, with where it came from; else what it is.
// The frame's element keeps it in data-schema ("" for none).
function typeField(li, name) {
  const span = document.createElement("span");
  span.className = "type";
  const k = document.createElement("span");
  k.className = "k";
  k.textContent = "type";
  span.append(k, " ");
  li.dataset.schema = "";
  if (!name) {
    span.append("json, untyped");
  } else if (known.has(name)) {
    li.dataset.schema = name;
    const a = document.createElement("a");
    a.href = "/types/" + encodeURIComponent(name);
    a.textContent = name;
    a.title = "its JSON Schema; " + known.get(name);
    span.append(a, ` (${known.get(name)})`);
  } else {
    span.append(name, known.size ? " (the publisher's name: no schema)" : " (types unavailable)");
  }
  return span;
}

// streamOf tells which stream a frame came from, when the frame or the
// subscription says so.
function streamOf(data) {
  if (settings.format === "envelope") return data?.stream;
  if (settings.format === "cloudevents") return data?.subject;
  return settings.streams.length === 1 ? settings.streams[0] : "";
}

function field(label, value) {
  const span = document.createElement("span");
  const k = document.createElement("span");
  k.className = "k";
  k.textContent = label;
  span.append(k, " ", String(value)); // a string argument becomes a text node
  return span;
}

// The status element carries the state and the counts as data-* attributes
// too, for styles and for the browser test.
function setState(s) {
  $("state").textContent = s;
  $("status").dataset.state = s;
}

function setCount(name, n) {
  counts[name] = n;
  $("n-" + name).textContent = n;
  $("status").dataset[name] = n;
}

function bump(name) {
  setCount(name, counts[name] + 1);
}

function note(text) {
  $("note").textContent = text;
  $("note").hidden = !text;
}

function startOver() {
  for (const name of Object.keys(counts)) setCount(name, 0);
  lastId = "";
  $("last-id").textContent = "none";
  opened = false;
  note("");
  $("events").replaceChildren();
}

$("form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const s = settingsFromForm();
  if (s.streams.length === 0) {
    note("Name at least one stream.");
    return;
  }
  settings = s;
  saveToURL(settings);
  startOver();
  subscribe(settings.lastEventId);
});
$("format").addEventListener("change", () => {
  $("types").disabled = $("format").value !== "data";
});
$("reconnect").addEventListener("click", () => {
  note("");
  connect(lastId || settings.lastEventId);
});
$("stop").addEventListener("click", disconnect);
$("clear").addEventListener("click", () => $("events").replaceChildren());

settings = settingsFromURL();
fillForm(settings);
subscribe(settings.lastEventId);
