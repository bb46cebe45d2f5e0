package bridge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/r3labs/sse/v2"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
)

// wireHarness renders library events to the bytes a browser receives: a
// library server configured by newHub, served over loopback HTTP, with one
// subscriber whose body is cut into chunks at marker comments.
type wireHarness struct {
	lib    *sse.Server
	chunks chan []byte
	marks  int
}

const wireMark = "wire-mark-"

func newWireHarness(tb testing.TB) *wireHarness {
	tb.Helper()
	lib := newHub(NewMemoryEngine(10, time.Hour), 64, 10, slog.New(slog.DiscardHandler)).lib
	lib.CreateStream("wire")
	ts := httptest.NewServer(lib)
	ctx, cancel := context.WithCancel(context.WithoutCancel(tb.Context()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/?stream=wire", nil)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := ts.Client().Do(req) //nolint:bodyclose // closed at cleanup, once the reader is done
	if err != nil {
		tb.Fatal(err)
	}
	w := &wireHarness{lib: lib, chunks: make(chan []byte, 1)}
	done := make(chan struct{})
	go func() { // ends when the response body does, at cleanup
		defer close(done)
		r := bufio.NewReader(resp.Body)
		var buf []byte
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			if bytes.HasPrefix(line, []byte(": "+wireMark)) {
				if _, err := r.ReadBytes('\n'); err != nil { // the mark's blank line
					return
				}
				w.chunks <- buf
				buf = nil
				continue
			}
			buf = append(buf, line...)
		}
	}()
	tb.Cleanup(func() {
		cancel()
		_ = resp.Body.Close()
		<-done
		ts.Close() // waits for the library's handler, so its subscriber is gone
		lib.Close()
	})
	return w
}

// write publishes frames to the subscriber and returns the bytes it
// received for them.
func (w *wireHarness) write(t *testing.T, frames []*sse.Event) []byte {
	t.Helper()
	for _, fr := range frames {
		w.lib.Publish("wire", fr)
	}
	w.marks++
	w.lib.Publish("wire", &sse.Event{Comment: []byte(wireMark + strconv.Itoa(w.marks))})
	select {
	case b := <-w.chunks:
		return b
	case <-time.After(hubWaitLimit):
		t.Fatalf("frames did not arrive within %v", hubWaitLimit)
		return nil
	}
}

// FuzzFramesParseBack: every frame the bridge writes (an event in each
// format, a group of events as deliver builds it, a reset frame) reaches a
// browser, parsed the way the HTML standard says, as exactly the events it
// was made from: same ids, names and data, nothing split, nothing injected.
// Events come from the encoder and the publish checks, so they are the
// events the bridge can make from whatever a publisher sends.
func FuzzFramesParseBack(f *testing.F) {
	f.Add("hello", []byte{0x0a, 0x03, 'o', '-', '1'}, "shop.v1.OrderCreated", "orders", uint64(1), uint8(3))
	f.Add("line\nfeed\rcr\x00nul\u2028", []byte{}, "a\nid: 666", "a.b", uint64(1<<63), uint8(0))
	f.Add("data: x\n\nid: 9", []byte{0xff}, "note\r", "", uint64(0), uint8(200))
	f.Add("", []byte{0x12, 0x02, 0x08, 0x01}, "bridge.reset", "x..y", uint64(18446744073709551615), uint8(1))
	f.Add(":comment", []byte(nil), "event", "s", uint64(42), uint8(64))
	enc := compiledInEncoder(f)
	w := newWireHarness(f)
	f.Fuzz(func(t *testing.T, s string, value []byte, typ, stream string, first uint64, n uint8) {
		if typeNameError(typ) != nil {
			if typ != ResetEvent && len(typ) <= MaxTypeName && !bytes.ContainsAny([]byte(typ), "\r\n\x00") {
				t.Fatalf("typeNameError(%q) refused a one-line name", typ)
			}
			typ = "" // Publish refuses it: not an event the bridge can make
		}
		if !utf8.ValidString(typ) {
			// PublishRequest.type is a proto3 string: the gRPC server's
			// decoder refuses invalid UTF-8 before Publish runs.
			typ = ""
		}
		if !ValidStreamName(stream) {
			stream = "s"
		}
		obj, _ := structpb.NewStruct(map[string]any{"s": s, "n": float64(len(s))})
		reqs := []*bridgev1.PublishRequest{
			{Type: typ, Payload: &bridgev1.PublishRequest_Json{Json: structpb.NewStringValue(s)}},
			{Type: typ, Payload: &bridgev1.PublishRequest_Json{Json: structpb.NewStructValue(obj)}},
			{Payload: &bridgev1.PublishRequest_Json{Json: structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue(s), structpb.NewNullValue()}})}},
		}
		for _, known := range []string{"shop.v1.OrderCreated", "google.protobuf.Timestamp", "google.protobuf.Struct"} {
			reqs = append(reqs, &bridgev1.PublishRequest{Type: typ, Payload: &bridgev1.PublishRequest_Event{Event: &anypb.Any{TypeUrl: "type.googleapis.com/" + known, Value: value}}})
		}
		// Ids increase, as an engine assigns them; they may start anywhere.
		id := min(first, ^uint64(0)-uint64(len(reqs))*256)
		var events []*Event
		for i, req := range reqs {
			data, name, err := enc.Payload(req)
			if err != nil {
				continue // Publish answers InvalidArgument: no frame
			}
			if req.GetType() != "" {
				name = req.GetType()
			}
			id += 1 + uint64(n)*uint64(i%2)
			events = append(events, &Event{ID: id, Stream: stream, Type: name, Data: data, Time: time.Unix(int64(id%(1<<40)), int64(n))})
		}
		if len(events) == 0 {
			return
		}
		for format := range numFormats {
			var frames []*sse.Event
			var want []sseEvent
			for _, ev := range events {
				frames = append(frames, ev.frame(format, defaultCloudEvents))
				want = append(want, expectedEvent(ev, format))
			}
			if len(events) > 1 {
				frames = append(frames, (&group{events: events}).frame(format, defaultCloudEvents))
				for _, ev := range events {
					want = append(want, expectedEvent(ev, format))
				}
			}
			frames = append(frames, resetFrame(id, s))
			want = append(want, sseEvent{ID: strconv.FormatUint(id, 10), Type: ResetEvent, Data: resetData(t, s, id)})

			raw := w.write(t, frames)
			got := parseSSE(raw)
			if len(got.Events) != len(want) || got.Unterminated != "" {
				t.Fatalf("format %d: %d events parsed from %q, want %d", format, len(got.Events), raw, len(want))
			}
			for i := range want {
				if got.Events[i] != want[i] {
					t.Fatalf("format %d: event %d parsed as %+v, want %+v\nwire: %q", format, i, got.Events[i], want[i], raw)
				}
			}
			for i, ev := range events {
				checkEventData(t, ev, format, got.Events[i].Data)
			}
		}
	})
}

// expectedEvent is what a browser must dispatch for ev in format.
func expectedEvent(ev *Event, format Format) sseEvent {
	typ := "message"
	if format == FormatData && ev.Type != "" {
		typ = ev.Type
	}
	return sseEvent{ID: strconv.FormatUint(ev.ID, 10), Type: typ, Data: string(ev.frame(format, defaultCloudEvents).Data)}
}

// resetData is the data of a reset frame, checked to say what it means:
// the reason, and the id to resume from.
func resetData(t *testing.T, reason string, head uint64) string {
	t.Helper()
	data := resetFrame(head, reason).Data
	var got struct{ Reason, LastEventID string }
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("reset data %q: %v", data, err)
	}
	var wantReason string
	_ = json.Unmarshal([]byte(mustJSON(t, reason)), &wantReason) // as JSON carries it: invalid UTF-8 replaced
	if got.Reason != wantReason || got.LastEventID != strconv.FormatUint(head, 10) {
		t.Fatalf("reset data %q, want reason %q and lastEventId %d", data, wantReason, head)
	}
	return string(data)
}

// checkEventData decodes the data a browser got for ev and checks it says
// what ev is: the payload itself, or an envelope or CloudEvent around it
// naming the event's id, stream and type.
func checkEventData(t *testing.T, ev *Event, format Format, data string) {
	t.Helper()
	var payload json.RawMessage
	switch format {
	case FormatData:
		payload = json.RawMessage(data)
	case FormatEnvelope:
		var env struct {
			ID, Stream, Type string
			Data             json.RawMessage
		}
		if err := json.Unmarshal([]byte(data), &env); err != nil {
			t.Fatalf("envelope %q: %v", data, err)
		}
		if env.ID != strconv.FormatUint(ev.ID, 10) || env.Stream != ev.Stream || env.Type != ev.Type {
			t.Fatalf("envelope %q names id %s stream %q type %q, want %d %q %q", data, env.ID, env.Stream, env.Type, ev.ID, ev.Stream, ev.Type)
		}
		payload = env.Data
	case FormatCloudEvents:
		var ce struct {
			ID, Subject, Type, SpecVersion string
			Data                           json.RawMessage
		}
		if err := json.Unmarshal([]byte(data), &ce); err != nil {
			t.Fatalf("CloudEvent %q: %v", data, err)
		}
		wantType := ev.Type
		if wantType == "" {
			wantType = untypedCloudEventsType
		}
		if ce.ID != strconv.FormatUint(ev.ID, 10) || ce.Subject != ev.Stream || ce.Type != wantType || ce.SpecVersion != "1.0" {
			t.Fatalf("CloudEvent %q, want id %d subject %q type %q", data, ev.ID, ev.Stream, wantType)
		}
		payload = ce.Data
	}
	var got, want any
	if err := json.Unmarshal(payload, &got); err != nil {
		t.Fatalf("format %d: payload %q is not JSON: %v", format, payload, err)
	}
	if err := json.Unmarshal(ev.Data, &want); err != nil {
		t.Fatalf("event data %q is not JSON: %v", ev.Data, err)
	}
	if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
		t.Fatalf("format %d: payload %s, want %s", format, g, w)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
