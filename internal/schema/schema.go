// Package schema describes the JSON the bridge writes as JSON Schema (draft
// 2020-12): the data of each event type, exactly as the protojson mapping in
// force renders it ([Message]), the envelope and CloudEvents formats around
// it ([Envelope], [CloudEvents]) and the data of a bridge.reset frame
// ([Reset]). [Handler] serves them at /types. The schemas describe what the
// bridge writes, not everything protojson would read: an int64 is a string
// of digits, never a number.
//
// It imports nothing of the module but internal/payload (the registry the
// handler lists).
package schema

import (
	"math"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Draft is the JSON Schema dialect of every schema here.
const Draft = "https://json-schema.org/draft/2020-12/schema"

// Schema is a JSON Schema as a JSON object. encoding/json writes its keys
// sorted, so a schema's JSON is deterministic.
type Schema = map[string]any

// Options are the protojson options in force: the bridge's --json-names and
// --emit-defaults. They decide the schema as they decide the JSON.
type Options struct {
	// ProtoNames: fields are named as in the proto file (order_id), not
	// lowerCamelCase (orderId, the json_name).
	ProtoNames bool
	// EmitDefaults: every field outside a oneof is present, at its default
	// value when unset ("", 0, false, [], {}, or null for a field with
	// presence: a message, a proto2 optional), so it is required.
	EmitDefaults bool
	// Extensions, when set, lists the extensions a message may carry
	// (rendered as "[full.name]" members); the bridge's type registry. Without
	// it a message declares no extension members.
	Extensions Extensions
}

// Extensions lists the extensions of a message type; a
// protoregistry.Types and a payload.Registry are Extensions.
type Extensions interface {
	RangeExtensionsByMessage(message protoreflect.FullName, f func(protoreflect.ExtensionType) bool)
}

// Message returns the schema of the JSON an event of type md renders as:
// every message type reached (md included) is one entry of $defs, keyed by
// its full name, and the document refers to md's. Enum types have $defs
// entries too.
func Message(md protoreflect.MessageDescriptor, o Options) Schema {
	g := &generator{o: o, defs: Schema{}}
	ref := g.message(md)
	return Schema{
		"$schema": Draft,
		"title":   string(md.FullName()),
		"$ref":    ref["$ref"],
		"$defs":   g.defs,
	}
}

type generator struct {
	o    Options
	defs Schema
}

func defRef(name protoreflect.FullName) Schema {
	return Schema{"$ref": "#/$defs/" + string(name)}
}

// message returns a reference to md's entry in defs, adding it (and every
// type it reaches) when it is not there yet.
func (g *generator) message(md protoreflect.MessageDescriptor) Schema {
	name := md.FullName()
	if _, ok := g.defs[string(name)]; !ok {
		g.defs[string(name)] = Schema{} // a placeholder: md may reach itself
		def := g.wellKnown(md)
		if def == nil {
			def = g.object(md)
		}
		def["title"] = string(name)
		describe(def, md)
		g.defs[string(name)] = def
	}
	return defRef(name)
}

// object is the schema of a message protojson renders as an object of its
// fields.
func (g *generator) object(md protoreflect.MessageDescriptor) Schema {
	props := Schema{}
	required := []string{}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		name := g.name(fd)
		props[name] = g.field(fd)
		// protojson fails to render a message whose required field is
		// unset; with EmitDefaults every field outside a oneof (real or
		// synthetic: a proto3 optional) is written.
		if fd.Cardinality() == protoreflect.Required || (g.o.EmitDefaults && fd.ContainingOneof() == nil) {
			required = append(required, name)
		}
	}
	if g.o.Extensions != nil && md.ExtensionRanges().Len() > 0 {
		g.o.Extensions.RangeExtensionsByMessage(md.FullName(), func(xt protoreflect.ExtensionType) bool {
			xd := xt.TypeDescriptor()
			props[xd.JSONName()] = g.field(xd) // "[full.name]", whatever the options
			return true
		})
	}
	s := Schema{
		"type":       "object",
		"properties": props,
		// protojson drops fields the type does not declare (a newer
		// publisher's): a frame never carries them.
		"additionalProperties": false,
	}
	if len(required) > 0 {
		s["required"] = required
	}
	if dep := g.oneofs(md); len(dep) > 0 {
		s["dependentSchemas"] = dep
	}
	return s
}

// oneofs says that at most one member of each oneof is present: when one is,
// the others are not (dependentSchemas, which validators enforce and type
// generators ignore, leaving the members optional properties). A proto3
// optional's synthetic oneof has one member and needs nothing.
func (g *generator) oneofs(md protoreflect.MessageDescriptor) Schema {
	dep := Schema{}
	oneofs := md.Oneofs()
	for i := range oneofs.Len() {
		od := oneofs.Get(i)
		if od.IsSynthetic() || od.Fields().Len() < 2 {
			continue
		}
		members := od.Fields()
		for j := range members.Len() {
			others := Schema{}
			for k := range members.Len() {
				if k != j {
					others[g.name(members.Get(k))] = false
				}
			}
			dep[g.name(members.Get(j))] = Schema{
				"description": "oneof " + string(od.Name()) + ": at most one of its members is present",
				"properties":  others,
			}
		}
	}
	return dep
}

// name is the field's JSON name under the options, as protojson writes it.
func (g *generator) name(fd protoreflect.FieldDescriptor) string {
	if g.o.ProtoNames {
		return fd.TextName()
	}
	return fd.JSONName()
}

// field is the schema of a field's value: an array for a list, an object
// for a map, else the value's own.
func (g *generator) field(fd protoreflect.FieldDescriptor) Schema {
	var s Schema
	switch {
	case fd.IsMap():
		s = Schema{"type": "object", "additionalProperties": g.singular(fd.MapValue())}
		if k := mapKey(fd.MapKey()); k != nil {
			s["propertyNames"] = k
		}
	case fd.IsList():
		s = Schema{"type": "array", "items": g.singular(fd)}
	default:
		s = g.singular(fd)
		// With EmitDefaults an unset field with presence (a message, a
		// proto2 optional) is written as null; never a oneof member, which
		// is left out, nor a required field, which is always set.
		if g.o.EmitDefaults && fd.HasPresence() && !fd.IsExtension() && fd.ContainingOneof() == nil &&
			fd.Cardinality() != protoreflect.Required && !nullable(fd) {
			s = Schema{"anyOf": []any{s, Schema{"type": "null"}}}
		}
	}
	describe(s, fd)
	return s
}

// nullable reports whether a field's own schema admits null already:
// google.protobuf.Value and NullValue.
func nullable(fd protoreflect.FieldDescriptor) bool {
	switch {
	case fd.Enum() != nil:
		return fd.Enum().FullName() == "google.protobuf.NullValue"
	case fd.Message() != nil:
		return fd.Message().FullName() == "google.protobuf.Value"
	}
	return false
}

// The patterns of the strings protojson writes.
const (
	// int64, sint64, sfixed64: strconv.FormatInt.
	int64Pattern = `^(0|-?[1-9][0-9]*)$`
	// uint64, fixed64: strconv.FormatUint.
	uint64Pattern = `^(0|[1-9][0-9]*)$`
	// bytes: standard base64 with padding.
	base64Pattern = `^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$`
	// google.protobuf.Timestamp: UTC, 0, 3, 6 or 9 fractional digits.
	timestampPattern = `^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{3}|\.[0-9]{6}|\.[0-9]{9})?Z$`
	// google.protobuf.Duration: seconds, 0, 3, 6 or 9 fractional digits, s.
	durationPattern = `^-?[0-9]+(\.[0-9]{3}|\.[0-9]{6}|\.[0-9]{9})?s$`
)

// singular is the schema of one value of fd's type.
func (g *generator) singular(fd protoreflect.FieldDescriptor) Schema {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return Schema{"type": "boolean"}
	case protoreflect.StringKind:
		return Schema{"type": "string"}
	case protoreflect.BytesKind:
		return Schema{"type": "string", "contentEncoding": "base64", "pattern": base64Pattern}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return Schema{"type": "integer", "minimum": math.MinInt32, "maximum": math.MaxInt32}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return Schema{"type": "integer", "minimum": 0, "maximum": int64(math.MaxUint32)}
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return Schema{"type": "string", "pattern": int64Pattern, "description": "a 64-bit integer, as a string of decimal digits"}
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return Schema{"type": "string", "pattern": uint64Pattern, "description": "an unsigned 64-bit integer, as a string of decimal digits"}
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return Schema{"anyOf": []any{Schema{"type": "number"}, Schema{"enum": []any{"NaN", "Infinity", "-Infinity"}}}}
	case protoreflect.EnumKind:
		return g.enum(fd.Enum())
	default: // MessageKind, GroupKind
		return g.message(fd.Message())
	}
}

// mapKey constrains the keys of a map: protojson writes every key as a
// string, integers in decimal and bools as "true" or "false".
func mapKey(fd protoreflect.FieldDescriptor) Schema {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return Schema{"enum": []any{"true", "false"}}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return Schema{"pattern": int64Pattern}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return Schema{"pattern": uint64Pattern}
	}
	return nil // strings: any
}

// enum returns a reference to ed's entry in defs, adding it. protojson
// writes a value's name (the first name of its number, when names alias
// one number), and a number no value has as that number. An open (proto3)
// enum keeps such numbers; so does a closed (proto2) one of a type loaded
// from a descriptor set (dynamicpb does not drop them, as generated code
// does), so every enum admits them. google.protobuf.NullValue is null.
func (g *generator) enum(ed protoreflect.EnumDescriptor) Schema {
	name := string(ed.FullName())
	if _, ok := g.defs[name]; ok {
		return defRef(ed.FullName())
	}
	var def Schema
	if ed.FullName() == "google.protobuf.NullValue" {
		def = Schema{"type": "null"}
	} else {
		var names, numbers []any
		values := ed.Values()
		for i := range values.Len() {
			v := values.Get(i)
			if values.ByNumber(v.Number()) == v {
				names = append(names, string(v.Name()))
				numbers = append(numbers, int64(v.Number()))
			}
		}
		def = Schema{"anyOf": []any{
			Schema{"type": "string", "enum": names},
			Schema{
				"description": "a number no value of the enum has (a newer publisher's value)",
				"type":        "integer", "minimum": math.MinInt32, "maximum": math.MaxInt32,
				"not": Schema{"enum": numbers},
			},
		}}
	}
	def["title"] = name
	describe(def, ed)
	g.defs[name] = def
	return defRef(ed.FullName())
}

// wellKnown is the schema of a well-known type protojson renders in a form
// of its own, nil for any other message (google.protobuf.Empty included: it
// is an object with no fields).
func (g *generator) wellKnown(md protoreflect.MessageDescriptor) Schema {
	if md.ParentFile().Package() != "google.protobuf" {
		return nil
	}
	switch md.Name() {
	case "Any":
		// {"@type": URL, ...the message's fields}, or {"@type": URL,
		// "value": JSON} for a well-known type inside; {} for an Any with
		// no type.
		return Schema{
			"type":                 "object",
			"properties":           Schema{"@type": Schema{"type": "string", "description": "the type URL: type.googleapis.com/ and the message's full name"}},
			"additionalProperties": true,
			"anyOf":                []any{Schema{"required": []any{"@type"}}, Schema{"maxProperties": 0}},
		}
	case "Timestamp":
		return Schema{"type": "string", "format": "date-time", "pattern": timestampPattern}
	case "Duration":
		return Schema{"type": "string", "pattern": durationPattern}
	case "Struct":
		return Schema{"type": "object", "additionalProperties": g.message(md.ParentFile().Messages().ByName("Value"))}
	case "ListValue":
		return Schema{"type": "array", "items": g.message(md.ParentFile().Messages().ByName("Value"))}
	case "Value":
		return Schema{"description": "any JSON value"}
	case "FieldMask":
		return Schema{"type": "string", "description": "the paths, in lowerCamelCase, separated by commas"}
	case "DoubleValue", "FloatValue", "Int64Value", "UInt64Value", "Int32Value", "UInt32Value", "BoolValue", "StringValue", "BytesValue":
		return g.singular(md.Fields().ByName("value"))
	}
	return nil
}

// describe copies d's leading comments, when its file kept them, to s,
// without the space that follows // on each line.
func describe(s Schema, d protoreflect.Descriptor) {
	loc := d.ParentFile().SourceLocations().ByDescriptor(d)
	var b strings.Builder
	for line := range strings.Lines(loc.LeadingComments) {
		b.WriteString(strings.TrimPrefix(line, " "))
	}
	if c := strings.TrimSpace(b.String()); c != "" {
		s["description"] = c
	}
}
