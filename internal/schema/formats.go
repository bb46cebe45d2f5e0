package schema

import "maps"

// ResetReasons are the values of a bridge.reset frame's reason, as the
// engines of internal/bridge name them (a test there keeps the two lists
// equal).
var ResetReasons = []string{"too_far_behind", "history_trimmed", "history_lost", "unknown_id"}

const (
	// idPattern: an event id, strconv.FormatUint.
	idPattern = uint64Pattern
	// streamPattern: a stream name (internal/bridge.ValidStreamName).
	streamPattern = `^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`
	// timePattern: when the bridge accepted an event, time.RFC3339Nano in
	// UTC (no trailing zeros in the fraction).
	timePattern = `^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{0,8}[1-9])?Z$`
)

func idSchema(what string) Schema {
	return Schema{"type": "string", "pattern": idPattern, "description": what + ": an unsigned 64-bit integer, as a string of decimal digits"}
}

func timeSchema() Schema {
	return Schema{"type": "string", "format": "date-time", "pattern": timePattern, "description": "when the bridge accepted the event, RFC 3339 in UTC"}
}

func streamSchema(what string) Schema {
	return Schema{"type": "string", "pattern": streamPattern, "description": what}
}

// wrap returns a document whose member data is data (a document of
// [Message]; nil: any JSON, the data of a json event or of any event), with
// data's $defs moved to the top so its references still resolve.
func wrap(title, description string, props Schema, required []any, data Schema) Schema {
	doc := Schema{
		"$schema":              Draft,
		"title":                title,
		"description":          description,
		"type":                 "object",
		"properties":           props,
		"required":             required,
		"additionalProperties": false,
	}
	if data == nil {
		props["data"] = Schema{"description": "the event's data: any JSON"}
		return doc
	}
	if defs, ok := data["$defs"].(Schema); ok {
		doc["$defs"] = maps.Clone(defs)
	}
	props["data"] = Schema{"$ref": data["$ref"], "description": "the event's data"}
	return doc
}

// Envelope is the schema of a frame's data in the envelope format, whose
// data member is data (a document of [Message]; nil for any JSON).
func Envelope(data Schema) Schema {
	return wrap("envelope", "format=envelope: the event with its id, stream, type and time", Schema{
		"id":     idSchema("the event's id, the frame's id"),
		"stream": streamSchema("the stream the event was published to"),
		"type":   Schema{"type": "string", "minLength": 1, "description": "the publisher's type, else the message's full name for a typed event; left out for a json event without one"},
		"time":   timeSchema(),
	}, []any{"id", "stream", "time", "data"}, data)
}

// CloudEvents is the schema of a frame's data in the cloudevents format (a
// CloudEvents 1.0 event in structured JSON mode), whose data member is data
// (a document of [Message]; nil for any JSON). dataschema, the absolute URI
// of the data's schema (/types/NAME under the bridge's --public-url), is
// optional: frames carry it only when the bridge has a public URL.
func CloudEvents(data Schema) Schema {
	return wrap("cloudevents", "format=cloudevents: a CloudEvents 1.0 event, structured JSON mode", Schema{
		"specversion":     Schema{"const": "1.0"},
		"id":              idSchema("the event's id, the frame's id"),
		"source":          Schema{"type": "string", "minLength": 1, "format": "uri-reference", "description": "the bridge's --cloudevents-source"},
		"type":            Schema{"type": "string", "minLength": 1, "description": "the publisher's type, else the message's full name for a typed event, bridge.json for a json event"},
		"subject":         streamSchema("the stream the event was published to"),
		"time":            timeSchema(),
		"datacontenttype": Schema{"const": "application/json"},
		"dataschema":      Schema{"type": "string", "format": "uri", "description": "the absolute URI of the data's schema, /types/TYPE under the bridge's --public-url; only when it has one"},
	}, []any{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"}, data)
}

// Reset is the schema of the data of a bridge.reset frame, the same in
// every format.
func Reset() Schema {
	reasons := make([]any, len(ResetReasons))
	for i, r := range ResetReasons {
		reasons[i] = r
	}
	return Schema{
		"$schema":     Draft,
		"title":       "bridge.reset",
		"description": "history cannot cover the gap since the client's Last-Event-ID: refetch state, then carry on with the live events that follow",
		"type":        "object",
		"properties": Schema{
			"reason":      Schema{"enum": reasons, "description": "why history could not cover the gap; every reason means the same to a page"},
			"lastEventId": idSchema("the newest event id when the reset was sent, the frame's id"),
		},
		"required":             []any{"reason", "lastEventId"},
		"additionalProperties": false,
	}
}
