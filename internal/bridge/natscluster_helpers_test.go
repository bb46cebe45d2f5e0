package bridge

import (
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// natsCluster is a cluster of NATS servers with JetStream in the test
// process whose every connection — a client's to a server, a server's route
// to another — passes through a proxy of its own, so that a server can die
// as a machine does: kill freezes every proxy of the server, and from then
// on nothing reaches it or comes from it, and no connection is closed (a
// dead host sends neither FIN nor RST; its peers find out by their own
// timers). An embedded server's Shutdown would instead step its raft
// leaders down and tell pull consumers to go elsewhere first, a courtesy a
// killed process never pays. restart shuts the frozen server down, drops
// what its proxies held (the peers' connections to the dead host reset) and
// starts it again on the same store.
type natsCluster struct {
	servers []*natsServer
	clients []*linkProxy   // clients[i] forwards to server i's client port
	routes  [][]*linkProxy // routes[i][j] carries server i's route to server j
}

// startNATSProxiedCluster starts n servers; they are shut down when the test
// ends.
func startNATSProxiedCluster(t *testing.T, n int) *natsCluster {
	t.Helper()
	c := &natsCluster{routes: make([][]*linkProxy, n)}
	clientPorts, clusterPorts := freePorts(t, n), freePorts(t, n)
	for i := range n {
		c.clients = append(c.clients, startLinkProxy(t, "127.0.0.1:"+strconv.Itoa(clientPorts[i])))
		c.routes[i] = make([]*linkProxy, n)
		for j := range n {
			if i != j {
				c.routes[i][j] = startLinkProxy(t, "127.0.0.1:"+strconv.Itoa(clusterPorts[j]))
			}
		}
	}
	for i := range n {
		var routes []string
		for j := range n {
			if i != j {
				routes = append(routes, "nats://"+c.routes[i][j].addr())
			}
		}
		s := startNATS(t, func(o *server.Options) {
			o.ServerName = "n" + strconv.Itoa(i)
			o.Port = clientPorts[i]
			// Clients learn the other servers from this server: through
			// their proxies.
			o.ClientAdvertise = c.clients[i].addr()
			o.Cluster = server.ClusterOpts{
				Name: "bridge-test", Host: "127.0.0.1", Port: clusterPorts[i],
				// Routes go only where they are configured, through the
				// proxies: the route address servers tell each other is
				// one nobody listens on. (NoAdvertise would also keep the
				// other servers' client URLs from clients.)
				Advertise: "127.0.0.1:1",
			}
			o.Routes = server.RoutesFromStr(joinComma(routes))
		})
		c.servers = append(c.servers, s)
	}
	return c
}

// url is server i's client URL, through its proxy.
func (c *natsCluster) url(i int) string { return "nats://" + c.clients[i].addr() }

// urls are every server's client URL.
func (c *natsCluster) urls() []string {
	var out []string
	for i := range c.servers {
		out = append(out, c.url(i))
	}
	return out
}

// links are every proxy that carries server i's traffic.
func (c *natsCluster) links(i int) []*linkProxy {
	out := []*linkProxy{c.clients[i]}
	for j := range c.servers {
		if j != i {
			out = append(out, c.routes[i][j], c.routes[j][i])
		}
	}
	return out
}

// kill makes server i a dead host for everyone else.
func (c *natsCluster) kill(i int) {
	for _, p := range c.links(i) {
		p.freeze()
	}
}

// restart brings a killed server i back: a new process on the same store.
func (c *natsCluster) restart(t *testing.T, i int) {
	t.Helper()
	c.servers[i].Stop()
	for _, p := range c.links(i) {
		p.thaw()
	}
	c.servers[i].Start(t)
}

func joinComma(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}

// freePorts returns n loopback ports, free a moment ago, for servers that
// must listen on ports known in advance (a cluster's routes, a restart on
// the same port). They come from below the system's ephemeral range when
// it can be read: a port of that range, once freed, is the local port of
// the next connection any parallel test opens as likely as any other, and
// a server then cannot listen on it (a cluster server once waited its whole
// minute to be ready). Below the range, only an explicit bind takes a port,
// and this process hands each out once.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	ports.Lock()
	defer ports.Unlock()
	var out []int
	if low := ephemeralLow(); low > firstFixedPort+1000 {
		for tries := 0; len(out) < n && tries < 1000; tries++ {
			p := firstFixedPort + rand.IntN(low-firstFixedPort)
			if ports.given[p] {
				continue
			}
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				continue // taken
			}
			_ = l.Close()
			ports.given[p] = true
			out = append(out, p)
		}
		if len(out) == n {
			return out
		}
	}
	// Anywhere the kernel likes: free a moment ago.
	var ls []net.Listener
	for len(out) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return out
}

// ports are the ports freePorts handed out in this process.
var ports = struct {
	sync.Mutex
	given map[int]bool
}{given: map[int]bool{}}

// firstFixedPort is the lowest port freePorts hands out: above the
// well-known and the commonly configured ones.
const firstFixedPort = 20000

// ephemeralLow is the first port of the kernel's ephemeral range, or 0
// when it cannot be read (not Linux).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	low, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return low
}

// linkProxy forwards the TCP connections it accepts to target. Frozen, it
// is a dead host: bytes that arrive are dropped, nothing is sent, new
// connections are accepted and never forwarded, and nothing is closed.
// Thawed, it closes whatever it held and forwards again.
type linkProxy struct {
	lis    net.Listener
	target string
	wg     sync.WaitGroup

	mu     sync.Mutex
	frozen bool
	closed bool
	conns  map[net.Conn]struct{}
}

func startLinkProxy(t *testing.T, target string) *linkProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &linkProxy{lis: lis, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *linkProxy) addr() string { return p.lis.Addr().String() }

func (p *linkProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = true
}

func (p *linkProxy) thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = false
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

func (p *linkProxy) isFrozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frozen
}

func (p *linkProxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	_ = p.lis.Close()
	p.wg.Wait()
}

// track adds c to the connections the proxy holds; false once it closed.
func (p *linkProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *linkProxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *linkProxy) accept() {
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

// forward connects c to the target and copies both ways until either side
// fails while the proxy is not frozen; a frozen proxy holds c, unforwarded,
// until thaw or close closes it.
func (p *linkProxy) forward(c net.Conn) {
	if p.isFrozen() {
		_, _ = io.Copy(io.Discard, c) // held: ends when thaw or close closes c
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		p.drop(c)
		return
	}
	if !p.track(up) {
		p.drop(c)
		return
	}
	var both sync.WaitGroup
	both.Go(func() { p.pipe(up, c) })
	both.Go(func() { p.pipe(c, up) })
	both.Wait()
}

// pipe copies from src to dst. Frozen, it drops what it reads, and when src
// fails (the dead server's process ended, or thaw closed it) it closes
// nothing: a dead host sends no FIN, and thaw closes what is held. Not
// frozen, a failure of either side closes both.
func (p *linkProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if p.isFrozen() {
			if err != nil {
				return
			}
			continue
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			p.drop(src)
			p.drop(dst)
			return
		}
	}
}

// drop closes c and forgets it.
func (p *linkProxy) drop(c net.Conn) {
	_ = c.Close()
	p.untrack(c)
}
