package schema_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sse-bridge/bridge/internal/payload"
	"github.com/sse-bridge/bridge/internal/payload/payloadtest"
	"github.com/sse-bridge/bridge/internal/schema"
	"github.com/sse-bridge/bridge/internal/schema/schematest"
)

func serveTypes(h http.Handler) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("/types", h)
	mux.Handle("/types/{name}", h)
	return httptest.NewServer(mux)
}

// answer is an HTTP response, its body read.
type answer struct {
	StatusCode int
	Header     http.Header
}

func get(t *testing.T, url string, h http.Header) (answer, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header}, body
}

// TestHandlerServesTheTypes: the list, one type in each format, the reset
// frame, the errors, and a list that follows reloads.
func TestHandlerServesTheTypes(t *testing.T) {
	t.Parallel()
	path := payloadtest.WriteSet(t, payloadtest.PingFile("a"))
	types, err := payload.NewRegistry([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	srv := serveTypes(schema.NewHandler(types, schema.Options{ProtoNames: true}))
	defer srv.Close()

	resp, body := get(t, srv.URL+"/types", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /types = %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var list schema.List
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	origins := map[string]string{}
	for _, ty := range list.Types {
		origins[ty.Name] = ty.Origin
		if _, err := schematest.Compile(ty.Schema); err != nil {
			t.Errorf("schema of %s in the list: %v", ty.Name, err)
		}
	}
	if origins["test.a.v1.Ping"] != path || origins["shop.v1.OrderCreated"] != "compiled in" || list.JSONNames != "proto" || list.EmitDefaults {
		t.Errorf("GET /types: origins %v, jsonNames %q, emitDefaults %v; want test.a.v1.Ping from %s, shop.v1 compiled in, proto names", origins, list.JSONNames, list.EmitDefaults, path)
	}
	for name, s := range map[string]schema.Schema{"envelope": list.Envelope, "cloudevents": list.CloudEvents, "reset": list.Reset} {
		if _, err := schematest.Compile(s); err != nil {
			t.Errorf("%s schema in the list: %v", name, err)
		}
	}
	etag := resp.Header.Get("ETag")
	if etag == "" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("GET /types: ETag %q, Cache-Control %q; want an ETag and no-cache", etag, resp.Header.Get("Cache-Control"))
	}
	if resp, _ := get(t, srv.URL+"/types", http.Header{"If-None-Match": {etag}}); resp.StatusCode != http.StatusNotModified {
		t.Errorf("GET /types If-None-Match its ETag = %d, want 304", resp.StatusCode)
	}

	ping := `{"note":"hi","n":"5","at":"2026-11-25T10:00:00Z"}`
	for _, tc := range []struct{ query, frame string }{
		{"", ping},
		{"?format=data", ping},
		{"?format=envelope", `{"id":"1","stream":"pings","type":"test.a.v1.Ping","time":"2026-11-25T10:00:00Z","data":` + ping + `}`},
		{"?format=cloudevents", `{"specversion":"1.0","id":"1","source":"/sse-bridge","type":"test.a.v1.Ping","subject":"pings","time":"2026-11-25T10:00:00Z","datacontenttype":"application/json","data":` + ping + `}`},
	} {
		resp, body := get(t, srv.URL+"/types/test.a.v1.Ping"+tc.query, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/schema+json" {
			t.Fatalf("GET /types/test.a.v1.Ping%s = %d %q: %s", tc.query, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		schematest.MustCompile(t, body).Check(t, "Ping"+tc.query, []byte(tc.frame))
	}
	if resp, body := get(t, srv.URL+"/types/bridge.reset", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /types/bridge.reset = %d", resp.StatusCode)
	} else {
		schematest.MustCompile(t, body).Check(t, "reset", []byte(`{"reason":"too_far_behind","lastEventId":"12"}`))
	}

	for _, tc := range []struct {
		url    string
		status int
		want   string
	}{
		{"/types/test.b.v1.Ping", http.StatusNotFound, `"test.b.v1.Ping" is unknown`},
		{"/types/test.a.v1.Ping?format=xml", http.StatusBadRequest, `format "xml" is unknown`},
	} {
		resp, body := get(t, srv.URL+tc.url, nil)
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Errorf("GET %s = %d %q %s, want %d text naming %s", tc.url, resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.status, tc.want)
		}
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/types", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /types = %v %v, want 405", resp, err)
	} else {
		_ = resp.Body.Close()
	}

	// A reload: the new type appears, the list's ETag changes.
	payloadtest.WriteSetAt(t, path, payloadtest.PingFile("a"), payloadtest.PingFile("b"))
	if err := types.Reload(); err != nil {
		t.Fatal(err)
	}
	if resp, _ := get(t, srv.URL+"/types/test.b.v1.Ping", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /types/test.b.v1.Ping after the reload = %d, want 200", resp.StatusCode)
	}
	resp, body = get(t, srv.URL+"/types", http.Header{"If-None-Match": {etag}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"test.b.v1.Ping"`) || resp.Header.Get("ETag") == etag {
		t.Errorf("GET /types after the reload = %d, ETag %q (was %q), lists test.b.v1.Ping: %v", resp.StatusCode, resp.Header.Get("ETag"), etag, strings.Contains(string(body), `"test.b.v1.Ping"`))
	}
}
