package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sse-bridge/bridge/internal/payload"
	"github.com/sse-bridge/bridge/internal/schema"
	"github.com/sse-bridge/bridge/internal/tsgen"
)

const typesUsage = `Usage: bridge types [flags] [NAME...]

Prints the JSON Schema (draft 2020-12) of the event types the bridge renders,
exactly as it renders them, as one JSON document: the answer of GET /types
(jsonNames, emitDefaults, types with each one's name, origin and schema, and
the envelope, cloudevents and bridge.reset schemas). Output is deterministic:
types sorted by name, members sorted, two-space indents.

Offline (the default), the types are the compiled-in ones and those of the
--descriptor-set files, in the mapping of --json-names and --emit-defaults,
as a bridge started with the same flags serves them. With --url, they are
those a running bridge serves, in its mapping (then give no descriptor set
and no mapping flags).

NAMEs keep only those types: a message's full name, or a package followed by
.* (acme.billing.v1.*).

--format ts prints instead one self-contained TypeScript module: an interface
per message in its JSON form, an EventMap from every event name to its type,
the envelope and CloudEvents frames, the bridge.reset data and BridgeEvents, a
typed wrapper over the browser's EventSource (docs/typed-events.md). With
--url, the names of the types and the mapping come from the bridge's /types,
and their definitions from its server reflection at --addr (the host of --url,
port 50051, unless given; the same --token and TLS flags: with publisher and
subscriber auth both on, a publisher's token, which both take), so the module is
the one the offline command prints with the bridge's own descriptor sets and
flags.

Exit status: 0 printed; 1 bad flags, a descriptor set that does not load, or
a NAME no type matches; 2 the bridge could not be reached; 3 the bridge
refused the request (its message says why).
`

// typesArgs are the settings of `bridge types`, from its flags.
type typesArgs struct {
	format, jsonNames, base, addr string
	sets                          []string
	emitDefaults                  bool
	auth                          clientAuth
}

func newTypesCmdLine(a *typesArgs) *cmdLine {
	fs := flag.NewFlagSet("bridge types", flag.ContinueOnError)
	fs.StringVar(&a.format, "format", "jsonschema", "output `format`: jsonschema (the JSON Schema list of GET /types) or ts (a TypeScript module)")
	fs.Var(newListFlag(&a.sets, nil), "descriptor-set", "descriptor set `file` to load, as bridge --descriptor-set; repeat or separate with commas")
	fs.StringVar(&a.jsonNames, "json-names", "camel", "field `names` of the mapping: camel (the json_name) or proto, as bridge --json-names")
	fs.BoolVar(&a.emitDefaults, "emit-defaults", false, "the mapping renders fields at their defaults, as bridge --emit-defaults")
	fs.StringVar(&a.base, "url", "", "base `URL` of a running bridge's HTTP listener to read /types from, instead of loading the types here")
	fs.StringVar(&a.addr, "addr", "", "with --url and --format ts, gRPC `address` of the bridge, whose server reflection gives the types' definitions (default: the host of --url, port 50051)")
	a.auth.register(fs)
	return clientCmdLine("bridge types", typesUsage, fs,
		flagGroup{title: "Types", flags: []string{"descriptor-set", "json-names", "emit-defaults", "url", "addr"}},
		flagGroup{title: "Output", flags: []string{"format"}})
}

// runTypes is `bridge types`.
func runTypes(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var a typesArgs
	cmd := newTypesCmdLine(&a)
	if err := cmd.parse(args); errors.Is(err, flag.ErrHelp) {
		cmd.printHelp(stdout)
		return nil
	} else if err != nil {
		return err
	}
	if a.format != "jsonschema" && a.format != "ts" {
		return cmd.mistake(fmt.Sprintf("--format %q is unknown: give jsonschema or ts", a.format), "")
	}
	if a.jsonNames != "camel" && a.jsonNames != "proto" {
		return cmd.mistake(fmt.Sprintf("--json-names %q: give camel or proto", a.jsonNames), "")
	}
	var list map[string]any
	var err error
	if a.base != "" {
		set := map[string]bool{}
		cmd.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if set["descriptor-set"] || set["json-names"] || set["emit-defaults"] {
			return cmd.mistake("with --url the bridge's types and mapping are printed: give no --descriptor-set, --json-names or --emit-defaults", "")
		}
		list, err = fetchTypes(ctx, a, stderr)
		if err == nil && a.format == "ts" {
			return fetchTS(ctx, a, list, cmd.fs.Args(), stdout)
		}
	} else {
		if a.addr != "" {
			return cmd.mistake("--addr goes with --url: offline the types come from --descriptor-set", "")
		}
		if a.format == "ts" {
			return printTS(a, cmd.fs.Args(), stdout)
		}
		list, err = loadTypes(a)
	}
	if err != nil {
		return err
	}
	if err := keepTypes(list, cmd.fs.Args()); err != nil {
		return err
	}
	// Maps: members sorted. No HTML escapes: descriptions keep their < and >.
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(list); err != nil {
		return exitf(exitUsage, "%w", err)
	}
	_, err = stdout.Write(out.Bytes())
	return err
}

// loadTypes builds the list offline, as a bridge with a's flags serves it.
func loadTypes(a typesArgs) (map[string]any, error) {
	types, err := payload.NewRegistry(a.sets)
	if err != nil {
		return nil, exitf(exitUsage, "%w", err)
	}
	l, _ := schema.NewList(types, schema.Options{ProtoNames: a.jsonNames == "proto", EmitDefaults: a.emitDefaults})
	raw, err := json.Marshal(l)
	if err != nil {
		return nil, exitf(exitUsage, "%w", err)
	}
	return decodeList(raw, "the schemas")
}

// printTS prints the TypeScript module of the types names keep (all when
// none), loaded offline as loadTypes loads them.
func printTS(a typesArgs, names []string, stdout io.Writer) error {
	types, err := payload.NewRegistry(a.sets)
	if err != nil {
		return exitf(exitUsage, "%w", err)
	}
	all, _ := types.Types()
	// keepTypes filters a list of names, with its messages.
	list := map[string]any{}
	entries := make([]any, len(all))
	byName := make(map[string]protoreflect.MessageDescriptor, len(all))
	for i, t := range all {
		entries[i] = map[string]any{"name": string(t.Name())}
		byName[string(t.Name())] = t.Desc
	}
	list["types"] = entries
	if err := keepTypes(list, names); err != nil {
		return err
	}
	kept, _ := list["types"].([]any)
	mds := make([]protoreflect.MessageDescriptor, 0, len(kept))
	for _, e := range kept {
		name, _ := e.(map[string]any)["name"].(string)
		mds = append(mds, byName[name])
	}
	module, err := tsgen.Generate(mds, schema.Options{ProtoNames: a.jsonNames == "proto", EmitDefaults: a.emitDefaults, Extensions: types})
	if err != nil {
		return exitf(exitUsage, "%w", err)
	}
	_, err = stdout.Write(module)
	return err
}

// fetchTS prints the TypeScript module of the types names keep of list, a
// running bridge's /types: their definitions come from the bridge's server
// reflection, the mapping from list.
func fetchTS(ctx context.Context, a typesArgs, list map[string]any, names []string, stdout io.Writer) error {
	all, _ := list["types"].([]any)
	every := make([]protoreflect.FullName, 0, len(all))
	for _, e := range all {
		name, _ := e.(map[string]any)["name"].(string)
		every = append(every, protoreflect.FullName(name))
	}
	if err := keepTypes(list, names); err != nil {
		return err
	}
	addr := a.addr
	if addr == "" {
		u, err := url.Parse(a.base)
		if err != nil {
			return exitf(exitUsage, "--url %q: %w", a.base, err)
		}
		addr = net.JoinHostPort(u.Hostname(), "50051")
	}
	conn, _, err := dialBridge(addr, &a.auth, io.Discard) // fetchTypes warned of a plaintext token
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	// Every type's file, not only the kept ones': extensions of the kept
	// types may be defined anywhere, as offline.
	types, err := reflectFiles(ctx, conn, every)
	if err != nil {
		return err
	}
	kept, _ := list["types"].([]any)
	mds := make([]protoreflect.MessageDescriptor, 0, len(kept))
	for _, e := range kept {
		name, _ := e.(map[string]any)["name"].(string)
		mt, err := types.FindMessageByName(protoreflect.FullName(name))
		if err != nil {
			return exitf(exitRefused, "the bridge at %s lists %s at /types, but its reflection at %s does not define it: %w", a.base, name, addr, err)
		}
		mds = append(mds, mt.Descriptor())
	}
	emitDefaults, _ := list["emitDefaults"].(bool)
	module, err := tsgen.Generate(mds, schema.Options{ProtoNames: list["jsonNames"] == "proto", EmitDefaults: emitDefaults, Extensions: types})
	if err != nil {
		return exitf(exitUsage, "%w", err)
	}
	_, err = stdout.Write(module)
	return err
}

// maxTypesAnswer bounds what fetchTypes reads of the bridge's answer.
const maxTypesAnswer = 256 << 20

// fetchTypes reads GET /types of the bridge at a.base.
func fetchTypes(ctx context.Context, a typesArgs, stderr io.Writer) (map[string]any, error) {
	u, err := url.Parse(strings.TrimSuffix(a.base, "/") + "/types")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, exitf(exitUsage, "--url %q: give the bridge's base URL, like http://localhost:8080", a.base)
	}
	client, token, done, err := a.auth.httpClient(u, stderr)
	if err != nil {
		return nil, err
	}
	defer done()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, exitf(exitUsage, "%w", err)
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, exitf(exitConnect, "connect: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return nil, exitf(exitRefused, "the bridge answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxTypesAnswer))
	if err != nil {
		return nil, exitf(exitConnect, "read: %w", err)
	}
	return decodeList(raw, u.String())
}

// decodeList decodes a /types answer, keeping numbers as they are written.
func decodeList(raw []byte, from string) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var list map[string]any
	if err := dec.Decode(&list); err != nil {
		return nil, exitf(exitRefused, "%s is no list of types: %w", from, err)
	}
	if _, ok := list["types"].([]any); !ok {
		return nil, exitf(exitRefused, "%s is no list of types: it has no \"types\" array", from)
	}
	return list, nil
}

// keepTypes keeps in list the types names match (all when names is empty),
// in their order; a name no type matches is an error.
func keepTypes(list map[string]any, names []string) error {
	if len(names) == 0 {
		return nil
	}
	all, _ := list["types"].([]any)
	kept := []any{}
	matched := make([]bool, len(names))
	for _, t := range all {
		name, _ := t.(map[string]any)["name"].(string)
		keep := false
		for i, n := range names {
			if pkg, ok := strings.CutSuffix(n, ".*"); (ok && strings.HasPrefix(name, pkg+".")) || n == name {
				matched[i], keep = true, true
			}
		}
		if keep {
			kept = append(kept, t)
		}
	}
	for i, n := range names {
		if !matched[i] {
			return exitf(exitUsage, "no type matches %q: give a message's full name (shop.v1.OrderCreated) or a package and .* (shop.v1.*); load the type's descriptor set with --descriptor-set", n)
		}
	}
	list["types"] = kept
	return nil
}
