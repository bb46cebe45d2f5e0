package bridge_test

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/sse-bridge/bridge/internal/bridge"
)

// probePage is a page of another origin that subscribes with credentials and
// records what its EventSource reports, for the test to read.
const probePage = `<!doctype html>
<meta charset="utf-8">
<title>cross-origin subscriber</title>
<script src="/probe.js"></script>
`

const probeJS = `"use strict";
// Subscribes to ?src= with credentials (the cookie goes along), and keeps
// every open, message and error, with the readyState at each error.
const probe = {opens: 0, events: [], errors: []};
window.probe = probe;
const es = new EventSource(new URLSearchParams(location.search).get("src"), {withCredentials: true});
window.probeSource = es;
es.onopen = () => { probe.opens++; };
es.onmessage = (e) => { probe.events.push({id: e.lastEventId, data: e.data}); };
es.onerror = () => { probe.errors.push(es.readyState); };
`

// startProbePages serves the probe page on loopback.
func startProbePages(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, probePage)
	})
	mux.HandleFunc("GET /probe.js", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		_, _ = io.WriteString(w, probeJS)
	})
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts
}

// eventsProxy is a reverse proxy in front of the bridge that records the
// status of every /events request that reaches the bridge, in order, and
// can end the streams it carries, as the bridge does when a token is about
// to expire.
type eventsProxy struct {
	ts *httptest.Server

	mu       sync.Mutex
	statuses []int
	ended    time.Time // when end last ran
	reqAt    []time.Time
	streams  []context.CancelFunc
}

func startEventsProxy(t *testing.T, bridgeURL string) *eventsProxy {
	t.Helper()
	target, err := url.Parse(bridgeURL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1 // pass every frame on at once
	rp.ErrorLog = log.New(io.Discard, "", 0)
	p := &eventsProxy{}
	p.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		p.mu.Lock()
		p.streams = append(p.streams, cancel)
		p.mu.Unlock()
		rp.ServeHTTP(&statusWriter{ResponseWriter: w, p: p}, r.WithContext(ctx))
	}))
	t.Cleanup(p.ts.Close)
	return p
}

// end ends every stream the proxy carries: the browser sees the response
// end, and reconnects.
func (p *eventsProxy) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ended = time.Now()
	for _, cancel := range p.streams {
		cancel()
	}
}

func (p *eventsProxy) seen() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.statuses)
}

// reconnectGap is how long the browser waited after end to send the
// request that followed it.
func (p *eventsProxy) reconnectGap() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, at := range p.reqAt {
		if at.After(p.ended) {
			return at.Sub(p.ended)
		}
	}
	return 0
}

// url is the proxy's /events URL as the browser reaches it: by the name
// localhost, the same site as the probe page.
func (p *eventsProxy) url(t *testing.T, query string) string {
	t.Helper()
	u, err := url.Parse(p.ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	return "http://localhost:" + u.Port() + "/events?" + query
}

type statusWriter struct {
	http.ResponseWriter
	p *eventsProxy
}

func (w *statusWriter) WriteHeader(code int) {
	w.p.mu.Lock()
	w.p.statuses = append(w.p.statuses, code)
	w.p.reqAt = append(w.p.reqAt, time.Now())
	w.p.mu.Unlock()
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// probeState is what the probe page recorded.
type probeState struct {
	Opens  int          `json:"opens"`
	Events []probeEvent `json:"events"`
	Errors []int        `json:"errors"` // readyState at each error: 0 connecting, 2 closed
}

type probeEvent struct {
	ID   string `json:"id"`
	Data string `json:"data"`
}

// normalized returns s with the data of each event re-marshalled, so that
// the encoder's whitespace does not matter.
func (s probeState) normalized(t *testing.T) probeState {
	t.Helper()
	out := s
	out.Events = make([]probeEvent, len(s.Events))
	for i, e := range s.Events {
		var v any
		if err := json.Unmarshal([]byte(e.Data), &v); err != nil {
			t.Fatalf("event %s data %q is not JSON: %v", e.ID, e.Data, err)
		}
		out.Events[i] = probeEvent{ID: e.ID, Data: mustJSON(t, v)}
	}
	return out
}

func readProbe(tab context.Context, t *testing.T) probeState {
	t.Helper()
	return run(tab, t, chromedp.Evaluate[probeState](`window.probe`)).normalized(t)
}

// waitProbe waits until the JavaScript condition on window.probe holds.
func waitProbe(tab context.Context, t *testing.T, what, cond string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, waitLimit)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool]("window.probe !== undefined && ("+cond+")",
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(waitLimit)))
	if err != nil {
		t.Fatalf("%s: %v; the page recorded %+v", what, err, readProbe(tab, t))
	}
}

// setCookie stores the bridge's cookie in the browser as a page's backend
// would set it: for the bridge's host, HttpOnly, SameSite=Lax.
func setCookie(tab context.Context, t *testing.T, name, bridgeURL, value string) {
	t.Helper()
	setCookiePath(tab, t, name, bridgeURL, "/events", value)
}

// setCookiePath is setCookie for the paths under path.
func setCookiePath(tab context.Context, t *testing.T, name, bridgeURL, path, value string) {
	t.Helper()
	yes := true
	ctx, cancel := context.WithTimeout(tab, waitLimit)
	defer cancel()
	if _, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{
		Name: name, Value: value, URL: bridgeURL, Path: path,
		Secure: &yes, HTTPOnly: &yes, SameSite: network.CookieSameSiteLax,
	}); err != nil {
		t.Fatalf("set cookie %s: %v", name, err)
	}
}

// TestCrossOriginPageWithCookieInBrowser: a page on another origin of the
// same site (http://localhost:P1, the bridge behind http://localhost:P2)
// subscribes with new EventSource(url, {withCredentials: true}); the
// bridge's cookie, set as the README says (__Secure- name, Secure,
// HttpOnly, SameSite=Lax), carries its token. It gets exactly the events
// published, in order. Then its token goes bad and its stream ends: the
// browser's reconnect is refused with 401 and EventSource stops for good.
// A page of an origin not on --cors-origins gets 403, before token work.
func TestCrossOriginPageWithCookieInBrowser(t *testing.T) {
	t.Parallel()
	newTab := startBrowser(t)
	pages := startProbePages(t)
	pagePort := strings.TrimPrefix(pages.URL, "http://127.0.0.1:")
	pageOrigin := "http://localhost:" + pagePort
	b := startBridge(t, bridge.Config{JWTKey: writeKeyFile(t, testHMACKey), CORSOrigins: []string{pageOrigin}})
	proxy := startEventsProxy(t, b.baseURL)
	const cookie = "__Secure-bridge_token" // the default --auth-cookie
	src := proxy.url(t, "stream=orders")

	tab := newTab(t)
	setCookie(tab, t, cookie, src, mint(t, jwt.SigningMethodHS256, testHMACKey, claimsFor("orders")))
	do(tab, t, "open the page of the other origin", chromedp.Navigate(pageOrigin+"/?src="+url.QueryEscape(src)))
	waitProbe(tab, t, "wait for the stream to open", "window.probe.opens === 1")

	var want []probeEvent
	for _, v := range []any{"one", map[string]any{"n": 2.0}, "three"} {
		n := b.publish(t, jsonReq(t, "orders", v))
		want = append(want, probeEvent{ID: id(n), Data: mustJSON(t, v)})
	}
	waitProbe(tab, t, "wait for the events", "window.probe.events.length >= 3")
	if diff := cmp.Diff(probeState{Opens: 1, Events: want, Errors: []int{}}, readProbe(tab, t)); diff != "" {
		t.Errorf("the page recorded (-want +got):\n%s", diff)
	}

	// The token goes bad (its page logged out, say) and the stream ends.
	expired := mint(t, jwt.SigningMethodHS256, testHMACKey, with(claimsFor("orders"), "exp", time.Now().Add(-time.Hour).Unix()))
	setCookie(tab, t, cookie, src, expired)
	proxy.end()
	waitProbe(tab, t, "wait for EventSource to give up", "window.probeSource.readyState === 2")
	if got := proxy.seen(); !slices.Equal(got, []int{200, 401}) {
		t.Fatalf("statuses of the requests that reached the bridge %v, want [200 401]", got)
	}
	// Stopped for good: nothing more reaches the bridge in twice the delay
	// the browser took to reconnect. (A window, not a synchronisation: a
	// negative can only be watched for a while.)
	quiet := min(max(2*proxy.reconnectGap(), time.Second), waitLimit/2)
	time.Sleep(quiet)
	if got := proxy.seen(); !slices.Equal(got, []int{200, 401}) {
		t.Errorf("statuses %v %v after the 401, want no request after it", got, quiet)
	}
	if diff := cmp.Diff(probeState{Opens: 1, Events: want, Errors: []int{0, 2}}, readProbe(tab, t)); diff != "" {
		t.Errorf("the page recorded (-want +got), errors: one to reconnect, one to stop:\n%s", diff)
	}
	if got := subscriberAuthFailures(t, b.baseURL, "expired"); got != 1 {
		t.Errorf("expired token failures = %v, want 1", got)
	}

	// Another origin (the same page by its address, not localhost) is not
	// on --cors-origins: 403, before any token work, and nothing arrives.
	before := proxy.seen()
	other := newTab(t)
	do(other, t, "open the page of an origin not allowed", chromedp.Navigate(pages.URL+"/?src="+url.QueryEscape(src)))
	waitProbe(other, t, "wait for EventSource to fail", "window.probeSource.readyState === 2")
	if got := proxy.seen(); !slices.Equal(got[len(before):], []int{403}) {
		t.Errorf("statuses of the other origin's requests %v, want [403]", got[len(before):])
	}
	if diff := cmp.Diff(probeState{Opens: 0, Events: []probeEvent{}, Errors: []int{2}}, readProbe(other, t)); diff != "" {
		t.Errorf("the other origin's page recorded (-want +got):\n%s", diff)
	}
	if got := scrape(t, b.baseURL)[`bridge_rejections_total{reason="origin"}`]; got != 1 {
		t.Errorf("origin rejections = %v, want 1", got)
	}
}

// mustJSON is v as JSON, in the form the bridge renders (compact, keys
// sorted): comparable with what the page received.
func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
