package bridge

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/payload"
	"github.com/sse-bridge/bridge/internal/payload/payloadtest"
	"github.com/sse-bridge/bridge/internal/schema"
	"github.com/sse-bridge/bridge/internal/schema/schematest"
)

// golden is one golden file: an event as the bridge rendered it.
type golden struct {
	file  string
	event string          // the SSE event name; "" for a json event or a format's frame
	data  json.RawMessage // the frame's data
	// protoNames, emitDefaults: the mapping it was rendered with; format:
	// the format of a frame golden ("" for a payload golden).
	protoNames, emitDefaults bool
	format                   string
}

// readGoldens reads the golden files of internal/payload (payloads) and of
// this package (frames of every format).
func readGoldens(t *testing.T) []golden {
	t.Helper()
	var out []golden
	for _, dir := range []string{filepath.Join("..", "payload", "testdata", "golden"), filepath.Join("testdata", "golden")} {
		files, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil || len(files) == 0 {
			t.Fatalf("golden files in %s: %v (%d)", dir, err, len(files))
		}
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var g struct {
				Event string          `json:"event"`
				Data  json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal(raw, &g); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			base := strings.TrimSuffix(filepath.Base(f), ".json")
			gd := golden{file: f, event: g.Event, data: g.Data,
				protoNames: strings.Contains(base, "proto_names"), emitDefaults: strings.Contains(base, "emit_defaults")}
			if strings.HasPrefix(base, "format_") {
				gd.format = base[strings.LastIndexByte(base, '_')+1:]
			}
			out = append(out, gd)
		}
	}
	return out
}

// typesClient reads a bridge's /types and compiles what it serves, once per
// URL.
type typesClient struct {
	t          *testing.T
	base       string
	validators map[string]*schematest.Validator
}

func (c *typesClient) validator(path string) *schematest.Validator {
	c.t.Helper()
	if v, ok := c.validators[path]; ok {
		return v
	}
	req, err := http.NewRequestWithContext(c.t.Context(), http.MethodGet, c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		c.t.Fatalf("GET %s = %d %v: %s", path, resp.StatusCode, err, body)
	}
	if strings.HasPrefix(path, "/types?") || path == "/types" {
		c.t.Fatalf("validator(%s): the list is no schema", path)
	}
	v := schematest.MustCompile(c.t, body)
	c.validators[path] = v
	return v
}

// list returns the /types list.
func (c *typesClient) list() schema.List {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.t.Context(), http.MethodGet, c.base+"/types", nil)
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var l schema.List
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		c.t.Fatal(err)
	}
	return l
}

// formatValidator is the schema of a frame of an event named event in
// format: the type's, or for a json event (no type) the list's envelope and
// cloudevents schemas (their data: any JSON); nil for a json event's data.
func (c *typesClient) formatValidator(event string, format Format, l schema.List) *schematest.Validator {
	c.t.Helper()
	names := [...]string{FormatData: "data", FormatEnvelope: "envelope", FormatCloudEvents: "cloudevents"}
	if event != "" {
		return c.validator("/types/" + event + "?format=" + names[format])
	}
	switch format {
	case FormatEnvelope:
		return schematest.MustCompile(c.t, l.Envelope)
	case FormatCloudEvents:
		return schematest.MustCompile(c.t, l.CloudEvents)
	}
	return nil
}

// TestGoldenEventsMatchTheServedSchemas renders every golden event again
// with each mapping (--json-names camel and proto, with and without
// --emit-defaults), frames it in each format with the bridge's own framing,
// and validates each frame's data against the schema a bridge with that
// mapping serves at /types; and validates the golden files themselves
// against the schemas of the mapping they were rendered with.
func TestGoldenEventsMatchTheServedSchemas(t *testing.T) {
	t.Parallel()
	goldens := readGoldens(t)
	set := payloadtest.WriteSet(t, payloadtest.MixedFile(), payloadtest.WrappersFile())
	validated := 0
	for _, opts := range []struct{ protoNames, emitDefaults bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		s, err := New(Config{DescriptorSets: []string{set}, JSONProtoNames: opts.protoNames, JSONEmitDefaults: opts.emitDefaults})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		s.registerTypes(mux, &s.cfg, nil, nil)
		srv := httptest.NewServer(mux)
		c := &typesClient{t: t, base: srv.URL, validators: map[string]*schematest.Validator{}}
		l := c.list()
		enc := payload.NewEncoder(s.types, s.cfg.JSONProtoNames, s.cfg.JSONEmitDefaults)
		// With --public-url, cloudevents frames of typed events name their
		// schema: the cloudevents schema checks it is a URI.
		ce := newCloudEventsAttrs(Config{CloudEventsSource: s.cfg.CloudEventsSource, PublicURL: testPublicURL}, s.types)
		at := time.Date(2026, 11, 25, 10, 0, 0, 120_000_000, time.UTC)
		for i, g := range goldens {
			// The golden itself, in the mapping it was rendered with.
			if g.protoNames == opts.protoNames && g.emitDefaults == opts.emitDefaults {
				f := FormatData
				if p, ok := parseFormat(g.format); ok {
					f = p
				}
				event := g.event
				if g.format != "" && strings.Contains(g.file, "typed") {
					event = "shop.v1.OrderCreated"
				}
				if v := c.formatValidator(event, f, l); v != nil {
					v.Check(t, g.file, g.data)
					validated++
				}
			}
			if g.format != "" && g.format != "data" {
				continue // a frame golden's payload is its data golden's
			}
			// The golden event, rendered again in this mapping.
			req := &bridgev1.PublishRequest{Stream: "orders"}
			if g.event == "" {
				var v structpb.Value
				if err := protojson.Unmarshal(g.data, &v); err != nil {
					t.Fatalf("%s: %v", g.file, err)
				}
				req.Payload = &bridgev1.PublishRequest_Json{Json: &v}
			} else {
				mt, err := s.types.FindMessageByName(protoreflect.FullName(g.event))
				if err != nil {
					t.Fatal(err)
				}
				m := mt.New().Interface()
				if err := (protojson.UnmarshalOptions{Resolver: s.types}).Unmarshal(g.data, m); err != nil {
					t.Fatalf("%s: %v", g.file, err)
				}
				a, err := anypb.New(m)
				if err != nil {
					t.Fatal(err)
				}
				req.Payload = &bridgev1.PublishRequest_Event{Event: a}
			}
			data, name, err := enc.Payload(req)
			if err != nil {
				t.Fatalf("%s: render: %v", g.file, err)
			}
			ev := &Event{ID: 1795633221073629 + uint64(i), Stream: "orders.eu", Type: name, Data: data, Time: at}
			for _, f := range []Format{FormatData, FormatEnvelope, FormatCloudEvents} {
				fr := ev.frame(f, ce)
				if f == FormatCloudEvents {
					checkDataSchema(t, g.file, fr.Data, g.event)
				}
				if v := c.formatValidator(g.event, f, l); v != nil {
					v.Check(t, g.file+" rendered again", fr.Data)
					validated++
				}
			}
		}
		srv.Close()
	}
	t.Logf("%d golden frames validated", validated)
	if validated < 60 {
		t.Errorf("only %d golden frames validated", validated)
	}
}

// testPublicURL is the --public-url of the frames TestGoldenEventsMatchTheServedSchemas builds.
const testPublicURL = "https://events.acme.example/bridge/"

// checkDataSchema checks the dataschema of a cloudevents frame's data: the
// type's /types URL under testPublicURL for a typed event, none for a json
// event (event "").
func checkDataSchema(t *testing.T, what string, data []byte, event string) {
	t.Helper()
	var ce struct {
		DataSchema *string `json:"dataschema"`
	}
	if err := json.Unmarshal(data, &ce); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	switch {
	case event == "" && ce.DataSchema != nil:
		t.Errorf("%s: a json event's cloudevents frame has dataschema %q, want none", what, *ce.DataSchema)
	case event != "" && (ce.DataSchema == nil || *ce.DataSchema != "https://events.acme.example/bridge/types/"+event):
		t.Errorf("%s: cloudevents frame %s: want dataschema https://events.acme.example/bridge/types/%s", what, data, event)
	}
}

// TestResetFramesMatchTheServedSchema validates the data of reset frames of
// every reason against /types/bridge.reset, and keeps the schema's reasons
// those of the engines.
func TestResetFramesMatchTheServedSchema(t *testing.T) {
	t.Parallel()
	reasons := []string{ResetTooFarBehind, ResetTrimmed, ResetHistoryLost, ResetUnknownID}
	if !slices.Equal(slices.Sorted(slices.Values(reasons)), slices.Sorted(slices.Values(schema.ResetReasons))) {
		t.Errorf("schema.ResetReasons = %v, the engines' reasons %v: keep them the same", schema.ResetReasons, reasons)
	}
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.registerTypes(mux, &s.cfg, nil, nil)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := &typesClient{t: t, base: srv.URL, validators: map[string]*schematest.Validator{}}
	v := c.validator("/types/" + ResetEvent)
	for _, r := range reasons {
		for _, head := range []uint64{0, 1795633221073629, math.MaxUint64} {
			v.Check(t, "reset "+r, resetFrame(head, r).Data)
		}
	}
	if v.Validate([]byte(`{"reason":"some_new_reason","lastEventId":"1"}`)) == nil {
		t.Errorf("a reason no engine gives validates")
	}
}
