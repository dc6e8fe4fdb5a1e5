package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/protocol"
)

// account holds guestdiag's streams in testdata/accounts.conf.
const account = "GUESTDIAG"

// Test passwords; testdata/accounts.conf holds their bcrypt hashes.
var passwords = map[string]string{
	"admin":     "test-admin-pw",
	"collector": "test-collector-pw",
	"scheduler": "test-scheduler-pw",
	"relay-h1":  "test-relay-h1-pw",
	"relay-h2":  "test-relay-h2-pw",
}

var gatewayDown = protocol.Finding{Code: "net.gateway_unreachable", Severity: protocol.SeverityCrit, Message: "gateway 10.0.2.2 on eth0 answered 0 of 3 pings", Source: "eth0"}

// confCluster is the cluster of testdata/n1.conf…n3.conf running on this
// machine.
type confCluster struct {
	*natstest.Cluster
	dir string // the TLS files and the password files
}

// startConfCluster starts the three nodes from testdata/n1.conf…n3.conf
// and accounts.conf as they are, except what cannot be so on one machine:
// the certificate and store directories (/etc/nats/tls and /var/lib/nats
// become temporary ones, node i's store stores[i] when given) and the
// ports (every node gets free loopback ports, the routes name them, the
// monitoring port is off).
func startConfCluster(t *testing.T, stores ...string) *confCluster {
	t.Helper()
	skipUnderRace(t)
	dir := t.TempDir()
	writePKI(t, dir, "n1", "n2", "n3")
	copyFile(t, "testdata/accounts.conf", filepath.Join(dir, "accounts.conf"))
	opts := make([]*server.Options, 3)
	routes := make([]*url.URL, 3)
	for i := range opts {
		routes[i] = &url.URL{Scheme: "tls", Host: fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))}
	}
	for i := range opts {
		store := t.TempDir()
		if i < len(stores) && stores[i] != "" {
			store = stores[i]
		}
		text, err := os.ReadFile(fmt.Sprintf("testdata/n%d.conf", i+1))
		if err != nil {
			t.Fatal(err)
		}
		conf := strings.NewReplacer("/etc/nats/tls/", dir+"/", "/var/lib/nats", store).Replace(string(text))
		path := filepath.Join(dir, fmt.Sprintf("n%d.conf", i+1))
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		o, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("n%d.conf: %v", i+1, err)
		}
		o.Host, o.Port = "127.0.0.1", natstest.FreePort(t)
		o.HTTPHost, o.HTTPPort = "", 0
		o.Cluster.Host = "127.0.0.1"
		o.Cluster.Port = mustPort(t, routes[i])
		o.Routes = routes
		o.NoLog, o.NoSigs = true, true
		opts[i] = o
	}
	return &confCluster{Cluster: natstest.StartClusterWith(t, opts), dir: dir}
}

// skipUnderRace skips a test that runs a three-node cluster when the race
// detector is on (make test-unit); make test-vmlab runs them without it.
func skipUnderRace(t *testing.T) {
	t.Helper()
	if underRace {
		t.Skip("three-node cluster: too slow under the race detector; make test-vmlab runs this test without it")
	}
}

func mustPort(t *testing.T, u *url.URL) int {
	t.Helper()
	var p int
	if _, err := fmt.Sscan(u.Port(), &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// connect logs in as user the way the daemons do (natsutil.Auth: the
// cluster's CA, a password file, the daemon's inbox prefix) to every node.
func (c *confCluster) connect(t *testing.T, user, inbox string) *nats.Conn {
	t.Helper()
	pwFile := filepath.Join(c.dir, user+".password")
	if err := os.WriteFile(pwFile, []byte(passwords[user]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := natsutil.Auth{CAFile: filepath.Join(c.dir, "ca.pem"), User: user, PasswordFile: pwFile, InboxPrefix: inbox}
	opts, err := a.Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := natsutil.Connect(c.URLs(), user, discard(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// warnings logs warnings and errors to the test's log.
func warnings(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// running is a collector serving its API on a loopback port.
type running struct {
	c    *collector.Collector
	api  string
	stop func()
}

func startCollector(t *testing.T, nc *nats.Conn, replicas int) *running {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := collector.New(collector.Config{Replicas: replicas}, nc, warnings(t))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.Serve(ctx, ln); err != nil {
			t.Errorf("collector: %v", err)
		}
	}()
	stop := func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return &running{c: c, api: "http://" + ln.Addr().String(), stop: stop}
}

// get returns the body of the collector's answer to path.
func (r *running) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(r.api + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// report is what a relay of host publishes for one guest result.
func report(t *testing.T, host, vm, run string, seq uint64, status protocol.Status) (subject string, body []byte, msgID string) {
	t.Helper()
	e := protocol.Envelope{V: 1, Kind: protocol.KindResult, Run: run, Seq: seq, TS: time.Now().UTC(), Check: "network", Status: status, Summary: "network " + string(status)}
	if status == protocol.StatusCrit {
		e.Findings = []protocol.Finding{gatewayDown}
	}
	line, err := protocol.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	uuid := "u-" + host + "-" + vm
	rep := protocol.Report{V: 1, Host: host, VM: vm, UUID: uuid, Channel: "/run/guestdiag/" + vm + ".sock", Received: time.Now().UTC(), Guest: line[:len(line)-1]}
	body, err = json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	return protocol.ReportSubject(host, vm, e.Check), body, protocol.MsgID(uuid, run, seq)
}

// waitFor polls cond every 20 ms until it holds or within has passed.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// streamInfo reads a stream's info through js.
func streamInfo(t *testing.T, js jetstream.JetStream, name string) (*jetstream.StreamInfo, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	return s.Info(ctx)
}
