package schema

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sse-bridge/bridge/internal/payload"
)

// ResetName is the name under which [Handler] serves the schema of a
// bridge.reset frame's data: the frame's SSE event name, which publishers
// may not use.
const ResetName = "bridge.reset"

// The media types of the answers.
const (
	SchemaMediaType = "application/schema+json"
	ListMediaType   = "application/json"
)

// List is the answer of GET /types.
type List struct {
	// JSONNames is "camel" (lowerCamelCase, the default) or "proto"
	// (--json-names proto).
	JSONNames string `json:"jsonNames"`
	// EmitDefaults is --emit-defaults: every field outside a oneof is
	// present.
	EmitDefaults bool `json:"emitDefaults"`
	// Types are every event type the bridge renders, sorted by name.
	Types []Type `json:"types"`
	// Envelope and CloudEvents are the schemas of a frame's data in those
	// formats for any event (their data: any JSON); GET
	// /types/{name}?format= gives them with a type's data.
	Envelope    Schema `json:"envelope"`
	CloudEvents Schema `json:"cloudevents"`
	// Reset is the schema of a bridge.reset frame's data.
	Reset Schema `json:"reset"`
}

// Type is one event type of a [List].
type Type struct {
	// Name is the message's full name, the `event:` name of its frames
	// unless the publisher sets a type.
	Name string `json:"name"`
	// Origin is "compiled in", or the path of the descriptor set that
	// defines it.
	Origin string `json:"origin"`
	// Schema is the schema of its frames' data (format data).
	Schema Schema `json:"schema"`
}

// NewList returns the schemas of every type of types in the mapping o
// (Extensions set to types), and the generation of types they are of.
func NewList(types *payload.Registry, o Options) (List, uint64) {
	o.Extensions = types
	all, gen := types.Types()
	l := List{JSONNames: "camel", EmitDefaults: o.EmitDefaults, Types: make([]Type, 0, len(all)),
		Envelope: Envelope(nil), CloudEvents: CloudEvents(nil), Reset: Reset()}
	if o.ProtoNames {
		l.JSONNames = "proto"
	}
	for _, t := range all {
		l.Types = append(l.Types, Type{Name: string(t.Name()), Origin: t.Origin, Schema: Message(t.Desc, o)})
	}
	return l, gen
}

// Handler serves the schemas of the event types of a registry in the
// mapping in force, computed again after every reload of the registry:
//
//   - GET /types: a [List], application/json.
//   - GET /types/{name}: the schema of type name's data,
//     application/schema+json; ?format=envelope or ?format=cloudevents
//     gives the schema of the whole frame data of that format. 404 for a
//     type the registry does not know.
//   - GET /types/bridge.reset: the schema of a bridge.reset frame's data.
//
// Every answer has an ETag (a hash of the body) and Cache-Control:
// no-cache (see CacheControl), so a client revalidates and gets 304 while
// nothing changed.
// HEAD works too; other methods get 405.
type Handler struct {
	// CacheControl is the Cache-Control of every answer: "no-cache" unless
	// set before the first request ("private, no-cache" for answers only a
	// token holder may read).
	CacheControl string

	types *payload.Registry
	opts  Options

	mu  sync.Mutex
	cur *catalog // of the generation last served
}

// catalog is what a generation of the registry serves.
type catalog struct {
	gen    uint64
	list   []byte // the List, as JSON
	byName map[string]Type
}

// NewHandler serves the types of types, rendered with o (whose Extensions
// it sets to types).
func NewHandler(types *payload.Registry, o Options) *Handler {
	o.Extensions = types
	return &Handler{CacheControl: "no-cache", types: types, opts: o}
}

// catalog returns the catalog of the generation in force, building it
// when the registry was reloaded since the last call.
func (h *Handler) catalog() (*catalog, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur != nil && h.cur.gen == h.types.Generation() {
		return h.cur, nil
	}
	l, gen := NewList(h.types, h.opts)
	c := &catalog{gen: gen, byName: make(map[string]Type, len(l.Types))}
	for _, t := range l.Types {
		c.byName[t.Name] = t
	}
	var err error
	if c.list, err = json.Marshal(l); err != nil {
		return nil, err
	}
	h.cur = c
	return c, nil
}

// Lookup returns the schema of the data of the event type name in format
// ("", "data", "envelope" or "cloudevents"); found is false for a type the
// registry does not know. ResetName gives the reset frame's, in any format.
func (h *Handler) Lookup(name, format string) (_ Schema, found bool, err error) {
	if name == ResetName {
		return Reset(), true, nil
	}
	c, err := h.catalog()
	if err != nil {
		return nil, false, err
	}
	t, ok := c.byName[name]
	if !ok {
		return nil, false, nil
	}
	switch format {
	case "envelope":
		return Envelope(t.Schema), true, nil
	case "cloudevents":
		return CloudEvents(t.Schema), true, nil
	}
	return t.Schema, true, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "use GET to read the types", http.StatusMethodNotAllowed)
		return
	}
	name := r.PathValue("name")
	if name == "" {
		name = strings.Trim(strings.TrimPrefix(r.URL.Path, "/types"), "/")
	}
	var body []byte
	var err error
	if name == "" {
		var c *catalog
		if c, err = h.catalog(); err == nil {
			body = c.list
		}
		w.Header().Set("Content-Type", ListMediaType)
	} else {
		format := r.URL.Query().Get("format")
		switch format {
		case "", "data", "envelope", "cloudevents":
		default:
			http.Error(w, fmt.Sprintf("format %q is unknown: use data (the default), envelope or cloudevents", format), http.StatusBadRequest)
			return
		}
		var s Schema
		var found bool
		s, found, err = h.Lookup(name, format)
		if err == nil && !found {
			http.Error(w, fmt.Sprintf("event type %q is unknown to this bridge: GET /types lists the types it renders; "+
				"a type of your own appears there once the bridge loads its descriptor set (--descriptor-set, then SIGHUP to reload)", name),
				http.StatusNotFound)
			return
		}
		if err == nil {
			body, err = json.Marshal(s)
		}
		w.Header().Set("Content-Type", SchemaMediaType)
	}
	if err != nil {
		w.Header().Del("Content-Type")
		http.Error(w, "cannot render the schemas: "+err.Error(), http.StatusInternalServerError)
		return
	}
	sum := sha256.Sum256(body)
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:12])+`"`)
	w.Header().Set("Cache-Control", h.CacheControl)
	// ServeContent answers HEAD, If-None-Match (304) and ranges.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}
