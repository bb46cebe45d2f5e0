package h1stream

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// serve starts a server whose handler takes the connection over and hands
// the Stream to f on the handler's goroutine.
func serve(t *testing.T, f func(s *Stream)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Content-Length", "12") // framing headers are the Stream's own
		s := New(w, r)
		if s == nil {
			http.Error(w, "not taken over", http.StatusInternalServerError)
			return
		}
		f(s)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestStreamWritesAChunkedResponse(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", spill+10) // past spill: a chunk of its own, not copied
	srv := serve(t, func(s *Stream) {
		_, _ = s.Write([]byte("data: a\n\n"))
		_ = s.Flush()
		_, _ = s.Write([]byte("data: " + big + "\n\n"))
		s.Close(true)
	})
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("status %d, Content-Type %q, want 200, text/event-stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if got := resp.TransferEncoding; len(got) != 1 || got[0] != "chunked" {
		t.Errorf("Transfer-Encoding = %v, want [chunked]", got)
	}
	if resp.Header.Get("Content-Length") != "" || resp.Header.Get("Date") == "" {
		t.Errorf("headers %v: want no Content-Length and a Date", resp.Header)
	}
	body, err := io.ReadAll(resp.Body) // a clean end: the last chunk arrived
	if err != nil {
		t.Fatalf("read the body: %v", err)
	}
	if want := "data: a\n\ndata: " + big + "\n\n"; string(body) != want {
		t.Errorf("body is %d bytes, want %d", len(body), len(want))
	}
}

// TestStreamChunksStayUnderSpill: writes that add up to more than spill
// between flushes go out in chunks of at most spill, each write whole.
func TestStreamChunksStayUnderSpill(t *testing.T) {
	t.Parallel()
	piece := strings.Repeat("y", spill/3+100)
	srv := serve(t, func(s *Stream) {
		for range 7 {
			_, _ = s.Write([]byte(piece))
		}
		s.Close(true)
	})
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
	}
	var sizes []int
	total := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if _, err := fmt.Sscanf(line, "%x", &n); err != nil {
			t.Fatalf("chunk size line %q: %v", line, err)
		}
		if n == 0 {
			break
		}
		sizes = append(sizes, n)
		total += n
		if n > spill || n%len(piece) != 0 {
			t.Errorf("chunk of %d bytes: want at most %d, whole writes of %d", n, spill, len(piece))
		}
		if _, err := br.Discard(n + 2); err != nil {
			t.Fatal(err)
		}
	}
	if total != 7*len(piece) || len(sizes) < 3 {
		t.Errorf("chunks %v: want %d bytes in several chunks", sizes, 7*len(piece))
	}
}

func TestStreamIdleEndsOnStopWatchingAndOnChattyClients(t *testing.T) {
	t.Parallel()
	results := make(chan error, 2)
	srv := serve(t, func(s *Stream) {
		_ = s.Flush()
		s.StopWatching()
		results <- s.Idle() // the deadline passed: nil
		s.ResumeReading()
		results <- s.Idle() // the client sends too much
		s.Close(false)
	})
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: h1stream.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close() // the stream stays open; read nothing more
	if err := <-results; err != nil {
		t.Errorf("Idle after StopWatching = %v, want nil", err)
	}
	if _, err := conn.Write(make([]byte, maxStrayBytes+1)); err != nil {
		t.Fatal(err)
	}
	if err := <-results; !errors.Is(err, ErrTooChatty) {
		t.Errorf("Idle after %d stray bytes = %v, want ErrTooChatty", maxStrayBytes+1, err)
	}
}

func TestNewLeavesHTTP10ToNetHTTP(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	if s := New(rec, httptest.NewRequest(http.MethodGet, "/", nil)); s != nil {
		t.Error("New took over a ResponseRecorder, which cannot be hijacked")
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.ProtoMajor, r.ProtoMinor = 1, 0
	if s := New(rec, r); s != nil {
		t.Error("New took over an HTTP/1.0 request, which has no chunked encoding")
	}
}
