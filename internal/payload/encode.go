// Package payload turns the payload of a Publish request into the JSON data
// of an SSE frame: the [Registry] of event types the bridge knows (compiled
// in, or loaded from descriptor sets, and reloadable) and the [Encoder],
// which holds the protojson options that are the browser contract. It is
// shared by the bridge and the bridge publish client, and imports nothing
// else of the module but the generated code.
package payload

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	// The example event types are compiled in, so they render and grpcurl
	// finds them through reflection.
	_ "github.com/sse-bridge/bridge/gen/shop/v1"
)

// Encoder renders payloads as frame data; nobody else calls protojson. The
// defaults are the browser contract: lowerCamelCase field names (the
// json_name), int64 and uint64 as strings (JavaScript numbers lose precision
// past 2^53), enums as their names, well-known types in their JSON forms,
// unpopulated fields omitted, unknown fields dropped. Two options may change
// names and unpopulated fields per bridge. Never Multiline or Indent: a
// frame's data is one line.
//
// An Encoder is safe for concurrent use.
type Encoder struct {
	types *Registry
	opts  protojson.MarshalOptions
	value valueWriter // json payloads without protojson, same bytes
}

// NewEncoder returns an Encoder resolving types with types. protoNames
// selects the proto field names instead of lowerCamelCase; emitDefaults
// renders unpopulated fields with their default values.
func NewEncoder(types *Registry, protoNames, emitDefaults bool) *Encoder {
	opts := protojson.MarshalOptions{
		UseProtoNames:   protoNames,
		EmitUnpopulated: emitDefaults,
		Resolver:        types, // for Any fields inside events
	}
	return &Encoder{types: types, opts: opts, value: newValueWriter(opts)}
}

// ErrInvalid marks a payload the bridge cannot render: the client's fault.
var ErrInvalid = errors.New("invalid payload")

// payloadError is a client fault in a payload, with what to fix.
func payloadError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Payload renders the payload of req as the frame's data (one line of
// JSON) and returns the SSE event name to use when req sets no type: the
// message's full name for typed events, empty for json ones. Errors wrap
// ErrInvalid and say what to fix.
func (e *Encoder) Payload(req *bridgev1.PublishRequest) (data []byte, name string, err error) {
	switch p := req.GetPayload().(type) {
	case *bridgev1.PublishRequest_Event:
		return e.typed(p.Event)
	case *bridgev1.PublishRequest_Json:
		data, err := e.json(p.Json)
		return data, "", err
	default:
		if data, ok := rendered(req); ok { // DecodeRequest rendered it (wire.go)
			return data, "", nil
		}
		return nil, "", payloadError(`no payload: set exactly one of "event" (a typed protobuf message in an Any) or "json" (any JSON value)`)
	}
}

func (e *Encoder) typed(a *anypb.Any) ([]byte, string, error) {
	url := a.GetTypeUrl()
	if url == "" {
		return nil, "", payloadError(`event has no type: set its "@type" (or type_url) to "type.googleapis.com/" followed by the message's full name`)
	}
	full := url[strings.LastIndexByte(url, '/')+1:]
	mt, err := e.types.FindMessageByURL(url)
	if err != nil {
		return nil, "", payloadError("event type %q is unknown to this bridge: build a descriptor set of its proto files (buf build -o events.binpb), start the bridge with --descriptor-set events.binpb (or add it and send SIGHUP), or publish the event as \"json\"", full)
	}
	msg := mt.New().Interface()
	if err := (proto.UnmarshalOptions{Resolver: e.types}).Unmarshal(a.GetValue(), msg); err != nil {
		return nil, "", payloadError("event value is not a valid %s: %v", full, err)
	}
	data, err := e.opts.Marshal(msg)
	if err != nil {
		// For example a Timestamp out of range: the value is the client's.
		return nil, "", payloadError("event of type %s cannot be rendered as JSON: %v", full, err)
	}
	return data, string(msg.ProtoReflect().Descriptor().FullName()), nil
}

func (e *Encoder) json(v *structpb.Value) ([]byte, error) {
	if v.GetKind() == nil {
		return nil, payloadError(`json has no value: give any JSON value, for example {"hello": "world"}`)
	}
	if data, ok := e.value.render(v); ok {
		return data, nil
	}
	data, err := e.opts.Marshal(v)
	if err != nil {
		// NaN and infinities have no JSON form.
		return nil, payloadError("json cannot be rendered: %v", err)
	}
	return data, nil
}
