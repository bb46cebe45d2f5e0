package bridge

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	dto "github.com/prometheus/client_model/go"
)

// limitFixture is the SSE handler of a validated Config on a loopback
// server, with a memory engine and the handler's metrics. closed receives
// once per HTTP connection the server closed, which it does only after the
// connection's handler returned: a test waits on it, never on time, to know
// that a client that left gave its places back.
type limitFixture struct {
	engine  *MemoryEngine
	hub     *hub
	handler *sseHandler
	metrics *metrics
	srv     *httptest.Server
	client  *http.Client // no keep-alive: every request's connection closes
	closed  chan struct{}
	clock   *fakeClock
}

func newLimitFixture(t *testing.T, cfg Config) *limitFixture {
	t.Helper()
	cfg.Logger = testLogger(t)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	engine := NewMemoryEngineBudget(cfg.HistorySize, cfg.HistoryAge, cfg.HistoryMemory)
	h := newHub(engine, cfg.QueueSize, max(cfg.MaxReplay, 0), cfg.Logger)
	h.retry, h.connectRate = cfg.Retry, cfg.ConnectRate
	engine.watch(h.watched) // as Server wires them
	m := newMetrics(h, engine)
	var auth *authenticator
	if cfg.JWTKey != "" {
		_, secret := testAuthenticator(t)
		auth = newAuthenticatorWithKey(secret, "HS256", &cfg)
	}
	f := &limitFixture{
		engine: engine, hub: h, metrics: m, closed: make(chan struct{}, 64), clock: newFakeClock(t0, 0),
		client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
	}
	f.handler = newSSEHandler(&cfg, h, auth, m)
	f.handler.limits.now = f.clock.Now
	if f.handler.limits.ipRate != nil {
		f.handler.limits.ipRate.now = f.clock.Now
	}
	f.srv = httptest.NewUnstartedServer(f.handler)
	// A closed connection is seen where it closes, whoever closes it:
	// net/http, or the handler that took it over (HTTP/1.1 streams).
	f.srv.Listener = &closeSignalListener{Listener: f.srv.Listener, closed: f.closed}
	f.srv.Start()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	var wg sync.WaitGroup
	wg.Go(func() { _ = engine.Run(ctx, h.deliver) })
	t.Cleanup(func() {
		h.close()
		f.srv.Close()
		f.handler.wait(context.Background(), h.cutWrites) // the streams on taken-over connections
		cancel()
		wg.Wait()
		h.lib.Close()
	})
	return f
}

// rejected returns how many connects were refused for reason.
func (f *limitFixture) rejected(reason string) float64 {
	var m dto.Metric
	if err := f.metrics.rejections.WithLabelValues(reason).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// closeSignalListener sends on closed when one of its connections is closed
// (the first Close of each).
type closeSignalListener struct {
	net.Listener
	closed chan<- struct{}
}

func (l *closeSignalListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &closeSignalConn{Conn: c, closed: l.closed}, nil
}

type closeSignalConn struct {
	net.Conn
	once   sync.Once
	closed chan<- struct{}
}

func (c *closeSignalConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.closed <- struct{}{} })
	return err
}

// waitClosed waits until the server closed n more HTTP connections.
func (f *limitFixture) waitClosed(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-f.closed:
		case <-time.After(hubWaitLimit):
			t.Fatalf("a connection was not closed within %v", hubWaitLimit)
		}
	}
}

func (f *limitFixture) publish(t *testing.T, stream, data string) uint64 {
	t.Helper()
	id, err := f.engine.Publish(t.Context(), &Event{Stream: stream, Data: []byte(data)})
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return id
}

// block is one dispatch unit of an event stream as it went over the wire:
// the lines up to a blank line, by field. retry is -1 when absent.
type block struct {
	retry    int64
	comments []string
	id, data string
	event    string
	hasData  bool
	hasID    bool
}

// stream is a raw subscription: the response and its body read block by
// block (a spec parser would hide the retry: fields, which are the point).
type stream struct {
	resp   *http.Response
	blocks chan block
	cancel context.CancelFunc
}

// open requests /events?query with header h and reads its blocks until the
// body ends. The caller checks the status.
func (f *limitFixture) open(t *testing.T, query string, h http.Header) *stream {
	t.Helper()
	return openWith(t, f.client, f.srv.URL, query, h)
}

// openWith is open on any server, with client.
func openWith(t *testing.T, client *http.Client, baseURL, query string, h http.Header) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/events?"+query, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := client.Do(req) //nolint:bodyclose // closed at cleanup
	if err != nil {
		cancel()
		t.Fatalf("GET /events?%s: %v", query, err)
	}
	s := &stream{resp: resp, blocks: make(chan block, 1024), cancel: cancel}
	if resp.StatusCode == http.StatusOK {
		go readBlocks(resp.Body, s.blocks) // ends with the body
	} else {
		close(s.blocks) // the body is an error message, the test's to read
	}
	t.Cleanup(s.close)
	return s
}

func (s *stream) close() {
	s.cancel()
	_ = s.resp.Body.Close()
}

// readBlocks sends every block of r, then closes out when r ends. An
// incomplete block at the end is dropped, as a browser drops it.
func readBlocks(r io.Reader, out chan<- block) {
	defer close(out)
	br := bufio.NewReader(r)
	b := block{retry: -1}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			out <- b
			b = block{retry: -1}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			b.comments = append(b.comments, value)
		case "retry":
			if n, err := strconv.ParseInt(value, 10, 64); err == nil {
				b.retry = n
			}
		case "id":
			b.id, b.hasID = value, true
		case "event":
			b.event = value
		case "data":
			b.data, b.hasData = value, true
		}
	}
}

// next returns the next block; ok is false when the stream ended.
func (s *stream) next(t *testing.T) (b block, ok bool) {
	t.Helper()
	select {
	case b, ok = <-s.blocks:
		return b, ok
	case <-time.After(hubWaitLimit):
		t.Fatalf("no block within %v", hubWaitLimit)
	}
	return block{}, false
}

// rest reads the stream to its end.
func (s *stream) rest(t *testing.T) []block {
	t.Helper()
	var out []block
	for {
		b, ok := s.next(t)
		if !ok {
			return out
		}
		out = append(out, b)
	}
}

// accepted checks s is a 200 event stream whose first block is a lone
// retry: in [lo, hi] milliseconds.
func accepted(t *testing.T, s *stream, lo, hi int64) {
	t.Helper()
	if s.resp.StatusCode != http.StatusOK || s.resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d %q, want 200 text/event-stream", s.resp.StatusCode, s.resp.Header.Get("Content-Type"))
	}
	b, ok := s.next(t)
	if !ok || b.retry < lo || b.retry > hi || b.hasData || b.hasID || len(b.comments) > 0 {
		t.Fatalf("first block %+v (ok %v), want a lone retry: from %d to %d ms", b, ok, lo, hi)
	}
}

// checkShed checks s is a shed answer: 200 event stream, one block with a
// retry: of 5 to 30 s and a comment naming reason, then the end; no frame.
func checkShed(t *testing.T, s *stream, reason string) {
	t.Helper()
	if s.resp.StatusCode != http.StatusOK || s.resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d %q, want 200 text/event-stream", s.resp.StatusCode, s.resp.Header.Get("Content-Type"))
	}
	got := s.rest(t)
	if len(got) != 1 || got[0].retry < shedRetryLow.Milliseconds() || got[0].retry > shedRetryHigh.Milliseconds() ||
		got[0].hasData || got[0].hasID || len(got[0].comments) != 1 || got[0].comments[0] != reason {
		t.Fatalf("shed stream %+v, want one block: retry: from 5000 to 30000 ms, comment %q, no frame; then the end", got, reason)
	}
}

// outcome of one connect in a limit table.
type outcome int

const (
	accept outcome = iota
	shedIt
)

func TestLimitMaxConnections(t *testing.T) {
	t.Parallel()
	f := newLimitFixture(t, Config{MaxConnections: 2, Retry: time.Second})
	a := f.open(t, "stream=orders", nil)
	accepted(t, a, 1000, 2000)
	b := f.open(t, "stream=orders", nil)
	accepted(t, b, 1000, 2000)
	c := f.open(t, "stream=orders", nil)
	checkShed(t, c, rejectMaxConns)
	if got := f.rejected(rejectMaxConns); got != 1 {
		t.Errorf("rejections{max_connections} = %v, want 1", got)
	}

	// The accepted ones get events; the slots stay held while they stay.
	id := f.publish(t, "orders", `"one"`)
	for _, s := range []*stream{a, b} {
		if got, _ := s.next(t); got.id != strconv.FormatUint(id, 10) || got.data != `"one"` {
			t.Fatalf("frame %+v, want id %d", got, id)
		}
	}
	if n := f.handler.limits.openConns(); n != 2 {
		t.Fatalf("open slots = %d, want 2", n)
	}

	// One leaves: its slot is free once its handler returned.
	a.close()
	f.waitClosed(t, 2) // a's, and the shed one's
	if n := f.handler.limits.openConns(); n != 1 {
		t.Fatalf("open slots after a client left = %d, want 1", n)
	}
	d := f.open(t, "stream=orders", nil)
	accepted(t, d, 1000, 2000)
	e := f.open(t, "stream=orders", nil)
	checkShed(t, e, rejectMaxConns)
	if got := f.rejected(rejectMaxConns); got != 2 {
		t.Errorf("rejections{max_connections} = %v, want 2", got)
	}
}

// TestLimitNoLeakedSlot: whatever way a request that took places ends, it
// gives them back: every node, address and subject count is zero after.
func TestLimitNoLeakedSlot(t *testing.T) {
	t.Parallel()
	_, secret := testAuthenticator(t)
	token := func(sub string, streams ...string) http.Header {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": sub, "exp": time.Now().Add(time.Hour).Unix(), "bridge": map[string]any{"subscribe": streams},
		}).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return http.Header{"Authorization": {"Bearer " + tok}}
	}
	for _, tc := range []struct {
		name   string
		query  string
		header http.Header
		hold   http.Header // a connection held during the request, when set
		status int
		reason string // of a shed
		closed bool   // the hub is closed first
	}{
		{name: "401 no token", query: "stream=orders", status: http.StatusUnauthorized},
		{name: "401 bad token", query: "stream=orders", header: http.Header{"Authorization": {"Bearer x.y.z"}}, status: http.StatusUnauthorized},
		{name: "403 not granted", query: "stream=orders", header: token("alice", "users"), status: http.StatusForbidden},
		{name: "shed per subject", query: "stream=orders", header: token("alice", "orders"), hold: token("alice", "orders"), status: http.StatusOK, reason: rejectMaxConnsPerSubject},
		{name: "shed per address", query: "stream=orders", header: token("bob", "orders"), hold: token("carol", "orders"), status: http.StatusOK, reason: rejectMaxConnsPerIP},
		{name: "shed draining", query: "stream=orders", header: token("alice", "orders"), status: http.StatusOK, reason: rejectDraining, closed: true},
		{name: "served, then the client leaves", query: "stream=orders", header: token("alice", "orders"), status: http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			perIP := 5
			if tc.reason == rejectMaxConnsPerIP {
				perIP = 1
			}
			f := newLimitFixture(t, Config{JWTKey: "unused", MaxConnections: 10, MaxConnectionsPerIP: perIP, MaxConnectionsPerSubject: 1})
			closes := 0
			if tc.hold != nil {
				held := f.open(t, "stream=orders", tc.hold)
				accepted(t, held, 1, 1<<40)
				defer func() {
					held.close()
					f.waitClosed(t, 1)
				}()
			}
			if tc.closed {
				f.hub.close()
			}
			s := f.open(t, tc.query, tc.header)
			if s.resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", s.resp.StatusCode, tc.status)
			}
			switch {
			case tc.reason != "":
				checkShed(t, s, tc.reason)
			case tc.status == http.StatusOK:
				accepted(t, s, 1, 1<<40)
				s.close()
			default:
				for _, b := range s.rest(t) {
					if b.hasData || b.hasID {
						t.Errorf("refusal carries a frame: %+v", b)
					}
				}
			}
			s.close()
			closes++
			f.waitClosed(t, closes)
			want := int64(0)
			if tc.hold != nil {
				want = 1
			}
			l := f.handler.limits
			if n := l.openConns(); n != want {
				t.Errorf("node slots after %s = %d, want %d", tc.name, n, want)
			}
			if n := l.perIP.size(); n != int(want) {
				t.Errorf("address keys after %s = %d, want %d", tc.name, n, want)
			}
			if n := l.perSubject.size(); n != int(want) {
				t.Errorf("subject keys after %s = %d, want %d", tc.name, n, want)
			}
		})
	}
}

func TestLimitPerAddress(t *testing.T) {
	t.Parallel()
	type connect struct {
		xff  string // X-Forwarded-For, none when empty
		want outcome
	}
	for _, tc := range []struct {
		name     string
		trusted  []string
		connects []connect
	}{
		{
			name: "without trusted proxies the header is ignored",
			connects: []connect{
				{xff: "203.0.113.1", want: accept},
				{xff: "203.0.113.2", want: shedIt}, // both are 127.0.0.1
				{want: shedIt},
			},
		},
		{
			name:    "behind a trusted proxy each client counts",
			trusted: []string{"127.0.0.0/8"},
			connects: []connect{
				{xff: "203.0.113.1", want: accept},
				{xff: "203.0.113.2", want: accept},
				{xff: "203.0.113.1", want: shedIt},
				{xff: "198.51.100.7, 203.0.113.2", want: shedIt}, // a made-up left part changes nothing
				{xff: "203.0.113.3, 127.0.0.9", want: accept},    // rightmost address that is no proxy
				{want: accept}, // no header: the proxy itself
			},
		},
		{
			name:    "an untrusted peer's header is ignored",
			trusted: []string{"10.0.0.0/8"},
			connects: []connect{
				{xff: "203.0.113.1", want: accept},
				{xff: "203.0.113.2", want: shedIt},
			},
		},
		{
			name:    "IPv6 counts by /64",
			trusted: []string{"127.0.0.1"},
			connects: []connect{
				{xff: "2001:db8:1:2::1", want: accept},
				{xff: "2001:db8:1:2:ffff::9", want: shedIt}, // same /64
				{xff: "[2001:db8:1:3::1]:4711", want: accept},
				{xff: "::ffff:203.0.113.1", want: accept}, // IPv4 in IPv6 is IPv4
				{xff: "203.0.113.1", want: shedIt},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newLimitFixture(t, Config{MaxConnectionsPerIP: 1, TrustedProxies: tc.trusted})
			sheds := 0.0
			for i, c := range tc.connects {
				h := http.Header{}
				if c.xff != "" {
					h.Set("X-Forwarded-For", c.xff)
				}
				s := f.open(t, "stream=orders", h)
				if c.want == accept {
					accepted(t, s, 1, 1<<40)
					continue
				}
				checkShed(t, s, rejectMaxConnsPerIP)
				sheds++
				if got := f.rejected(rejectMaxConnsPerIP); got != sheds {
					t.Errorf("connect %d: rejections{max_connections_per_ip} = %v, want %v", i, got, sheds)
				}
			}
		})
	}
}

func TestLimitPerSubject(t *testing.T) {
	t.Parallel()
	_, secret := testAuthenticator(t)
	f := newLimitFixture(t, Config{JWTKey: "unused", MaxConnectionsPerSubject: 2, PublicStreams: []string{"public"}})
	bearer := func(claims jwt.MapClaims) http.Header {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
		claims["bridge"] = map[string]any{"subscribe": []string{"orders"}}
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return http.Header{"Authorization": {"Bearer " + tok}}
	}
	alice, bob := bearer(jwt.MapClaims{"sub": "alice"}), bearer(jwt.MapClaims{"sub": "bob"})
	noSub := bearer(jwt.MapClaims{})
	for _, c := range []struct {
		query  string
		header http.Header
		want   outcome
	}{
		{"stream=orders", alice, accept},
		{"stream=orders", alice, accept},
		{"stream=orders", alice, shedIt},
		{"stream=orders", bob, accept},
		{"stream=public", nil, accept}, // no token, no subject
		{"stream=public", nil, accept},
		{"stream=public", nil, accept},
		{"stream=orders", noSub, accept}, // a token without sub is not limited by subject
		{"stream=orders", noSub, accept},
		{"stream=orders", noSub, accept},
		{"stream=orders", bob, accept},
		{"stream=orders", bob, shedIt},
	} {
		s := f.open(t, c.query, c.header)
		if c.want == accept {
			accepted(t, s, 1, 1<<40)
			continue
		}
		checkShed(t, s, rejectMaxConnsPerSubject)
	}
	if got := f.rejected(rejectMaxConnsPerSubject); got != 2 {
		t.Errorf("rejections{max_connections_per_subject} = %v, want 2", got)
	}
}

// TestLimitConnectRate uses the fixture's clock, which moves only when the
// test says: the counts do not depend on how fast the machine is.
func TestLimitConnectRate(t *testing.T) {
	t.Parallel()
	t.Run("node", func(t *testing.T) {
		t.Parallel()
		f := newLimitFixture(t, Config{ConnectRate: 1})
		accepted(t, f.open(t, "stream=orders", nil), 1, 1<<40)
		checkShed(t, f.open(t, "stream=orders", nil), rejectConnectRate)
		checkShed(t, f.open(t, "stream=orders", nil), rejectConnectRate)
		f.clock.Add(time.Second)
		accepted(t, f.open(t, "stream=orders", nil), 1, 1<<40)
		checkShed(t, f.open(t, "stream=orders", nil), rejectConnectRate)
		if got := f.rejected(rejectConnectRate); got != 3 {
			t.Errorf("rejections{connect_rate} = %v, want 3", got)
		}
		if n := f.handler.limits.openConns(); n != 2 {
			t.Errorf("open slots = %d, want 2: a shed connect holds none", n)
		}
	})
	t.Run("per address", func(t *testing.T) {
		t.Parallel()
		f := newLimitFixture(t, Config{ConnectRatePerIP: 1, TrustedProxies: []string{"127.0.0.1"}})
		from := func(a string) http.Header { return http.Header{"X-Forwarded-For": {a}} }
		accepted(t, f.open(t, "stream=orders", from("203.0.113.1")), 1, 1<<40)
		accepted(t, f.open(t, "stream=orders", from("203.0.113.2")), 1, 1<<40)
		checkShed(t, f.open(t, "stream=orders", from("203.0.113.1")), rejectConnectRatePerIP)
		accepted(t, f.open(t, "stream=orders", from("2001:db8::1")), 1, 1<<40)
		checkShed(t, f.open(t, "stream=orders", from("2001:db8::2")), rejectConnectRatePerIP) // same /64
		f.clock.Add(time.Second)
		accepted(t, f.open(t, "stream=orders", from("203.0.113.1")), 1, 1<<40)
		if got := f.rejected(rejectConnectRatePerIP); got != 2 {
			t.Errorf("rejections{connect_rate_per_ip} = %v, want 2", got)
		}
		if got := f.rejected(rejectConnectRate); got != 0 {
			t.Errorf("rejections{connect_rate} = %v, want 0: the node rate (1000/s) is far", got)
		}
	})
}

func TestLimitBadRequests(t *testing.T) {
	t.Parallel()
	f := newLimitFixture(t, Config{MaxStreamsPerConnection: 2, MaxStreamName: 10})
	for _, tc := range []struct {
		name, query string
		status      int
		body        string
		reason      string
	}{
		{name: "two streams", query: "stream=a&stream=b", status: http.StatusOK},
		{name: "duplicates count once", query: "stream=a&stream=b&stream=a&stream=b", status: http.StatusOK},
		{name: "three streams", query: "stream=a&stream=b&stream=c", status: http.StatusBadRequest, body: "at most 2 (--max-streams-per-connection)", reason: rejectTooManyStreams},
		{name: "name at the limit", query: "stream=" + strings.Repeat("n", 10), status: http.StatusOK},
		{name: "name over the limit", query: "stream=" + strings.Repeat("n", 11), status: http.StatusBadRequest, body: "the limit is 10 (--max-stream-name)", reason: rejectStreamNameTooLong},
		{name: "invalid name", query: "stream=a..b", status: http.StatusBadRequest, body: "invalid", reason: rejectBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := f.open(t, tc.query, nil)
			if s.resp.StatusCode != tc.status {
				t.Fatalf("GET ?%s = %d, want %d", tc.query, s.resp.StatusCode, tc.status)
			}
			if tc.status == http.StatusOK {
				accepted(t, s, 1, 1<<40)
				return
			}
			body, _ := io.ReadAll(s.resp.Body)
			if !strings.Contains(string(body), tc.body) {
				t.Errorf("GET ?%s body %q, want it to say %q", tc.query, body, tc.body)
			}
			if got := f.rejected(tc.reason); got < 1 {
				t.Errorf("rejections{%s} = %v, want at least 1", tc.reason, got)
			}
		})
	}
}

func TestLimitDrainingIsShed(t *testing.T) {
	t.Parallel()
	f := newLimitFixture(t, Config{})
	f.hub.close()
	checkShed(t, f.open(t, "stream=orders", nil), rejectDraining)
	if got := f.rejected(rejectDraining); got != 1 {
		t.Errorf("rejections{draining} = %v, want 1", got)
	}
}

// TestRetryBeforeShutdownClose: a shutdown sends every open connection a
// retry: in its spread window, after the frames already queued, then ends
// the stream.
func TestRetryBeforeShutdownClose(t *testing.T) {
	t.Parallel()
	// Before its first event a connection dozes (doze.go); after it, the
	// library writes to it: both end the same way.
	for _, event := range []bool{false, true} {
		t.Run(map[bool]string{false: "dozing", true: "after an event"}[event], func(t *testing.T) {
			t.Parallel()
			f := newLimitFixture(t, Config{Retry: time.Second})
			s := f.open(t, "stream=orders", nil)
			accepted(t, s, 1000, 2000)
			if event {
				id := f.publish(t, "orders", `"last"`)
				if b, _ := s.next(t); b.id != strconv.FormatUint(id, 10) {
					t.Fatalf("frame %+v, want id %d", b, id)
				}
			}
			f.hub.close()
			lo, hi := shutdownRetry(time.Second, 1, defaultConnectRate)
			got := s.rest(t)
			if len(got) != 1 || got[0].retry < lo.Milliseconds() || got[0].retry > hi.Milliseconds() || got[0].hasData || got[0].hasID {
				t.Fatalf("after shutdown: %+v, want one lone retry: from %v to %v, then the end", got, lo, hi)
			}
		})
	}
}

// TestRetryBeforeTokenExpiryClose: the close before a token expires sends a
// short retry:, so the reconnect comes soon with the refreshed token.
func TestRetryBeforeTokenExpiryClose(t *testing.T) {
	t.Parallel()
	f := newLimitFixture(t, Config{Retry: time.Second})
	s := f.open(t, "stream=orders", nil)
	accepted(t, s, 1000, 2000)
	var c *conn
	f.hub.mu.RLock()
	for _, x := range f.hub.conns {
		c = x
	}
	f.hub.mu.RUnlock()
	f.hub.closeWithRetry(c, evictTokenExpiry, jitter(tokenRetryFrom, tokenRetryTo))
	got := s.rest(t)
	if len(got) != 1 || got[0].retry < tokenRetryFrom.Milliseconds() || got[0].retry > tokenRetryTo.Milliseconds() {
		t.Fatalf("after the token-expiry close: %+v, want one retry: from %v to %v, then the end", got, tokenRetryFrom, tokenRetryTo)
	}
	if n := f.hub.evictionCount(evictTokenExpiry); n != 1 {
		t.Errorf("token_expiry closes = %d, want 1", n)
	}
}

func TestShutdownRetryWindow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		retry  time.Duration
		n      int
		rate   float64
		lo, hi time.Duration
	}{
		{retry: 2 * time.Second, n: 1, rate: 1000, lo: 2 * time.Second, hi: 4 * time.Second},
		{retry: 2 * time.Second, n: 10_000, rate: 1000, lo: 2 * time.Second, hi: 22 * time.Second},
		{retry: 2 * time.Second, n: 1_000_000, rate: 1000, lo: 2 * time.Second, hi: 32 * time.Second},
		{retry: 2 * time.Second, n: 10_000, rate: -1, lo: 2 * time.Second, hi: 22 * time.Second},
		{retry: 0, n: 10, rate: 1000, lo: 0, hi: 0},
	} {
		if lo, hi := shutdownRetry(tc.retry, tc.n, tc.rate); lo != tc.lo || hi != tc.hi {
			t.Errorf("shutdownRetry(%v, %d, %v) = %v, %v; want %v, %v", tc.retry, tc.n, tc.rate, lo, hi, tc.lo, tc.hi)
		}
	}
}

// TestRateTableExpiresAndCaps drives the per-address connect rate table
// with its own clock.
func TestRateTableExpiresAndCaps(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(t0, 0)
	tab := newRateTable(2, 3, clock.Now) // 2/s, burst 2: an entry idles out after 1 s
	key := func(s string) netip.Prefix { return addrKey(netip.MustParseAddr(s)) }
	a, b, c, d := key("192.0.2.1"), key("192.0.2.2"), key("192.0.2.3"), key("192.0.2.4")

	for i, want := range []bool{true, true, false} {
		if got := tab.allow(a, clock.Now()); got != want {
			t.Fatalf("connect %d of a = %v, want %v", i, got, want)
		}
	}
	clock.Add(500 * time.Millisecond)
	if !tab.allow(a, clock.Now()) || tab.allow(a, clock.Now()) {
		t.Fatalf("a after half a second: want one token back")
	}
	tab.allow(b, clock.Now())
	tab.allow(c, clock.Now())
	if n := tab.size(); n != 3 {
		t.Fatalf("size = %d, want 3", n)
	}
	// Full: a newcomer evicts the least recently used entry (a, whose bucket
	// was empty), never is refused.
	if !tab.allow(d, clock.Now()) {
		t.Fatalf("newcomer d refused by a full table")
	}
	if n := tab.size(); n != 3 {
		t.Fatalf("size = %d, want the cap 3", n)
	}
	if _, ok := tab.entries[a]; ok {
		t.Fatalf("a still held, want it evicted as the least recently used")
	}
	// Idle for the refill time: every entry is forgotten.
	clock.Add(time.Second)
	tab.allow(a, clock.Now())
	if n := tab.size(); n != 1 {
		t.Fatalf("size after everyone idled out = %d, want 1 (a, just now)", n)
	}
}

func TestConnCounter(t *testing.T) {
	t.Parallel()
	c := newConnCounter[string](2)
	for i, want := range []bool{true, true, false} {
		if got := c.acquire("x"); got != want {
			t.Fatalf("acquire %d of x = %v, want %v: two places", i, got, want)
		}
	}
	c.release("x")
	if !c.acquire("x") {
		t.Fatalf("acquire after a release refused")
	}
	c.release("x")
	c.release("x")
	if n := c.size(); n != 0 {
		t.Fatalf("size after every release = %d, want 0: no idle entries", n)
	}
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	trust, err := parseTrustedProxies([]string{"10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.10"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		trust  proxyTrust
		remote string
		xff    []string
		want   string
	}{
		{name: "no proxies: peer", remote: "203.0.113.5:4000", xff: []string{"198.51.100.1"}, want: "203.0.113.5"},
		{name: "untrusted peer", trust: trust, remote: "203.0.113.5:4000", xff: []string{"198.51.100.1"}, want: "203.0.113.5"},
		{name: "trusted peer, no header", trust: trust, remote: "10.1.2.3:4000", want: "10.1.2.3"},
		{name: "trusted peer", trust: trust, remote: "10.1.2.3:4000", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "rightmost untrusted", trust: trust, remote: "10.1.2.3:4000", xff: []string{"1.1.1.1, 198.51.100.1, 10.9.9.9"}, want: "198.51.100.1"},
		{name: "several header lines are one list", trust: trust, remote: "10.1.2.3:4000", xff: []string{"1.1.1.1", "198.51.100.1, 192.0.2.10"}, want: "198.51.100.1"},
		{name: "all trusted: leftmost", trust: trust, remote: "10.1.2.3:4000", xff: []string{"10.0.0.1, 10.0.0.2"}, want: "10.0.0.1"},
		{name: "garbage: the hop that wrote it", trust: trust, remote: "10.1.2.3:4000", xff: []string{"1.1.1.1, unknown, 10.0.0.7"}, want: "10.0.0.7"},
		{name: "ports and brackets", trust: trust, remote: "10.1.2.3:4000", xff: []string{"[2001:db8::5]:443"}, want: "2001:db8::5"},
		{name: "v4 with port", trust: trust, remote: "10.1.2.3:4000", xff: []string{"198.51.100.1:443"}, want: "198.51.100.1"},
		{name: "mapped", trust: trust, remote: "[::ffff:10.1.2.3]:4000", xff: []string{"::ffff:198.51.100.1"}, want: "198.51.100.1"},
		{name: "v6 proxy", trust: trust, remote: "[2001:db8:ffff:1::1]:4000", xff: []string{"2001:db8:1::9"}, want: "2001:db8:1::9"},
		{name: "empty items", trust: trust, remote: "10.1.2.3:4000", xff: []string{" , 198.51.100.1 ,, "}, want: "198.51.100.1"},
		{name: "no IP peer", trust: trust, remote: "@", xff: []string{"198.51.100.1"}, want: "invalid IP"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/events", nil)
		r.RemoteAddr = tc.remote
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := tc.trust.clientIP(r).String(); got != tc.want {
			t.Errorf("%s: clientIP = %s, want %s", tc.name, got, tc.want)
		}
	}
	if _, err := parseTrustedProxies([]string{"10.0.0.0/33"}); err == nil {
		t.Errorf("parseTrustedProxies(10.0.0.0/33) = nil error, want one")
	}
}

func TestAddrKeyGroupsIPv6By64(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ a, b string }{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff"},
		{"fe80::1%eth0", "fe80::2%eth1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
	} {
		if ka, kb := addrKey(netip.MustParseAddr(tc.a).Unmap()), addrKey(netip.MustParseAddr(tc.b).Unmap()); ka != kb {
			t.Errorf("addrKey(%s) = %v, addrKey(%s) = %v; want one key", tc.a, ka, tc.b, kb)
		}
	}
	for _, tc := range []struct{ a, b string }{
		{"2001:db8:1:2::1", "2001:db8:1:3::1"},
		{"192.0.2.1", "192.0.2.2"},
	} {
		if addrKey(netip.MustParseAddr(tc.a)) == addrKey(netip.MustParseAddr(tc.b)) {
			t.Errorf("addrKey(%s) == addrKey(%s); want different keys", tc.a, tc.b)
		}
	}
}

func TestLimitConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "stream name too long a limit", cfg: Config{MaxStreamName: 2000}, want: "max stream name"},
		{name: "negative stream name limit", cfg: Config{MaxStreamName: -1}, want: "max stream name"},
		{name: "negative header bytes", cfg: Config{MaxHeaderBytes: -1}, want: "max header bytes"},
		{name: "negative retry", cfg: Config{Retry: -time.Second}, want: "retry"},
		{name: "per subject without auth", cfg: Config{MaxConnectionsPerSubject: 3}, want: "subscriber auth is off"},
		{name: "bad proxy", cfg: Config{TrustedProxies: []string{"proxy.example"}}, want: "trusted proxy"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want an error about %q", tc.name, err, tc.want)
		}
	}
	var cfg Config
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.MaxConnections != 10_000 || cfg.ConnectRate != 1000 || cfg.MaxStreamsPerConnection != 32 || cfg.MaxStreamName != 128 ||
		cfg.MaxReplay != 1000 || cfg.MaxHeaderBytes != 32<<10 || cfg.ReadHeaderTimeout != 10*time.Second || cfg.Retry != 2*time.Second ||
		cfg.MaxConnectionsPerIP != 0 || cfg.MaxConnectionsPerSubject != 0 || cfg.ConnectRatePerIP != 0 {
		t.Errorf("limit defaults = %+v", cfg)
	}
	off := Config{MaxConnections: -1, ConnectRate: -1, MaxReplay: -1, MaxStreamsPerConnection: -1}
	if err := off.Validate(); err != nil {
		t.Errorf("limits turned off: Validate() = %v", err)
	}
	if a := newAdmission(&off); a.maxConns != 0 || a.rate != nil {
		t.Errorf("admission of limits turned off = %+v, want none", a)
	}
}
