package bridge

import (
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/r3labs/sse/v2"
)

// Event is one published event as engines store it and the hub sends it.
// After an engine assigned its ID, an Event's fields are never modified, so
// one *Event is shared by history, every connection and every goroutine that
// reads it; only its frames are built later, each once, safely for
// concurrent use.
type Event struct {
	// ID is unique and increases across all streams of the bridge.
	ID uint64
	// Stream is the stream the event was published to.
	Stream string
	// Type is the SSE event name; empty means no `event:` line.
	Type string
	// Data is the frame's data: one line of JSON.
	Data []byte
	// Time is when the bridge accepted the event.
	Time time.Time
	// Key is the publisher's idempotency key; empty for none. An engine
	// stores at most one event per key and stream within its dedupe window.
	Key string
	// Trace is the trace context of the event's publish, nil when tracing
	// was off where it was published (tracing.go).
	Trace *EventTrace

	// frames holds the library event of each format, built at most once per
	// event (under mu) and shared by every connection: EncodeBase64 is off,
	// so the library never mutates it. A mutex and three pointers take 32
	// bytes where three sync.Once slots took 72: the struct is on every
	// event history holds.
	mu     sync.Mutex
	frames [numFormats]atomic.Pointer[sse.Event]

	// charge, when set, is the count of an engine that keeps the event in
	// memory (the memory engine's bytes of frames, which count against
	// --history-memory); the frames built while the event is in its history
	// are added to it. charged is what this event added, or -1 once the
	// event left that history (uncharge): frames built after that are
	// charged to no one, since history does not hold them. Both are set
	// before the event is shared.
	charge  *atomic.Int64
	charged atomic.Int64
}

// Format is how a subscriber wants events framed, chosen with the `format`
// query parameter.
type Format uint8

// The formats. In the envelope formats the type travels inside the JSON, so
// their frames carry no `event:` line and one onmessage handler sees every
// event; bridge.reset frames keep their name in every format.
const (
	// FormatData ("data", the default): data is the payload itself, and
	// `event:` names its type.
	FormatData Format = iota
	// FormatEnvelope ("envelope"): data is
	// {"id","stream","type","time","traceparent","data"}, traceparent
	// only for a traced publish.
	FormatEnvelope
	// FormatCloudEvents ("cloudevents"): data is a CloudEvents 1.0 event in
	// structured JSON mode.
	FormatCloudEvents
	numFormats
)

// parseFormat maps a `format` query value to its Format.
func parseFormat(s string) (Format, bool) {
	switch s {
	case "", "data":
		return FormatData, true
	case "envelope":
		return FormatEnvelope, true
	case "cloudevents":
		return FormatCloudEvents, true
	}
	return 0, false
}

// untypedCloudEventsType is the CloudEvents `type` of a json event published
// without a type: CloudEvents requires one.
const untypedCloudEventsType = "bridge.json"

// cloudEventsAttrs are the CloudEvents attributes of a bridge's frames that
// come from its configuration rather than from the event.
type cloudEventsAttrs struct {
	// source is the `source` (--cloudevents-source; the stream, which tells
	// events apart, is the `subject`).
	source string
	// schemaBase is --public-url followed by /types/, empty when unset: an
	// event whose type names a message the bridge renders then carries
	// `dataschema` schemaBase + type, the schema /types serves for it.
	// CloudEvents wants an absolute URI there, which only the operator
	// knows (behind a proxy the request's Host is not the public one), so
	// without --public-url frames carry none.
	schemaBase string
	// known reports whether a type names a message the bridge renders now;
	// set whenever schemaBase is.
	known func(typ string) bool
}

// defaultCloudEvents are the attributes of a bridge with the default
// configuration.
var defaultCloudEvents = &cloudEventsAttrs{source: defaultCloudEventsSource}

// dataSchema returns the dataschema of an event of type typ, empty for none.
func (a *cloudEventsAttrs) dataSchema(typ string) string {
	if a.schemaBase == "" || typ == "" || !a.known(typ) {
		return ""
	}
	return a.schemaBase + typ
}

// frame returns the library event of e in format f, building it the first
// time it is asked for; ce are the bridge's CloudEvents attributes. One
// bridge passes the same ones, so the frame built first serves every later
// call.
func (e *Event) frame(f Format, ce *cloudEventsAttrs) *sse.Event {
	if fr := e.frames[f].Load(); fr != nil {
		return fr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if fr := e.frames[f].Load(); fr != nil { // built while we waited
		return fr
	}
	box := new(frameBox)
	fr := &box.Event
	fr.ID = strconv.AppendUint(box.id[:0], e.ID, 10)
	switch f {
	case FormatEnvelope:
		fr.Data = e.envelope()
	case FormatCloudEvents:
		fr.Data = e.cloudEvent(ce)
	default:
		fr.Data = e.Data
		if e.Type != "" {
			fr.Event = []byte(e.Type)
		}
	}
	e.frames[f].Store(fr)
	if e.charge != nil {
		e.chargeFrame(frameCost(f, fr))
	}
	return fr
}

// frameBox is a library event and the bytes of its id, allocated together:
// a frame costs one allocation where the event and its id took three.
type frameBox struct {
	sse.Event
	id [maxIDDigits]byte
}

// maxIDDigits is the length of the longest uint64 in decimal.
const maxIDDigits = 20

// chargeFrame adds n bytes of a frame just built to e.charge, unless e left
// the history that charges it. An uncharge between the CompareAndSwap and
// the Add takes n out before it is added: the count dips for an instant
// and ends exact.
func (e *Event) chargeFrame(n int64) {
	for {
		c := e.charged.Load()
		if c < 0 {
			return
		}
		if e.charged.CompareAndSwap(c, c+n) {
			e.charge.Add(n)
			return
		}
	}
}

// uncharge takes what e's frames added to e.charge back out of it, once e
// left the history that charged them; frames built later are not charged.
// Call it at most once, after the engine set charge.
func (e *Event) uncharge() {
	if c := e.charged.Swap(-1); c > 0 {
		e.charge.Add(-c)
	}
}

func (e *Event) envelope() []byte {
	//nolint:errchkjson // strings and a valid json.RawMessage always marshal
	b, _ := json.Marshal(struct {
		ID     string          `json:"id"`
		Stream string          `json:"stream"`
		Type   string          `json:"type,omitempty"`
		Time   string          `json:"time"`
		Trace  string          `json:"traceparent,omitempty"`
		Data   json.RawMessage `json:"data"`
	}{strconv.FormatUint(e.ID, 10), e.Stream, e.Type, e.timeString(), e.pageTraceParent(), e.Data})
	return b
}

func (e *Event) cloudEvent(ce *cloudEventsAttrs) []byte {
	typ := e.Type
	if typ == "" {
		typ = untypedCloudEventsType
	}
	// dataschema names the schema of the event's type: its message's when
	// the type is a message's full name (a publisher that names its event
	// after a message declares that type, as EventMap of the generated
	// TypeScript does).
	//nolint:errchkjson // strings and a valid json.RawMessage always marshal
	b, _ := json.Marshal(struct {
		SpecVersion     string          `json:"specversion"`
		ID              string          `json:"id"`
		Source          string          `json:"source"`
		Type            string          `json:"type"`
		Subject         string          `json:"subject"`
		Time            string          `json:"time"`
		DataContentType string          `json:"datacontenttype"`
		DataSchema      string          `json:"dataschema,omitempty"`
		TraceParent     string          `json:"traceparent,omitempty"`
		Data            json.RawMessage `json:"data"`
	}{"1.0", strconv.FormatUint(e.ID, 10), ce.source, typ, e.Stream, e.timeString(), "application/json", ce.dataSchema(e.Type), e.pageTraceParent(), e.Data})
	return b
}

func (e *Event) timeString() string { return e.Time.UTC().Format(time.RFC3339Nano) }
