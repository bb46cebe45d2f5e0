package baseline_test

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/sse-bridge/bridge/internal/baseline"
)

func startServer(t *testing.T) *httptest.Server {
	t.Helper()
	b := baseline.New()
	srv := httptest.NewServer(b)
	t.Cleanup(func() {
		srv.Close()
		b.Close()
	})
	return srv
}

func publish(t *testing.T, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// subscribe opens GET url and returns its body once the response header
// arrived. The library sends the header only after the stream's goroutine
// registered the subscriber, so whatever is published from then on reaches it.
func subscribe(t *testing.T, url string) *bufio.Reader {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("subscribe = %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return bufio.NewReader(resp.Body)
}

// readFrame reads one frame's lines, without the blank line that ends it.
func readFrame(t *testing.T, br *bufio.Reader) []string {
	t.Helper()
	var frame []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read frame: %v (so far %q)", err, frame)
		}
		if line == "\n" {
			return frame
		}
		frame = append(frame, strings.TrimSuffix(line, "\n"))
	}
}

func TestPublishAndSubscribe(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	events := srv.URL + "/events?stream=orders"
	publishTo := srv.URL + "/publish?stream=orders&event=shop.v1.OrderCreated"

	// Nobody listens yet, but the event gets an id. The library's Publish only
	// queues it for the stream's goroutine, so a subscriber that registers
	// before that goroutine took the event from its queue gets it too: which
	// comes first is a race, and the test accepts either outcome.
	if code, id := publish(t, srv.URL+"/publish?stream=orders", `{"n":0}`); code != http.StatusOK || id != "1" {
		t.Fatalf("publish = %d %q, want 200 and id 1", code, id)
	}
	first := subscribe(t, events)
	if code, id := publish(t, publishTo, `{"n":1}`); code != http.StatusOK || id != "2" {
		t.Fatalf("publish = %d %q, want 200 and id 2", code, id)
	}
	frame := readFrame(t, first)
	if early := []string{"id: 1", `data: {"n":0}`}; slices.Equal(frame, early) {
		frame = readFrame(t, first) // the race above went the subscriber's way
	}
	if want := []string{"id: 2", `data: {"n":1}`, "event: shop.v1.OrderCreated"}; !slices.Equal(frame, want) {
		t.Errorf("first subscriber's frame = %q, want %q", frame, want)
	}

	// The first subscriber read event 2, so the stream's goroutine has taken
	// events 1 and 2 from its queue: a subscriber registered now gets neither
	// (AutoReplay is off), only what is published after it connected.
	second := subscribe(t, events)
	if code, id := publish(t, publishTo, `{"n":2}`); code != http.StatusOK || id != "3" {
		t.Fatalf("publish = %d %q, want 200 and id 3", code, id)
	}
	want := []string{"id: 3", `data: {"n":2}`, "event: shop.v1.OrderCreated"}
	for i, br := range []*bufio.Reader{first, second} {
		if frame := readFrame(t, br); !slices.Equal(frame, want) {
			t.Errorf("subscriber %d's frame = %q, want %q", i+1, frame, want)
		}
	}
}

func TestPublishRejects(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	for _, tt := range []struct{ url, body string }{
		{"/publish", "x"},              // no stream
		{"/publish?stream=orders", ""}, // empty data would end every subscriber's stream
	} {
		if code, _ := publish(t, srv.URL+tt.url, tt.body); code != http.StatusBadRequest {
			t.Errorf("POST %s with %q = %d, want 400", tt.url, tt.body, code)
		}
	}
	resp, err := http.Get(srv.URL + "/publish?stream=x") //nolint:noctx // a test against a local server
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /publish = %d, want 405", resp.StatusCode)
	}
}
