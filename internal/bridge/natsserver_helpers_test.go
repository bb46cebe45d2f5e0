package bridge

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// natsServer is a NATS server with JetStream running in the test process on
// 127.0.0.1, its store in a t.TempDir. Stop and Start restart it on the same
// port with the same store, as an operator's restart would.
type natsServer struct {
	opts *server.Options
	// URL is the client URL, nats://127.0.0.1:PORT.
	URL string

	mu  sync.Mutex
	srv *server.Server
}

// startNATS starts a server; mods may change its options first (users,
// JetStream off, ...). It is shut down when the test ends.
func startNATS(tb testing.TB, mods ...func(*server.Options)) *natsServer {
	tb.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  tb.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
	for _, m := range mods {
		m(opts)
	}
	if opts.Port == server.RANDOM_PORT {
		// A port known before the first start, out of the way of the
		// ephemeral ones (freePorts): a restart binds it again.
		opts.Port = freePorts(tb, 1)[0]
	}
	n := &natsServer{opts: opts}
	n.Start(tb)
	// Restarts reuse the port the first start got, so clients reconnect.
	n.opts.Port = n.srv.Addr().(*net.TCPAddr).Port
	n.URL = n.srv.ClientURL()
	tb.Cleanup(n.Stop)
	return n
}

// natsStartWait bounds a server's start: a restart replays its store, and
// on a loaded machine that can take a while.
const natsStartWait = time.Minute

// Start starts the server (again), waiting until it accepts clients.
func (n *natsServer) Start(tb testing.TB) {
	tb.Helper()
	srv, err := server.NewServer(n.opts)
	if err != nil {
		tb.Fatalf("nats server.NewServer: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(natsStartWait) {
		srv.Shutdown()
		tb.Fatalf("NATS server not ready for connections within %v", natsStartWait)
	}
	n.mu.Lock()
	n.srv = srv
	n.mu.Unlock()
}

// Stop shuts the server down and waits until it is gone; clients see their
// connections close. Stopping a stopped server does nothing.
func (n *natsServer) Stop() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// startNATSCluster starts n NATS servers with JetStream that form one
// cluster on loopback, and returns them. They are shut down when the test
// ends.
func startNATSCluster(tb testing.TB, n int) []*natsServer {
	tb.Helper()
	// JetStream wants every server's routes configured up front, so the
	// cluster ports are chosen first: free ports, released for the servers.
	var ports []int
	var routes []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		routes = append(routes, "nats://"+l.Addr().String())
		_ = l.Close()
	}
	var servers []*natsServer
	for i := range n {
		s := startNATS(tb, func(o *server.Options) {
			o.ServerName = "n" + strconv.Itoa(i)
			o.Cluster = server.ClusterOpts{Name: "bridge-test", Host: "127.0.0.1", Port: ports[i]}
			o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		})
		servers = append(servers, s)
	}
	return servers
}

// urlsOf returns the client URLs of servers.
func urlsOf(servers ...*natsServer) []string {
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.URL
	}
	return urls
}

// server returns the running server, nil while it is stopped.
func (n *natsServer) server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}
