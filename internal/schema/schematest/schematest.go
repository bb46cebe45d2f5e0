// Package schematest compiles the bridge's JSON Schemas with a real
// validator (santhosh-tekuri/jsonschema, draft 2020-12, formats and content
// encodings asserted) and validates JSON against them. Only tests import it.
package schematest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Validator is a compiled schema.
type Validator struct {
	sch *jsonschema.Schema
	raw []byte
}

var seq atomic.Uint64

// Compile compiles doc, a schema as JSON text or as a value encoding/json
// marshals, checking it against the draft 2020-12 meta-schema.
func Compile(doc any) (*Validator, error) {
	raw, ok := doc.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(doc); err != nil {
			return nil, err
		}
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("schema is not JSON: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.AssertContent()
	url := fmt.Sprintf("mem://schema/%d.json", seq.Add(1))
	if err := c.AddResource(url, v); err != nil {
		return nil, err
	}
	sch, err := c.Compile(url)
	if err != nil {
		return nil, err
	}
	return &Validator{sch: sch, raw: raw}, nil
}

// MustCompile is Compile, failing tb on error.
func MustCompile(tb testing.TB, doc any) *Validator {
	tb.Helper()
	v, err := Compile(doc)
	if err != nil {
		tb.Fatalf("compile schema: %v", err)
	}
	return v
}

// Validate validates data, one JSON value, against the schema.
func (v *Validator) Validate(data []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return v.sch.Validate(inst)
}

// Check fails tb when data does not validate, with the data and the error.
func (v *Validator) Check(tb testing.TB, what string, data []byte) {
	tb.Helper()
	if err := v.Validate(data); err != nil {
		tb.Errorf("%s: %s does not validate against its schema: %v", what, data, err)
	}
}
