package natstest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is a real JetStream cluster of embedded nats-server nodes with
// routes on loopback. Each node keeps its client and route ports and its
// store across Kill and Restart, as a real node does across a reboot.
type Cluster struct {
	t     testing.TB
	mu    sync.Mutex
	opts  []*server.Options
	nodes []*server.Server // nil while killed
}

// StartCluster starts n nodes named n1…nN in one cluster and waits until
// JetStream has a meta leader. The nodes stop at the end of the test.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	opts := make([]*server.Options, n)
	routes := make([]*url.URL, n)
	for i := range n {
		client, route := FreePort(t), FreePort(t)
		opts[i] = &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       client,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster:    server.ClusterOpts{Name: "guestdiag-test", Host: "127.0.0.1", Port: route},
		}
		routes[i] = &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", route)}
	}
	for i := range n {
		opts[i].Routes = routes
	}
	return StartClusterWith(t, opts)
}

// StartClusterWith starts one node per opts, as given (fixed ports, routes
// to each other), and waits until JetStream has a meta leader: for a
// cluster made from configuration files. The nodes stop at the end of the
// test.
func StartClusterWith(t testing.TB, opts []*server.Options) *Cluster {
	t.Helper()
	c := &Cluster{t: t, opts: opts, nodes: make([]*server.Server, len(opts))}
	for i := range opts {
		c.Restart(i)
	}
	t.Cleanup(func() {
		for i := range opts {
			c.Kill(i)
		}
	})
	c.WaitMetaLeader(30 * time.Second)
	return c
}

// Node returns node i, or nil while it is killed.
func (c *Cluster) Node(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Len is the number of nodes.
func (c *Cluster) Len() int { return len(c.opts) }

// URLs is every node's client URL, comma separated, as daemons take them.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.opts))
	for i, o := range c.opts {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", o.Port)
	}
	return strings.Join(urls, ",")
}

// Kill shuts node i down; a killed node stays down until Restart.
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	s := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Restart starts node i again with its ports and store.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	o := *c.opts[i]
	s, err := server.NewServer(&o)
	if err != nil {
		c.t.Fatalf("node %s: %v", o.ServerName, err)
	}
	s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		s.Shutdown()
		c.t.Fatalf("node %s: not ready after 20s", o.ServerName)
	}
	c.mu.Lock()
	c.nodes[i] = s
	c.mu.Unlock()
}

// Index returns the index of the node named name, or -1.
func (c *Cluster) Index(name string) int {
	for i, o := range c.opts {
		if o.ServerName == name {
			return i
		}
	}
	return -1
}

// WaitMetaLeader waits until one running node is the JetStream meta
// leader and every running node is current with it.
func (c *Cluster) WaitMetaLeader(within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		leader, current := false, true
		for i := range c.opts {
			if s := c.Node(i); s != nil {
				leader = leader || s.JetStreamIsLeader()
				current = current && s.JetStreamIsCurrent()
			}
		}
		if leader && current {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("no JetStream meta leader after %s", within)
}

// StreamLeader returns the index of the node leading stream (in the
// default account), or -1 when no running node leads it.
func (c *Cluster) StreamLeader(stream string) int {
	for i := range c.opts {
		if s := c.Node(i); s != nil && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
}

// FreePort returns a loopback TCP port free at the time of the call.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
