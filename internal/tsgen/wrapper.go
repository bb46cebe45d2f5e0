package tsgen

// wrapper is the typed EventSource wrapper, the same for every set of types.
const wrapper = `
/** What a handler learns about a frame besides its data. */
export interface EventMeta {
  /** The frame's id (the event's id). */
  id: string;
  /**
   * The event's stream: known in the envelope and cloudevents formats; in
   * the data format, the URL's stream parameter when it has exactly one, else
   * undefined.
   */
  stream?: string;
  /** The EventSource's lastEventId after this frame: what a reconnect sends as Last-Event-ID. */
  lastEventId: string;
  /** The event's type (its SSE event name in the data format), when it has one. */
  type?: string;
  /** When the bridge accepted the event (envelope and cloudevents formats). */
  time?: string;
  /** The W3C traceparent, when the frame carries one (envelope and cloudevents formats). */
  traceparent?: string;
}

/** The format of the frames, from the URL's format parameter. */
export type Format = "data" | "envelope" | "cloudevents";

type AnyHandler = (data: unknown, meta: EventMeta) => void;

/**
 * A typed wrapper over the browser's EventSource for one /events URL. on()
 * gets the events of one type, onJSON() the others (json events, and in the
 * envelope and cloudevents formats every type without an on() handler),
 * onReset() the bridge.reset frames. Resuming is EventSource's own: it
 * reconnects by itself and sends the last id it saw as Last-Event-ID.
 */
export class BridgeEvents {
  /** The EventSource underneath: for onopen, onerror and readyState. */
  readonly source: EventSource;
  readonly format: Format;
  private readonly stream: string | undefined;
  private readonly typed = new Map<string, AnyHandler[]>();
  private readonly json: Array<(data: JsonValue, meta: EventMeta) => void> = [];
  private readonly resets: Array<(reset: ResetData) => void> = [];

  constructor(url: string, opts?: { withCredentials?: boolean }) {
    const u = new URL(url, typeof location === "undefined" ? undefined : location.href);
    const format = u.searchParams.get("format");
    this.format = format === "envelope" || format === "cloudevents" ? format : "data";
    const streams = u.searchParams.getAll("stream");
    this.stream = streams.length === 1 ? streams[0] : undefined;
    this.source = new EventSource(url, { withCredentials: opts?.withCredentials ?? false });
    this.source.addEventListener(RESET_EVENT, (e: MessageEvent<string>) => {
      const reset = JSON.parse(e.data) as ResetData;
      for (const h of this.resets) h(reset);
    });
    this.source.addEventListener("message", (e: MessageEvent<string>) => this.message(e));
  }

  /** Calls handler with the data of every event named name. */
  on<K extends keyof EventMap>(name: K, handler: (ev: EventMap[K], meta: EventMeta) => void): this {
    let handlers = this.typed.get(name);
    if (handlers === undefined) {
      handlers = [];
      this.typed.set(name, handlers);
      if (this.format === "data") {
        const list = handlers;
        this.source.addEventListener(name, (e: MessageEvent<string>) => {
          const meta: EventMeta = { id: e.lastEventId, stream: this.stream, lastEventId: e.lastEventId, type: name };
          const data: unknown = JSON.parse(e.data);
          for (const h of list) h(data, meta);
        });
      }
    }
    handlers.push(handler as AnyHandler);
    return this;
  }

  /** Calls handler with the data of every event no on() handler takes (see the class). */
  onJSON(handler: (data: JsonValue, meta: EventMeta) => void): this {
    this.json.push(handler);
    return this;
  }

  /** Calls handler with the data of every bridge.reset frame: refetch state, then carry on. */
  onReset(handler: (reset: ResetData) => void): this {
    this.resets.push(handler);
    return this;
  }

  /** Closes the connection for good. */
  close(): void {
    this.source.close();
  }

  private message(e: MessageEvent<string>): void {
    const parsed = JSON.parse(e.data) as JsonValue;
    if (this.format === "data") {
      // An unnamed frame: a json event without a type.
      const meta: EventMeta = { id: e.lastEventId, stream: this.stream, lastEventId: e.lastEventId };
      for (const h of this.json) h(parsed, meta);
      return;
    }
    let meta: EventMeta;
    let data: JsonValue;
    if (this.format === "envelope") {
      const env = parsed as unknown as Envelope;
      meta = { id: env.id, stream: env.stream, lastEventId: e.lastEventId, type: env.type, time: env.time, traceparent: env.traceparent };
      data = env.data;
    } else {
      const ce = parsed as unknown as CloudEvent;
      meta = { id: ce.id, stream: ce.subject, lastEventId: e.lastEventId, type: ce.type, time: ce.time, traceparent: ce.traceparent };
      data = ce.data;
    }
    const handlers = meta.type === undefined ? undefined : this.typed.get(meta.type);
    if (handlers !== undefined) {
      for (const h of handlers) h(data, meta);
      return;
    }
    for (const h of this.json) h(data, meta);
  }
}
`
