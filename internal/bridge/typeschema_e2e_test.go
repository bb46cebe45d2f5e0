package bridge_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	shopv1 "github.com/sse-bridge/bridge/gen/shop/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
	"github.com/sse-bridge/bridge/internal/payload"
	"github.com/sse-bridge/bridge/internal/payload/payloadtest"
	"github.com/sse-bridge/bridge/internal/schema"
	"github.com/sse-bridge/bridge/internal/schema/schematest"
)

// typesAnswer is a response from /types, its body read.
type typesAnswer struct {
	status int
	header http.Header
	body   []byte
}

func getTypes(t *testing.T, url string, h http.Header) typesAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return typesAnswer{resp.StatusCode, resp.Header, body}
}

// servedSchema GETs a schema and compiles it.
func servedSchema(t *testing.T, url string) *schematest.Validator {
	t.Helper()
	a := getTypes(t, url, nil)
	if a.status != http.StatusOK || a.header.Get("Content-Type") != "application/schema+json" {
		t.Fatalf("GET %s = %d %q: %s", url, a.status, a.header.Get("Content-Type"), a.body)
	}
	return schematest.MustCompile(t, a.body)
}

func typeOrigins(t *testing.T, base string) (map[string]string, string) {
	t.Helper()
	a := getTypes(t, base+"/types", nil)
	if a.status != http.StatusOK || a.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /types = %d %q: %s", a.status, a.header.Get("Content-Type"), a.body)
	}
	var l schema.List
	if err := json.Unmarshal(a.body, &l); err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, ty := range l.Types {
		m[ty.Name] = ty.Origin
	}
	return m, a.header.Get("ETag")
}

// TestTypesServedByARunningBridge: /types lists compiled-in and loaded
// types, frames read from /events in every format validate against the
// schemas it serves, a reset frame against bridge.reset's, and a reload of
// the descriptor sets shows in /types at once.
func TestTypesServedByARunningBridge(t *testing.T) {
	t.Parallel()
	path := payloadtest.WriteSet(t, payloadtest.PingFile("e"))
	b := startBridge(t, bridge.Config{DescriptorSets: []string{path}})

	origins, etag := typeOrigins(t, b.baseURL)
	if origins["test.e.v1.Ping"] != path || origins["shop.v1.OrderCreated"] != payload.CompiledIn {
		t.Errorf("GET /types origins: Ping %q, OrderCreated %q; want %s and %q", origins["test.e.v1.Ping"], origins["shop.v1.OrderCreated"], path, payload.CompiledIn)
	}

	formats := []string{"data", "envelope", "cloudevents"}
	subs := map[string]*sseClient{}
	for _, f := range formats {
		subs[f] = subscribe(t, b.baseURL, "stream=orders&format="+f, "")
	}
	order, err := anypb.New(&shopv1.OrderCreated{
		OrderId: "o-1", Items: []*shopv1.LineItem{{Sku: "s", Quantity: 2, UnitPrice: &shopv1.Money{Currency: "EUR", AmountMinor: 625}}},
		Status: shopv1.OrderStatus_ORDER_STATUS_PAID, CreatedAt: timestamppb.New(time.Date(2026, 11, 25, 10, 0, 0, 5e8, time.UTC)),
	})
	if err != nil {
		t.Fatal(err)
	}
	b.publish(t, &bridgev1.PublishRequest{Stream: "orders", Payload: &bridgev1.PublishRequest_Event{Event: order}})
	b.publish(t, &bridgev1.PublishRequest{Stream: "orders", Payload: &bridgev1.PublishRequest_Event{Event: pingAny(t, "e", "hi", 1<<60)}})
	for _, f := range formats {
		for _, typ := range []string{"shop.v1.OrderCreated", "test.e.v1.Ping"} {
			ev := subs[f].next(t)
			servedSchema(t, b.baseURL+"/types/"+typ+"?format="+f).Check(t, typ+" in format "+f, []byte(ev.Data))
		}
	}

	// A reset frame.
	reset := subscribe(t, b.baseURL, "stream=orders", "1").next(t)
	if reset.Type != bridge.ResetEvent {
		t.Fatalf("first frame after Last-Event-ID 1 = %+v, want a reset", reset)
	}
	servedSchema(t, b.baseURL+"/types/"+bridge.ResetEvent).Check(t, "reset", []byte(reset.Data))

	// A reload adds a type: /types shows it at once.
	if a := getTypes(t, b.baseURL+"/types/test.f.v1.Ping", nil); a.status != http.StatusNotFound || !strings.Contains(string(a.body), "--descriptor-set") {
		t.Errorf("GET /types/test.f.v1.Ping before the reload = %d %s, want 404 saying how to load it", a.status, a.body)
	}
	payloadtest.WriteSetAt(t, path, payloadtest.PingFile("e"), payloadtest.PingFile("f"))
	if err := b.srv.ReloadTypes(); err != nil {
		t.Fatal(err)
	}
	after, etagAfter := typeOrigins(t, b.baseURL)
	if after["test.f.v1.Ping"] != path || etagAfter == etag {
		t.Errorf("GET /types after the reload: test.f.v1.Ping from %q, ETag %q (before %q); want it listed and a new ETag", after["test.f.v1.Ping"], etagAfter, etag)
	}
	watch := subscribe(t, b.baseURL, "stream=pings&format=cloudevents", "")
	b.publish(t, &bridgev1.PublishRequest{Stream: "pings", Payload: &bridgev1.PublishRequest_Event{Event: pingAny(t, "f", "new", -3)}})
	servedSchema(t, b.baseURL+"/types/test.f.v1.Ping?format=cloudevents").Check(t, "a type loaded by the reload", []byte(watch.next(t).Data))
}

// TestTypesAskForATokenWithSubscriberAuth: with subscriber auth on, /types
// wants a valid token (any grants), in the places /events takes it, or a
// publisher's token granted a stream to publish to, and answers CORS
// preflights; with public streams it is open.
func TestTypesAskForATokenWithSubscriberAuth(t *testing.T) {
	t.Parallel()
	key := writeKeyFile(t, testHMACKey)
	b := startBridge(t, bridge.Config{JWTKey: key, CORSOrigins: []string{"https://app.example"}})
	tok := mint(t, jwt.SigningMethodHS256, testHMACKey, claimsFor("some.stream"))
	bad := mint(t, jwt.SigningMethodHS256, otherHMACKey, claimsFor("some.stream"))

	for _, tc := range []struct {
		name   string
		header http.Header
		status int
	}{
		{"no token", nil, http.StatusUnauthorized},
		{"bad signature", http.Header{"Authorization": {"Bearer " + bad}}, http.StatusUnauthorized},
		{"bearer", http.Header{"Authorization": {"Bearer " + tok}}, http.StatusOK},
		{"cookie", http.Header{"Cookie": {(&http.Cookie{Name: "__Secure-bridge_token", Value: tok}).String()}}, http.StatusOK},
		{"foreign origin", http.Header{"Authorization": {"Bearer " + tok}, "Origin": {"https://evil.example"}}, http.StatusForbidden},
	} {
		for _, path := range []string{"/types", "/types/shop.v1.OrderCreated"} {
			a := getTypes(t, b.baseURL+path, tc.header)
			if a.status != tc.status {
				t.Errorf("%s: GET %s = %d %s, want %d", tc.name, path, a.status, a.body, tc.status)
				continue
			}
			switch a.status {
			case http.StatusOK:
				if cc := a.header.Get("Cache-Control"); cc != "private, no-cache" {
					t.Errorf("%s: GET %s Cache-Control = %q, want private, no-cache", tc.name, path, cc)
				}
			case http.StatusUnauthorized:
				if a.header.Get("Cache-Control") != "no-store" || a.header.Get("WWW-Authenticate") == "" || len(a.body) < 20 {
					t.Errorf("%s: GET %s 401 with Cache-Control %q, WWW-Authenticate %q, body %q", tc.name, path, a.header.Get("Cache-Control"), a.header.Get("WWW-Authenticate"), a.body)
				}
			}
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodOptions, b.baseURL+"/types", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "authorization")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!slices.Contains(strings.Split(resp.Header.Get("Access-Control-Allow-Headers"), ", "), "Authorization") {
		t.Errorf("preflight of /types = %d, headers %v; want 204 allowing the origin and Authorization", resp.StatusCode, resp.Header)
	}

	// With publisher auth on too, a publisher's token serves, sent as
	// Authorization (reflection gives it the types already).
	both := startBridge(t, bridge.Config{JWTKey: key, Publishers: testPublishers(t)})
	for _, tc := range []struct {
		name   string
		header http.Header
		status int
	}{
		{"publisher's token", http.Header{"Authorization": {"Bearer " + ordersToken}}, http.StatusOK},
		{"subscriber's token", http.Header{"Authorization": {"Bearer " + tok}}, http.StatusOK},
		{"unknown token", http.Header{"Authorization": {"Bearer not-a-publisher"}}, http.StatusUnauthorized},
		{"publisher's token in the cookie", http.Header{"Cookie": {(&http.Cookie{Name: "__Secure-bridge_token", Value: ordersToken}).String()}}, http.StatusUnauthorized},
	} {
		if a := getTypes(t, both.baseURL+"/types/shop.v1.OrderCreated", tc.header); a.status != tc.status {
			t.Errorf("with both auths, %s: GET /types/shop.v1.OrderCreated = %d %s, want %d", tc.name, a.status, a.body, tc.status)
		}
	}

	open := startBridge(t, bridge.Config{JWTKey: key, PublicStreams: []string{"news"}})
	if a := getTypes(t, open.baseURL+"/types/shop.v1.OrderCreated", nil); a.status != http.StatusOK || a.header.Get("Cache-Control") != "no-cache" {
		t.Errorf("with public streams, GET /types/shop.v1.OrderCreated without a token = %d (Cache-Control %q), want 200 no-cache", a.status, a.header.Get("Cache-Control"))
	}
}

// TestCloudEventsDataSchema: with --public-url, a cloudevents frame whose
// type names a message the bridge renders carries dataschema, the URL of
// that type's schema under the public URL, and the frame's data validates
// against the schema served there (with format=cloudevents); a json event
// and one whose type names no message carry none. Without --public-url no
// frame carries one, and a public URL that cannot prefix /types/NAME stops
// the start.
func TestCloudEventsDataSchema(t *testing.T) {
	t.Parallel()
	const public = "https://events.acme.example/bridge/"
	b := startBridge(t, bridge.Config{PublicURL: public})
	plain := startBridge(t, bridge.Config{})
	c := subscribe(t, b.baseURL, "stream=orders&format=cloudevents", "")
	cp := subscribe(t, plain.baseURL, "stream=orders&format=cloudevents", "")
	note := jsonReq(t, "orders", "a note")
	note.Type = "order.note"
	for _, req := range []*bridgev1.PublishRequest{orderCreated(t, "o-1"), jsonReq(t, "orders", "x"), note} {
		b.publish(t, req)
		plain.publish(t, req)
	}
	type frame struct {
		Type       string  `json:"type"`
		DataSchema *string `json:"dataschema"`
	}
	for i, want := range []string{public + "types/shop.v1.OrderCreated", "", ""} {
		data := c.next(t).Data
		var f frame
		if err := json.Unmarshal([]byte(data), &f); err != nil {
			t.Fatal(err)
		}
		switch {
		case want == "" && f.DataSchema != nil:
			t.Errorf("frame %d (%s) has dataschema %q, want none", i, f.Type, *f.DataSchema)
		case want != "" && (f.DataSchema == nil || *f.DataSchema != want):
			t.Errorf("frame %d: %s, want dataschema %s", i, data, want)
		case want != "":
			// The bridge serves that schema at the same path under its own
			// address; the whole frame validates against its cloudevents form.
			path := strings.TrimPrefix(*f.DataSchema, public) // types/NAME
			servedSchema(t, b.baseURL+"/"+path+"?format=cloudevents").Check(t, "cloudevents frame", []byte(data))
		}
		var fp frame
		if err := json.Unmarshal([]byte(cp.next(t).Data), &fp); err != nil || fp.DataSchema != nil {
			t.Errorf("without --public-url, frame %d has dataschema %v (%v), want none", i, fp.DataSchema, err)
		}
	}
	for _, bad := range []string{"/bridge", "events.acme.example", "ftp://events.acme.example", "https://events.acme.example/?a=1", "https://u:p@events.acme.example"} {
		if _, err := bridge.New(bridge.Config{PublicURL: bad}); err == nil || !strings.Contains(err.Error(), "--public-url") {
			t.Errorf("New with the public URL %q = %v, want an error naming --public-url", bad, err)
		}
	}
}
