package baseline_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
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

func TestPublishAndSubscribe(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	// Nobody listens yet: the event goes nowhere, but gets an id.
	if code, id := publish(t, srv.URL+"/publish?stream=orders", `{"n":0}`); code != http.StatusOK || id != "1" {
		t.Fatalf("publish = %d %q, want 200 and id 1", code, id)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events?stream=orders", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("subscribe = %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// The library registered the subscriber before it sent the header.
	if code, id := publish(t, srv.URL+"/publish?stream=orders&event=shop.v1.OrderCreated", `{"n":1}`); code != http.StatusOK || id != "2" {
		t.Fatalf("publish = %d %q, want 200 and id 2", code, id)
	}
	br := bufio.NewReader(resp.Body)
	var frame []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read frame: %v (so far %q)", err, frame)
		}
		if line == "\n" {
			break
		}
		frame = append(frame, strings.TrimSuffix(line, "\n"))
	}
	want := []string{"id: 2", `data: {"n":1}`, "event: shop.v1.OrderCreated"}
	if strings.Join(frame, "|") != strings.Join(want, "|") {
		t.Errorf("frame = %q, want %q", frame, want)
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
