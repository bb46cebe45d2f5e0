package load

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// readBufSize is a subscriber's first parser buffer; it grows for
	// longer lines, up to maxLine.
	readBufSize = 4 << 10
	maxLine     = 4 << 20
	// handshakeTimeout bounds dialling and reading the response header.
	handshakeTimeout = 10 * time.Second
	// resetEvent is the bridge's frame for a gap history cannot fill.
	resetEvent = "bridge.reset"
)

// subscriber is one SSE client. Its goroutine (run) owns every field but
// the counters, which the runner reads while it runs.
type subscriber struct {
	r       *runner
	idx     int
	stream  int
	stalled bool
	src     netip.Addr

	received bitset   // sequence numbers received, read once run returned
	ids      []uint64 // by sequence number, the id received with it (Config.CheckIDs)
	lastID   uint64   // the id of the last event, for order checks
	fenced   bool
	comments int64 // comment lines, set when run returns

	frames     atomic.Int64 // load events received, duplicates included
	dups       atomic.Int64
	reordered  atomic.Int64
	resets     atomic.Int64
	foreign    atomic.Int64 // frames that are not load events nor resets
	ended      atomic.Int64 // streams the server ended (evictions)
	reconnects atomic.Int64
	dialErrors atomic.Int64
}

// sseConn is one open HTTP response of an SSE stream.
type sseConn struct {
	conn net.Conn
	resp *http.Response
	stop func() bool // unregisters the close-on-cancel hook
}

// close ends the connection. The socket goes first: closing the body of a
// response read with http.ReadResponse would otherwise read it to its end.
func (c *sseConn) close() {
	c.stop()
	_ = c.conn.Close()
	_ = c.resp.Body.Close()
}

// connect opens the subscriber's stream, with a Last-Event-ID header when
// lastID is not empty. dialCtx bounds the attempt; the connection is closed
// when life ends, which unblocks its reader.
func (s *subscriber) connect(dialCtx, life context.Context, lastID []byte) (*sseConn, error) {
	control := bindNoPort
	if s.stalled {
		control = stalledSocket(s.r.cfg.StalledRecvBuffer)
	}
	target := s.r.eventsPath + "?stream=" + url.QueryEscape(s.r.streams[s.stream])
	return dialStream(dialCtx, life, s.r.host, target, s.src, control, lastID)
}

// dialStream opens an SSE stream: GET target (a path and query) on host,
// from a socket bound to src and set up by control, with a Last-Event-ID
// header when lastID is not empty. dialCtx bounds the attempt; the
// connection is closed when life ends, which unblocks its reader.
func dialStream(dialCtx, life context.Context, host, target string, src netip.Addr,
	control func(network, address string, c syscall.RawConn) error, lastID []byte,
) (*sseConn, error) {
	d := net.Dialer{
		Timeout:   handshakeTimeout,
		LocalAddr: &net.TCPAddr{IP: src.AsSlice()},
		Control:   control,
	}
	nc, err := d.DialContext(dialCtx, "tcp", host)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(handshakeTimeout))
	var req bytes.Buffer
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n", target, host)
	if len(lastID) > 0 {
		fmt.Fprintf(&req, "Last-Event-ID: %s\r\n", lastID)
	}
	req.WriteString("\r\n")
	if _, err := nc.Write(req.Bytes()); err != nil {
		_ = nc.Close()
		return nil, err
	}
	// A small buffer: the parser reads large chunks past it, and idle
	// connections are counted in tens of thousands.
	resp, err := http.ReadResponse(bufio.NewReaderSize(nc, 512), &http.Request{Method: http.MethodGet}) //nolint:bodyclose // sseConn.close closes it, after the socket
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("read response header: %w", err)
	}
	c := &sseConn{conn: nc, resp: resp, stop: context.AfterFunc(life, func() { _ = nc.Close() })}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		c.close()
		return nil, fmt.Errorf("GET %s: %s: %s", target, resp.Status, bytes.TrimSpace(b))
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

// run reads the subscriber's stream until life ends. A stream the server
// ends is counted as an eviction and reopened with the Last-Event-ID of the
// last event received, as a browser does.
func (s *subscriber) run(life context.Context, c *sseConn) {
	if s.stalled && s.r.cfg.StallForever {
		<-life.Done() // never reads: the server's buffers for it fill
		c.close()
		return
	}
	p := NewParser(c.resp.Body, readBufSize, maxLine)
	defer func() { s.comments = p.Comments }()
	for {
		if s.stalled {
			select { // a stalled client does not read until it is told
			case <-s.r.stallEnd:
			case <-life.Done():
			}
		}
		s.consume(p)
		c.close()
		if life.Err() != nil {
			return
		}
		s.ended.Add(1)
		if c = s.reconnect(life, p.LastEventID()); c == nil {
			return
		}
		s.reconnects.Add(1)
		p.Reset(c.resp.Body)
	}
}

// reconnect opens the stream again, after the configured delay, retrying
// with a growing pause until life ends (then it returns nil).
func (s *subscriber) reconnect(life context.Context, lastID []byte) *sseConn {
	delay := s.r.cfg.ReconnectDelay
	for {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-life.Done():
				t.Stop()
				return nil
			}
		}
		c, err := s.connect(life, life, lastID)
		if err == nil {
			return c
		}
		if life.Err() != nil {
			return nil
		}
		s.dialErrors.Add(1)
		s.r.log.Debug("reconnect failed", "subscriber", s.idx, "err", err)
		delay = min(max(2*delay, 10*time.Millisecond), time.Second)
	}
}

// consume handles events until the stream ends.
func (s *subscriber) consume(p *Parser) {
	r := s.r
	for {
		ev, err := p.Next()
		if err != nil {
			return
		}
		if string(ev.Type) == resetEvent {
			s.resets.Add(1)
			continue
		}
		seq, t, ok := parsePayload(ev.Data)
		if !ok {
			s.foreign.Add(1)
			continue
		}
		now := time.Now().UnixNano()
		if seq == fenceSeq {
			if !s.fenced {
				s.fenced = true
				r.fenceReceived()
			}
			continue
		}
		s.frames.Add(1)
		if !s.received.add(seq) {
			s.dups.Add(1)
			continue
		}
		id, idOK := parseID(ev.ID)
		if r.cfg.CheckIDs {
			setID(&s.ids, seq, id) // 0 when absent: a mismatch
		}
		if idOK {
			if id <= s.lastID {
				s.reordered.Add(1)
			}
			s.lastID = id
		}
		if !s.stalled && t >= r.measureFrom.Load() {
			r.latency[s.idx%latencyShards].Record(time.Duration(now - t))
		}
	}
}
