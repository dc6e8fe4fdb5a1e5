package hostrelay

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/protocol"
)

func TestParseVsockDomainReadsTheCIDNameAndUUID(t *testing.T) {
	tests := []struct {
		name, file string
		want       VsockVM
		wantOK     bool
	}{
		{"a domain with a vsock gives its CID", "vsock-db01.xml",
			VsockVM{CID: 42, Channel: Channel{Name: "db01 prod", Path: "vsock:42", UUID: "0b9e4c1a-2f3d-4e5f-8a6b-7c8d9e0f1a2b"}}, true},
		{"a domain without one gives nothing", "no-vsock.xml", VsockVM{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "virsh", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, ok, err := parseVsockDomain(b)
			if err != nil || ok != tt.wantOK || got != tt.want {
				t.Errorf("parseVsockDomain = %+v, %v, %v; want %+v, %v, nil", got, ok, err, tt.want, tt.wantOK)
			}
		})
	}
	t.Run("a CID of the host is refused", func(t *testing.T) {
		if _, _, err := parseVsockDomain([]byte(`<domain><name>x</name><devices><vsock><cid address='2'/></vsock></devices></domain>`)); err == nil {
			t.Error("CID 2 accepted")
		}
	})
}

func TestParseVsockVM(t *testing.T) {
	got, err := ParseVsockVM("web01=7,uuid=6F1C2A3B-4D5E-4F60-8172-93A4B5C6D7E8")
	want := VsockVM{CID: 7, Channel: Channel{Name: "web01", Path: "vsock:7", UUID: "6f1c2a3b-4d5e-4f60-8172-93a4b5c6d7e8"}}
	if err != nil || got != want {
		t.Errorf("ParseVsockVM = %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{"web01=2", "web01=x", "=5", "bad\xff=5"} {
		if _, err := ParseVsockVM(bad); err == nil {
			t.Errorf("ParseVsockVM(%q) accepted", bad)
		}
	}
}

// pipeVsock is a stand-in for a vsock listener, which needs a hypervisor
// with vhost-vsock: each dial gives the relay a net.Pipe end with the CID
// the test chose, as the kernel would give the guest's.
type pipeVsock struct {
	conns  chan pipeConn
	closed chan struct{}
}

type pipeConn struct {
	c   net.Conn
	cid uint32
}

func newPipeVsock() *pipeVsock {
	return &pipeVsock{conns: make(chan pipeConn), closed: make(chan struct{})}
}

func (p *pipeVsock) Accept() (net.Conn, uint32, error) {
	select {
	case c := <-p.conns:
		return c.c, c.cid, nil
	case <-p.closed:
		return nil, 0, net.ErrClosed
	}
}

func (p *pipeVsock) Close() error {
	select {
	case <-p.closed:
	default:
		close(p.closed)
	}
	return nil
}

func (p *pipeVsock) dial(cid uint32) net.Conn {
	relay, guest := net.Pipe()
	p.conns <- pipeConn{relay, cid}
	return guest
}

func TestRelayServesVsockGuestsByTheirCID(t *testing.T) {
	srv := natstest.Start(t)
	dir := socketDir(t)
	cfg := testConfig(dir)
	log, logs := newTestLogger(t)
	r, js := startRelay(t, srv, cfg, log)
	eventually(t, "the relay to start", func() bool { return r.metrics.ready.Load() })

	ln := newPipeVsock()
	table := newVsockTable([]VsockVM{{CID: 7, Channel: Channel{Name: "web01", Path: "vsock:7"}}},
		func(context.Context) ([]VsockVM, error) { return nil, errors.New("no libvirt here") })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.serveVsock(ctx, ln, table); close(done) }()
	defer func() { cancel(); <-done }()

	conn := ln.dial(7)
	var acked atomic.Uint64
	go func() {
		pr := protocol.NewReader(conn, 0)
		for {
			line, err := pr.ReadLine()
			if err != nil {
				return
			}
			if a, err := protocol.DecodeAck(line); err == nil {
				acked.Store(a.Seq)
			}
		}
	}()
	// A pipe does not buffer: write while the ack reader runs.
	if _, err := conn.Write(append(helloLine(t, "r1", 1, "someone-else"), resultLine(t, "r1", 2, "resources")...)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the vsock guest's messages to be acknowledged", func() bool { return acked.Load() == 2 })
	checkStreamHolds(t, js, "hv1:web01", "r1", 2)

	unknown := ln.dial(9)
	if _, err := unknown.Read(make([]byte, 1)); err == nil {
		t.Error("a guest with an unmapped CID was served")
	}
	if got := logs.lines("vsock_unknown_cid"); len(got) != 1 || !strings.Contains(got[0], "cid=9") {
		t.Errorf("unknown CID logged as %q, want one warning naming cid 9", got)
	}
	conn.Close()
}

func TestIntegrationVsockListener(t *testing.T) {
	if os.Getenv("GUESTDIAG_REQUIRE_VSOCK") == "" {
		t.Skip("vsock needs a host with /dev/vhost-vsock and a guest with a vsock device; set GUESTDIAG_REQUIRE_VSOCK=1 on such a host to run it")
	}
	ln, err := listenVsock(47001)
	if err != nil {
		t.Fatalf("listen on vsock port 47001: %v", err)
	}
	ln.Close()
}
