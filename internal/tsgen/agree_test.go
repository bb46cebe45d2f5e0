package tsgen_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/sse-bridge/bridge/internal/schema"
	"github.com/sse-bridge/bridge/internal/tsgen"
)

var (
	interfaceDecl = regexp.MustCompile(`(?m)^export interface (\w+) \{\n((?:  .*\n)*)\}`)
	memberDecl    = regexp.MustCompile(`(?m)^  ("[^"]*"|[\w$]+)(\??): (.*);$`)
	enumDecl      = regexp.MustCompile(`(?m)^export type (\w+) = (.*);$`)
)

// TestAgreesWithSchema: for every type and both mappings, each interface has
// the properties of the message's JSON Schema, optional exactly when the
// schema does not require them, and each enum the names the schema lists.
func TestAgreesWithSchema(t *testing.T) {
	mds, reg := eventTypes(t)
	for _, o := range []schema.Options{{Extensions: reg}, {ProtoNames: true, EmitDefaults: true, Extensions: reg}} {
		out, err := tsgen.Generate(mds, o)
		if err != nil {
			t.Fatal(err)
		}
		type member struct {
			optional bool
			typ      string
		}
		interfaces := map[string]map[string]member{}
		for _, m := range interfaceDecl.FindAllStringSubmatch(string(out), -1) {
			members := map[string]member{}
			for _, f := range memberDecl.FindAllStringSubmatch(m[2], -1) {
				members[strings.Trim(f[1], `"`)] = member{optional: f[2] == "?", typ: f[3]}
			}
			interfaces[m[1]] = members
		}
		enums := map[string]string{}
		for _, m := range enumDecl.FindAllStringSubmatch(string(out), -1) {
			enums[m[1]] = m[2]
		}
		checked := 0
		for _, md := range mds {
			defs, _ := schema.Message(md, o)["$defs"].(schema.Schema)
			for name, d := range defs {
				def, _ := d.(schema.Schema)
				id := strings.ReplaceAll(name, ".", "_")
				if anyOf, ok := def["anyOf"].([]any); ok && def["type"] == nil && len(anyOf) == 2 {
					if names, ok := anyOf[0].(schema.Schema)["enum"].([]any); ok {
						var want []string
						for _, n := range names {
							want = append(want, `"`+n.(string)+`"`)
						}
						want = append(want, "number")
						if got := enums[id]; got != strings.Join(want, " | ") {
							t.Errorf("%+v: enum %s = %s, want %s", o, id, got, strings.Join(want, " | "))
						}
						continue
					}
				}
				props, ok := def["properties"].(schema.Schema)
				if !ok || def["additionalProperties"] != false || name == "google.protobuf.Empty" {
					continue // a well-known type, inline (Empty: Record<string, never>)
				}
				members, ok := interfaces[id]
				if !ok {
					t.Errorf("%+v: no interface %s", o, id)
					continue
				}
				required, _ := def["required"].([]string)
				for p := range props {
					m, ok := members[p]
					if !ok {
						t.Errorf("%+v: %s has no member %s", o, id, p)
						continue
					}
					if m.optional == slices.Contains(required, p) {
						t.Errorf("%+v: %s.%s optional = %v, the schema requires it: %v", o, id, p, m.optional, !m.optional)
					}
					checked++
				}
				if len(members) != len(props) {
					t.Errorf("%+v: %s has %d members, the schema %d properties", o, id, len(members), len(props))
				}
			}
		}
		if checked < 100 {
			t.Errorf("%+v: %d members checked, want the compiled-in types' and acme's", o, checked)
		}
	}
}
