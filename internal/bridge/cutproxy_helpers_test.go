package bridge_test

import (
	"io"
	"net"
	"sync"
	"testing"
)

// cutProxy forwards TCP connections to a target address, and drops them on
// demand as a network failure would: cut closes every connection it carries
// and holds new ones, unforwarded, until restore. Put between a browser and
// the bridge, it breaks the browser's connection while the bridge keeps
// running, so the browser's own reconnect (with Last-Event-ID) is what the
// test sees.
type cutProxy struct {
	lis    net.Listener
	target string
	done   chan struct{} // closed by close
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // both ends of every connection in flight
	open   chan struct{}         // closed while connections go through; a new one while cut
	closed bool
}

// startCutProxy listens on loopback and forwards to target until the test
// ends.
func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	p := &cutProxy{
		lis:    lis,
		target: target,
		done:   make(chan struct{}),
		conns:  make(map[net.Conn]struct{}),
		open:   make(chan struct{}),
	}
	close(p.open)
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

// url is the proxy's address as an http:// URL.
func (p *cutProxy) url() string { return "http://" + p.lis.Addr().String() }

// cut closes every connection and holds new ones until restore.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
		p.open = make(chan struct{})
	default: // cut already
	}
	for c := range p.conns {
		_ = c.Close()
	}
}

// restore lets the held connections and new ones through.
func (p *cutProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
	default:
		close(p.open)
	}
}

// close stops the proxy and waits for its goroutines.
func (p *cutProxy) close() {
	_ = p.lis.Close()
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.done)
		for c := range p.conns {
			_ = c.Close()
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// accept ends when the listener is closed.
func (p *cutProxy) accept() {
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Go(func() { p.forward(c) })
	}
}

// forward waits until the proxy is open, then copies both ways until either
// side ends or the proxy cuts or closes.
func (p *cutProxy) forward(c net.Conn) {
	defer p.untrack(c)
	p.mu.Lock()
	open := p.open
	p.mu.Unlock()
	select {
	case <-open:
	case <-p.done:
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(up) {
		return
	}
	defer p.untrack(up)
	copied := make(chan struct{})
	go func() { // ends when either side is closed: by its peer, or just below
		_, _ = io.Copy(c, up)
		_ = c.Close()
		close(copied)
	}()
	_, _ = io.Copy(up, c)
	_ = up.Close()
	_ = c.Close()
	<-copied
}

// track records c so that cut and close reach it; once closed, it closes c
// and reports false.
func (p *cutProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *cutProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}
