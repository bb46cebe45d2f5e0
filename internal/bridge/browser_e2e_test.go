package bridge_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	shopv1 "github.com/sse-bridge/bridge/gen/shop/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
	"github.com/sse-bridge/bridge/internal/payload/payloadtest"
)

// pageCSP is the Content-Security-Policy the page is served with: its own
// files and its own origin, nothing inline.
const pageCSP = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// TestNosniffOnEveryResponse: every HTTP answer, the event stream and error
// bodies included, tells the browser not to guess its type.
func TestNosniffOnEveryResponse(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{})
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/events?stream=orders", 200},
		{http.MethodGet, "/events", 400},
		{http.MethodPost, "/events?stream=orders", 405},
		{http.MethodGet, "/metrics", 200},
		{http.MethodGet, "/healthz", 200},
		{http.MethodGet, "/readyz", 200},
		{http.MethodGet, "/nothing-here", 404},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		req, err := http.NewRequestWithContext(ctx, tc.method, b.baseURL+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		cancel() // ends the event stream; the headers are in
		_ = resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s %s: X-Content-Type-Options %q, want nosniff", tc.method, tc.path, got)
		}
	}
}

func TestPageServesItsFilesWithStrictHeaders(t *testing.T) {
	t.Parallel()
	b := startBridge(t, bridge.Config{})
	for _, tc := range []struct {
		method, path string
		status       int
		contentType  string // prefix
	}{
		{method: http.MethodGet, path: "/", status: 200, contentType: "text/html"},
		{method: http.MethodHead, path: "/", status: 200, contentType: "text/html"},
		{method: http.MethodGet, path: "/app.js", status: 200, contentType: "text/javascript"},
		{method: http.MethodGet, path: "/style.css", status: 200, contentType: "text/css"},
		{method: http.MethodPost, path: "/", status: 405},
		{method: http.MethodGet, path: "/index.html", status: 404},
		{method: http.MethodGet, path: "/page/app.js", status: 404},
	} {
		req, err := http.NewRequestWithContext(t.Context(), tc.method, b.baseURL+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
			continue
		}
		if tc.status != 200 {
			continue
		}
		if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, tc.contentType) {
			t.Errorf("%s %s: Content-Type %q, want %s", tc.method, tc.path, got, tc.contentType)
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != pageCSP {
			t.Errorf("%s %s: Content-Security-Policy %q, want %q", tc.method, tc.path, got, pageCSP)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s %s: X-Content-Type-Options %q, want nosniff", tc.method, tc.path, got)
		}
		// The CSP allows no inline script or style: the page must have none.
		if tc.path == "/" && tc.method == http.MethodGet {
			for _, inline := range []string{"<script>", "<style", " style=", " onclick=", " onload=", "javascript:"} {
				if strings.Contains(string(body), inline) {
					t.Errorf("index.html contains %q, which its CSP blocks", inline)
				}
			}
		}
	}
}

// TestPageInBrowser opens the page in a headless chromium and checks what a
// user sees: events as they arrive, a resume with nothing lost and nothing
// twice after the connection drops, bridge.reset shown as such, and the
// formats. Every wait is on a DOM condition (data-* attributes the page sets),
// bounded by waitLimit.
func TestPageInBrowser(t *testing.T) {
	t.Parallel()
	newTab := startBrowser(t)

	t.Run("shows events and resumes after a dropped connection", func(t *testing.T) {
		t.Parallel()
		b := startBridge(t, bridge.Config{})
		// The browser reaches the bridge through a proxy that can cut its
		// connections: to the bridge, a network failure.
		proxy := startCutProxy(t, strings.TrimPrefix(b.baseURL, "http://"))
		tab := newTab(t)
		do(tab, t, "open the page",
			chromedp.Navigate(proxy.url()+"/?stream=orders"),
			chromedp.WaitVisible(chromedp.CSS(`#status[data-state="open"]`)),
		)

		// Before the cut: a json event, a typed one (the page listens for
		// its name by default), and one whose data is HTML.
		var want []shownFrame
		hello := b.publish(t, jsonReq(t, "orders", map[string]any{"hello": "world", "n": 1.0}))
		typed := b.publish(t, orderCreated(t, "o-1"))
		html := b.publish(t, jsonReq(t, "orders", `<img src=x onerror="document.title='owned'">`))
		want = append(want, shownFrame{id(hello), "message"}, shownFrame{id(typed), "shop.v1.OrderCreated"}, shownFrame{id(html), "message"})
		waitFrame(tab, t, html)
		if got := run(tab, t, chromedp.TextContent(chromedp.CSS(frameSel(hello)+" pre"))); got != "{\n  \"hello\": \"world\",\n  \"n\": 1\n}" {
			t.Errorf("data of %d shown as %q, want it pretty-printed", hello, got)
		}
		if got := run(tab, t, chromedp.TextContent(chromedp.CSS(frameSel(typed)+" pre"))); !strings.Contains(got, `"orderId": "o-1"`) {
			t.Errorf("data of the typed event %d shown as %q, want its JSON", typed, got)
		}
		if got := run(tab, t, chromedp.TextContent(chromedp.CSS(frameSel(html)+" pre"))); got != `"<img src=x onerror=\"document.title='owned'\">"` {
			t.Errorf("HTML data shown as %q, want it as text", got)
		}
		if n := run(tab, t, chromedp.Evaluate[int](`document.querySelectorAll("#events img").length`)); n != 0 {
			t.Errorf("the event's HTML became %d elements, want text only", n)
		}

		// Cut: the page sees the error and waits to reconnect. Events
		// published now reach it only through its resume.
		proxy.cut()
		do(tab, t, "wait for the page to notice the cut",
			chromedp.WaitVisible(chromedp.CSS(`#status[data-state="connecting"]`)))
		for i := range 3 {
			n := b.publish(t, jsonReq(t, "orders", map[string]any{"during": float64(i)}))
			want = append(want, shownFrame{id(n), "message"})
		}
		proxy.restore()
		do(tab, t, "wait for the page to reconnect",
			chromedp.WaitVisible(chromedp.CSS(`#status[data-state="open"]:not([data-reconnects="0"])`)))
		for i := range 2 {
			n := b.publish(t, jsonReq(t, "orders", map[string]any{"after": float64(i)}))
			want = append(want, shownFrame{id(n), "message"})
		}
		// Frames on a connection arrive in order, so once the last live
		// event shows, a replayed duplicate would have shown before it.
		waitFrame(tab, t, parseID(t, want[len(want)-1].ID))

		if diff := cmp.Diff(want, shownFrames(tab, t)); diff != "" {
			t.Errorf("frames on the page, oldest first (-want +got):\n%s", diff)
		}
		status := run(tab, t, chromedp.Attributes(chromedp.CSS("#status")))
		if status["data-events"] != strconvI(int64(len(want))) || status["data-resets"] != "0" || status["data-reconnects"] == "0" {
			t.Errorf("status %v, want %d events, no reset and a reconnect", status, len(want))
		}
		if got := run(tab, t, chromedp.Text(chromedp.ID("last-id"))); got != want[len(want)-1].ID {
			t.Errorf("last id shown %q, want %s", got, want[len(want)-1].ID)
		}
		if title := run(tab, t, chromedp.Title()); title == "owned" {
			t.Errorf("the event's HTML ran as script")
		}
		screenshot(tab, t)
	})

	t.Run("shows bridge.reset when resuming from beyond history", func(t *testing.T) {
		t.Parallel()
		b := startBridge(t, bridge.Config{HistorySize: 2})
		first := b.publish(t, jsonReq(t, "orders", 0.0))
		for i := 1; i < 5; i++ {
			b.publish(t, jsonReq(t, "orders", float64(i)))
		}
		tab := newTab(t)
		// A reload of a page that had seen up to first: lastEventId in its URL.
		do(tab, t, "open the page resuming after a trimmed id",
			chromedp.Navigate(b.baseURL+"/?stream=orders&lastEventId="+id(first)),
			chromedp.WaitVisible(chromedp.CSS(`#events li.reset[data-event-type="bridge.reset"]`)),
		)
		text := run(tab, t, chromedp.TextContent(chromedp.CSS(`li.reset`)))
		for _, s := range []string{"bridge.reset", "events may be missing", bridge.ResetTrimmed} {
			if !strings.Contains(text, s) {
				t.Errorf("reset frame shows %q, want it to say %q", text, s)
			}
		}
		if got := run(tab, t, chromedp.Value(chromedp.ID("last-event-id"))); got != id(first) {
			t.Errorf("resume field %q, want the URL's lastEventId %d", got, first)
		}

		live := b.publish(t, jsonReq(t, "orders", "live"))
		waitFrame(tab, t, live)
		got := shownFrames(tab, t)
		if len(got) != 2 || got[0].Type != bridge.ResetEvent || got[1] != (shownFrame{id(live), "message"}) {
			t.Errorf("frames %v, want the reset, then only the live event %d", got, live)
		}
		status := run(tab, t, chromedp.Attributes(chromedp.CSS("#status")))
		if status["data-resets"] != "1" || status["data-events"] != "1" {
			t.Errorf("status %v, want 1 reset and 1 event", status)
		}
	})

	t.Run("says why the bridge refused a subscription", func(t *testing.T) {
		t.Parallel()
		b := startBridge(t, bridge.Config{})
		tab := newTab(t)
		do(tab, t, "open the page with an invalid stream name",
			chromedp.Navigate(b.baseURL+"/?stream=no..name"),
			chromedp.WaitVisible(chromedp.CSS(`#status[data-state="closed"]`)),
			chromedp.WaitVisible(chromedp.ID("note")),
		)
		if got := run(tab, t, chromedp.TextContent(chromedp.ID("note"))); !strings.Contains(got, "HTTP 400") || !strings.Contains(got, "no..name") {
			t.Errorf("note %q, want the bridge's 400 and its message", got)
		}
	})

	t.Run("data format needs event names, envelope shows every frame", func(t *testing.T) {
		t.Parallel()
		b := startBridge(t, bridge.Config{})
		data := newTab(t)
		envelope := newTab(t)
		do(data, t, "open the page", chromedp.Navigate(b.baseURL+"/?stream=orders"),
			chromedp.WaitVisible(chromedp.CSS(`#status[data-state="open"]`)))
		do(envelope, t, "open the page", chromedp.Navigate(b.baseURL+"/?stream=orders&stream=users&format=envelope"),
			chromedp.WaitVisible(chromedp.CSS(`#status[data-state="open"]`)))

		typed := b.publish(t, orderCreated(t, "o-2"))
		note := jsonReq(t, "users", "a note")
		note.Type = "order.note" // a name the data-format page does not listen for
		named := b.publish(t, note)
		last := b.publish(t, jsonReq(t, "orders", "last"))

		waitFrame(data, t, last)
		if diff := cmp.Diff([]shownFrame{{id(typed), "shop.v1.OrderCreated"}, {id(last), "message"}}, shownFrames(data, t)); diff != "" {
			t.Errorf("data format: frames (-want +got):\n%s", diff)
		}
		waitFrame(envelope, t, last)
		if diff := cmp.Diff([]shownFrame{{id(typed), "message"}, {id(named), "message"}, {id(last), "message"}}, shownFrames(envelope, t)); diff != "" {
			t.Errorf("envelope format: frames (-want +got):\n%s", diff)
		}
		pre := run(envelope, t, chromedp.TextContent(chromedp.CSS(frameSel(named)+" pre")))
		if !strings.Contains(pre, `"type": "order.note"`) || !strings.Contains(pre, `"stream": "users"`) {
			t.Errorf("envelope shown as %q, want its type and stream", pre)
		}
		if got := run(envelope, t, chromedp.Value(chromedp.ID("format"))); got != "envelope" {
			t.Errorf("format chosen %q, want the URL's envelope", got)
		}
	})
}

// TestPageListensForTheTypesInBrowser: the page reads /types and, in the
// data format, listens for every type the bridge renders, a type loaded
// from a descriptor set included, without being told its name; each frame
// shows its type, linked to its schema, in every format. With subscriber
// auth on and a token cookie only for /events, the page says it has no
// types and listens for the names it was given; a cookie for / opens both.
func TestPageListensForTheTypesInBrowser(t *testing.T) {
	t.Parallel()
	newTab := startBrowser(t)

	t.Run("every known type, with its schema", func(t *testing.T) {
		t.Parallel()
		set := filepath.Join(t.TempDir(), "page.binpb")
		writeSetFile(t, set, payloadtest.PingFile("page"))
		b := startBridge(t, bridge.Config{DescriptorSets: []string{set}})
		data, envelope := newTab(t), newTab(t)
		do(data, t, "open the page", chromedp.Navigate(b.baseURL+"/?stream=orders"),
			chromedp.WaitVisible(chromedp.CSS(`#status[data-state="open"]:not([data-types="loading"])`)))
		do(envelope, t, "open the page", chromedp.Navigate(b.baseURL+"/?stream=orders&format=envelope"),
			chromedp.WaitVisible(chromedp.CSS(`#status[data-state="open"]:not([data-types="loading"])`)))
		if n := run(data, t, chromedp.Attributes(chromedp.CSS("#status")))["data-types"]; n == "unavailable" || n == "0" {
			t.Fatalf("the page knows %s types, want the bridge's", n)
		}

		ping := b.publish(t, &bridgev1.PublishRequest{Stream: "orders", Payload: &bridgev1.PublishRequest_Event{Event: pingAny(t, "page", "hi", 7)}})
		changed := b.publish(t, orderStatusChanged(t, "o-3"))
		note := jsonReq(t, "orders", "a note")
		note.Type = "order.note" // a publisher's name: no type of /types, not in the form
		named := b.publish(t, note)
		last := b.publish(t, jsonReq(t, "orders", "last"))

		waitFrame(data, t, last)
		want := []shownFrame{{id(ping), "test.page.v1.Ping"}, {id(changed), "shop.v1.OrderStatusChanged"}, {id(last), "message"}}
		if diff := cmp.Diff(want, shownFrames(data, t)); diff != "" {
			t.Errorf("data format: frames (-want +got):\n%s", diff)
		}
		for _, tc := range []struct {
			tab            context.Context
			n              uint64
			schema, origin string
		}{
			{data, ping, "test.page.v1.Ping", set},
			{data, changed, "shop.v1.OrderStatusChanged", "compiled in"},
			{data, last, "", "json, untyped"},
			{envelope, ping, "test.page.v1.Ping", set},
			{envelope, named, "", "order.note (the publisher's name: no schema)"},
		} {
			waitFrame(tc.tab, t, tc.n)
			attrs := run(tc.tab, t, chromedp.Attributes(chromedp.CSS(frameSel(tc.n))))
			text := run(tc.tab, t, chromedp.TextContent(chromedp.CSS(frameSel(tc.n)+" .type")))
			if attrs["data-schema"] != tc.schema || !strings.Contains(text, tc.origin) {
				t.Errorf("event %d shows type %q (schema %q), want schema %q and %q", tc.n, text, attrs["data-schema"], tc.schema, tc.origin)
			}
			if tc.schema != "" {
				href := run(tc.tab, t, chromedp.Attributes(chromedp.CSS(frameSel(tc.n)+" .type a")))["href"]
				if href != "/types/"+tc.schema {
					t.Errorf("event %d links its type to %q, want /types/%s", tc.n, href, tc.schema)
				}
			}
		}
	})

	t.Run("without the types it listens for the names given", func(t *testing.T) {
		t.Parallel()
		b := startBridge(t, bridge.Config{JWTKey: writeKeyFile(t, testHMACKey)})
		// localhost: a secure context for the cookie's Secure attribute.
		base := strings.Replace(b.baseURL, "127.0.0.1", "localhost", 1)
		tok := mint(t, jwt.SigningMethodHS256, testHMACKey, claimsFor("orders"))
		tab := newTab(t)
		// The cookie as the security docs set it: for /events only.
		setCookie(tab, t, "__Secure-bridge_token", base+"/events", tok)
		do(tab, t, "open the page", chromedp.Navigate(base+"/?stream=orders&types=shop.v1.OrderCreated"),
			chromedp.WaitVisible(chromedp.CSS(`#status[data-state="open"][data-types="unavailable"]`)),
			chromedp.WaitVisible(chromedp.ID("types-note")))
		if got := run(tab, t, chromedp.TextContent(chromedp.ID("types-note"))); !strings.Contains(got, "HTTP 401") || !strings.Contains(got, "only for the event names in the form") {
			t.Errorf("types note %q, want the 401 and what the page does instead", got)
		}
		typed := b.publish(t, orderCreated(t, "o-4"))
		b.publish(t, orderStatusChanged(t, "o-4")) // a name the page was not given
		last := b.publish(t, jsonReq(t, "orders", "last"))
		waitFrame(tab, t, last)
		if diff := cmp.Diff([]shownFrame{{id(typed), "shop.v1.OrderCreated"}, {id(last), "message"}}, shownFrames(tab, t)); diff != "" {
			t.Errorf("frames without /types (-want +got):\n%s", diff)
		}
		if text := run(tab, t, chromedp.TextContent(chromedp.CSS(frameSel(typed)+" .type"))); !strings.Contains(text, "types unavailable") {
			t.Errorf("type shown %q, want it to say the types are unavailable", text)
		}

		// A cookie for the whole origin reaches /types too.
		other := newTab(t)
		setCookiePath(other, t, "__Secure-bridge_token", base+"/", "/", tok)
		do(other, t, "open the page with a cookie for /", chromedp.Navigate(base+"/?stream=orders"),
			chromedp.WaitVisible(chromedp.CSS(`#status[data-state="open"]:not([data-types="loading"])`)))
		if n := run(other, t, chromedp.Attributes(chromedp.CSS("#status")))["data-types"]; n == "unavailable" {
			t.Errorf("with a cookie for /, the page still has no types")
		}
		again := b.publish(t, orderStatusChanged(t, "o-5"))
		waitFrame(other, t, again)
		if a := run(other, t, chromedp.Attributes(chromedp.CSS(frameSel(again)))); a["data-schema"] != "shop.v1.OrderStatusChanged" {
			t.Errorf("event %d: data-schema %q, want shop.v1.OrderStatusChanged", again, a["data-schema"])
		}
	})
}

// startBrowser starts a headless chromium for the test, and returns a func
// that opens a tab in it. Without chromium the test is skipped, or fails in
// CI.
func startBrowser(t *testing.T) (newTab func(*testing.T) context.Context) {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		const install = "apt-get update && apt-get install -y chromium"
		if os.Getenv("CI") != "" {
			t.Fatalf("chromium is not installed (.ci/run installs it): %s", install)
		}
		t.Skipf("chromium is not installed; to run this test: %s", install)
	}
	// The allocator gives the browser a new temporary user-data-dir and
	// removes it when the browser ends.
	alloc, cancelAlloc := chromedp.NewExecAllocator(t.Context(),
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		// A container's /dev/shm is often 64 MB, which chromium can fill.
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1100, 900),
	)
	t.Cleanup(cancelAlloc) // waits for the browser to exit
	browser, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	// The first Do starts the browser, for as long as browser lives: no
	// timeout on this one.
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return func(t *testing.T) context.Context {
		t.Helper()
		return openTab(browser, t)
	}
}

// openTab opens a tab, closed when the test ends. Uncaught exceptions and
// security messages (a CSP violation) in it fail the test.
func openTab(browser context.Context, t *testing.T) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(browser)
	messages := chromedp.Console(tab) // opens the tab
	var (
		mu  sync.Mutex
		bad []string
	)
	done := make(chan struct{})
	go func() { // ends when the tab's context does
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Source == "security" {
				mu.Lock()
				bad = append(bad, m.String())
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, m := range bad {
			t.Errorf("page console: %s", m)
		}
	})
	return tab
}

// do runs actions in tab, failing the test when one fails or all take longer
// than waitLimit.
func do(tab context.Context, t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, waitLimit)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// run is do for one action with a value.
func run[T any](tab context.Context, t *testing.T, action chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, waitLimit)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	if err != nil {
		t.Fatalf("in the browser: %v", err)
	}
	return v
}

// frameSel selects the page's frame of the event with id n.
func frameSel(n uint64) string { return `#events li[data-event-id="` + id(n) + `"]` }

func waitFrame(tab context.Context, t *testing.T, n uint64) {
	t.Helper()
	do(tab, t, "wait for event "+id(n), chromedp.WaitVisible(chromedp.CSS(frameSel(n))))
}

// shownFrame is what the page lists for a frame: its id and event name
// ("message" when it has none).
type shownFrame struct{ ID, Type string }

// shownFrames lists the page's frames, oldest first (the page shows the
// newest on top).
func shownFrames(tab context.Context, t *testing.T) []shownFrame {
	t.Helper()
	var out []shownFrame
	for _, a := range run(tab, t, chromedp.AttributesAll(chromedp.CSSAll("#events li"))) {
		out = append(out, shownFrame{a["data-event-id"], a["data-event-type"]})
	}
	slices.Reverse(out)
	return out
}

// screenshot keeps a picture of the page in the test's artifact directory
// (go test -artifacts keeps it).
func screenshot(tab context.Context, t *testing.T) {
	t.Helper()
	png := run(tab, t, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), "page.png"), png, 0o600); err != nil {
		t.Errorf("save screenshot: %v", err)
	}
}

func orderStatusChanged(t *testing.T, orderID string) *bridgev1.PublishRequest {
	t.Helper()
	ev, err := anypb.New(&shopv1.OrderStatusChanged{OrderId: orderID, Current: shopv1.OrderStatus_ORDER_STATUS_SHIPPED})
	if err != nil {
		t.Fatal(err)
	}
	return &bridgev1.PublishRequest{Stream: "orders", Payload: &bridgev1.PublishRequest_Event{Event: ev}}
}

func orderCreated(t *testing.T, orderID string) *bridgev1.PublishRequest {
	t.Helper()
	ev, err := anypb.New(&shopv1.OrderCreated{
		OrderId:   orderID,
		Customer:  &shopv1.Customer{Id: "c-7", Name: "Ada"},
		Total:     &shopv1.Money{Currency: "EUR", AmountMinor: 1250},
		Status:    shopv1.OrderStatus_ORDER_STATUS_PAID,
		CreatedAt: timestamppb.New(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &bridgev1.PublishRequest{Stream: "orders", Payload: &bridgev1.PublishRequest_Event{Event: ev}}
}
