package bridge_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	bridgev1 "github.com/sse-bridge/bridge/gen/bridge/v1"
	"github.com/sse-bridge/bridge/internal/bridge"
	"github.com/sse-bridge/bridge/internal/payload"
)

const (
	acmeWebDir = "../../examples/acme/web"
	acmeSet    = "../../examples/acme/acme.binpb"
)

// compileAcmePage compiles the example's page and its generated module
// with the pinned TypeScript compiler into a directory with the page's
// other files, and returns it. Without the compiler the test is skipped.
func compileAcmePage(t *testing.T) string {
	t.Helper()
	tsc, err := filepath.Abs("../../.ci/node/node_modules/.bin/tsc")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tsc); err != nil {
		t.Skip("no TypeScript compiler: run npm install --prefix .ci/node typescript@5.9.3 (as .ci/run does) to compile the example's page")
	}
	out := t.TempDir()
	cmd := exec.CommandContext(t.Context(), tsc, "-p", acmeWebDir, "--outDir", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tsc -p examples/acme/web: %v\n%s", err, msg)
	}
	for _, name := range []string{"index.html", "style.css"} {
		b, err := os.ReadFile(filepath.Join(acmeWebDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// acmeEvent builds a publish of an acme event, a type only the example's
// descriptor set defines, from its protojson.
func acmeEvent(t *testing.T, types *payload.Registry, stream, name, js string) *bridgev1.PublishRequest {
	t.Helper()
	mt, err := types.FindMessageByName(protoreflect.FullName(name))
	if err != nil {
		t.Fatal(err)
	}
	m := mt.New().Interface()
	if err := (protojson.UnmarshalOptions{Resolver: types}).Unmarshal([]byte(js), m); err != nil {
		t.Fatalf("%s %s: %v", name, js, err)
	}
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return &bridgev1.PublishRequest{Stream: stream, Payload: &bridgev1.PublishRequest_Event{Event: a}}
}

// shownInvoice is a row of the example's page: the event's id and kind.
type shownInvoice struct{ ID, Kind string }

func shownInvoices(tab context.Context, t *testing.T) []shownInvoice {
	t.Helper()
	var out []shownInvoice
	for _, a := range run(tab, t, chromedp.AttributesAll(chromedp.CSSAll("#invoices li"))) {
		out = append(out, shownInvoice{a["data-event-id"], a["data-kind"]})
	}
	slices.Reverse(out) // the page lists the newest first
	return out
}

func waitInvoice(tab context.Context, t *testing.T, n uint64) {
	t.Helper()
	do(tab, t, "wait for event "+id(n), chromedp.WaitVisible(chromedp.CSS(`#invoices li[data-event-id="`+id(n)+`"]`)))
}

// TestAcmePageInBrowser runs the example's page, compiled from TypeScript
// with the pinned compiler, on another origin than the bridge, in headless
// chromium: its handlers, typed by the generated module, get each acme
// event through BridgeEvents (data and envelope formats); after a cut
// connection the browser resumes with nothing lost and nothing twice; when
// the gap outgrows history, the page gets bridge.reset through onReset and
// starts over, then gets live events again.
func TestAcmePageInBrowser(t *testing.T) {
	t.Parallel()
	dir := compileAcmePage(t)
	newTab := startBrowser(t)
	pages := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(pages.Close)
	types, err := payload.NewRegistry([]string{acmeSet})
	if err != nil {
		t.Fatal(err)
	}
	b := startBridge(t, bridge.Config{DescriptorSets: []string{acmeSet}, CORSOrigins: []string{pages.URL}, HistorySize: 4})
	proxy := startCutProxy(t, strings.TrimPrefix(b.baseURL, "http://"))
	tab, envTab := newTab(t), newTab(t)
	do(tab, t, "open the page", chromedp.Navigate(pages.URL+"/?stream=billing&bridge="+proxy.url()),
		chromedp.WaitVisible(chromedp.CSS(`#status[data-state="open"]`)))
	do(envTab, t, "open the page in the envelope format", chromedp.Navigate(pages.URL+"/?stream=billing&format=envelope&bridge="+b.baseURL),
		chromedp.WaitVisible(chromedp.CSS(`#status[data-state="open"]`)))

	paid := func(inv string) *bridgev1.PublishRequest {
		return acmeEvent(t, types, "billing", "acme.billing.v1.InvoicePaid",
			`{"invoiceId":"`+inv+`","amount":{"currency":"EUR","amountMinor":"9007199254740993"},"paymentMethod":"PAYMENT_METHOD_CARD","paidAt":"2026-11-25T10:00:00Z"}`)
	}
	var want []shownInvoice
	p1 := b.publish(t, paid("inv-1"))
	v1 := b.publish(t, acmeEvent(t, types, "billing", "acme.billing.v1.InvoiceVoided", `{"invoiceId":"inv-2","reason":"VOID_REASON_DUPLICATE","note":"<b>twice</b>"}`))
	j1 := b.publish(t, jsonReq(t, "billing", map[string]any{"hello": "acme"}))
	want = append(want, shownInvoice{id(p1), "paid"}, shownInvoice{id(v1), "voided"}, shownInvoice{id(j1), "other"})
	waitInvoice(tab, t, j1)
	// Typed fields as the generated types say: the int64 a string, exact
	// past 2^53; enums by name; text as text.
	for _, tc := range []struct {
		n    uint64
		want string
	}{
		{p1, "inv-1" + "90071992547409.93 EUR" + "PAYMENT_METHOD_CARD" + "2026-11-25T10:00:00Z"},
		{v1, "inv-2" + "VOID_REASON_DUPLICATE" + "<b>twice</b>"},
		{j1, `{"hello":"acme"}`},
	} {
		sel := `#invoices li[data-event-id="` + id(tc.n) + `"]`
		if got := run(tab, t, chromedp.TextContent(chromedp.CSS(sel))); !strings.HasSuffix(got, tc.want) {
			t.Errorf("event %d shown as %q, want it to end with %q", tc.n, got, tc.want)
		}
		waitInvoice(envTab, t, tc.n)
		if got := run(envTab, t, chromedp.TextContent(chromedp.CSS(sel))); !strings.HasSuffix(got, tc.want) {
			t.Errorf("envelope format: event %d shown as %q, want it to end with %q", tc.n, got, tc.want)
		}
	}

	// A cut: events published meanwhile come with the browser's resume.
	proxy.cut()
	do(tab, t, "wait for the page to notice the cut", chromedp.WaitVisible(chromedp.CSS(`#status[data-state="connecting"]`)))
	for _, inv := range []string{"inv-3", "inv-4"} {
		want = append(want, shownInvoice{id(b.publish(t, paid(inv))), "paid"})
	}
	proxy.restore()
	do(tab, t, "wait for the page to reconnect",
		chromedp.WaitVisible(chromedp.CSS(`#status[data-state="open"]:not([data-reconnects="0"])`)))
	live := b.publish(t, paid("inv-5"))
	want = append(want, shownInvoice{id(live), "paid"})
	waitInvoice(tab, t, live)
	if diff := cmp.Diff(want, shownInvoices(tab, t)); diff != "" {
		t.Errorf("after the resume, the page lists (-want +got):\n%s", diff)
	}

	// A longer cut: more events than history holds, so the resume gets a
	// reset; the page starts over and carries on with live events.
	proxy.cut()
	do(tab, t, "wait for the page to notice the second cut", chromedp.WaitVisible(chromedp.CSS(`#status[data-state="connecting"]`)))
	for i := range 6 {
		b.publish(t, paid("inv-missed-"+id(uint64(i))))
	}
	proxy.restore()
	do(tab, t, "wait for the reset", chromedp.WaitVisible(chromedp.CSS(`#status[data-resets="1"]`)),
		chromedp.WaitVisible(chromedp.ID("reset")))
	if got := run(tab, t, chromedp.Attributes(chromedp.ID("reset")))["data-reason"]; got != bridge.ResetTrimmed {
		t.Errorf("reset reason %q, want %s", got, bridge.ResetTrimmed)
	}
	after := b.publish(t, paid("inv-after"))
	waitInvoice(tab, t, after)
	if diff := cmp.Diff([]shownInvoice{{id(after), "paid"}}, shownInvoices(tab, t)); diff != "" {
		t.Errorf("after the reset, the page lists (-want +got):\n%s", diff)
	}
}
