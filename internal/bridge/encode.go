package bridge

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	// The example event types are compiled in, so they render and grpcurl
	// finds them through reflection.
	_ "github.com/sse-bridge/bridge/gen/shop/v1"
)

// jsonOptions is the browser contract for typed events; nobody else calls
// protojson. The defaults are deliberate: lowerCamelCase field names (the
// json_name), int64 and uint64 as strings (JavaScript numbers lose precision
// past 2^53), enums as their names, well-known types in their JSON forms, and
// unpopulated fields omitted. Never Multiline or Indent: a frame's data is one
// line.
var jsonOptions = protojson.MarshalOptions{}

// errPayload marks a payload the bridge cannot render: the client's fault.
var errPayload = errors.New("invalid payload")

// payloadError is a client fault in a payload, with what to fix.
func payloadError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errPayload, fmt.Sprintf(format, args...))
}

// encodePayload renders the payload of req as the frame's data (one line of
// JSON) and returns the SSE event name to use when req sets no type: the
// message's full name for typed events, empty for json ones. Errors wrap
// errPayload and say what to fix.
func encodePayload(req *bridgev1.PublishRequest, types *protoregistry.Types) (data []byte, name string, err error) {
	switch p := req.GetPayload().(type) {
	case *bridgev1.PublishRequest_Event:
		return encodeAny(p.Event, types)
	case *bridgev1.PublishRequest_Json:
		data, err := encodeJSON(p.Json)
		return data, "", err
	default:
		return nil, "", payloadError(`no payload: set exactly one of "event" (a typed protobuf message in an Any) or "json" (any JSON value)`)
	}
}

func encodeAny(a *anypb.Any, types *protoregistry.Types) ([]byte, string, error) {
	url := a.GetTypeUrl()
	if url == "" {
		return nil, "", payloadError(`event has no type: set its "@type" (or type_url) to "type.googleapis.com/" followed by the message's full name`)
	}
	full := url[strings.LastIndexByte(url, '/')+1:]
	mt, err := types.FindMessageByURL(url)
	if err != nil {
		return nil, "", payloadError("event type %q is unknown to this bridge: it renders only message types it was built with; publish the event as \"json\" instead, or add its proto package to the bridge", full)
	}
	msg := mt.New().Interface()
	if err := (proto.UnmarshalOptions{Resolver: types}).Unmarshal(a.GetValue(), msg); err != nil {
		return nil, "", payloadError("event value is not a valid %s: %v", full, err)
	}
	opts := jsonOptions
	opts.Resolver = types // for Any fields inside the event
	data, err := opts.Marshal(msg)
	if err != nil {
		// For example a Timestamp out of range: the value is the client's.
		return nil, "", payloadError("event of type %s cannot be rendered as JSON: %v", full, err)
	}
	return data, string(msg.ProtoReflect().Descriptor().FullName()), nil
}

func encodeJSON(v *structpb.Value) ([]byte, error) {
	if v.GetKind() == nil {
		return nil, payloadError(`json has no value: give any JSON value, for example {"hello": "world"}`)
	}
	data, err := jsonOptions.Marshal(v)
	if err != nil {
		// NaN and infinities have no JSON form.
		return nil, payloadError("json cannot be rendered: %v", err)
	}
	return data, nil
}
