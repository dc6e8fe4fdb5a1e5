package firewall

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/guestdiag/guestdiag/checks"
	"github.com/guestdiag/guestdiag/checks/internal/checktest"
	"github.com/guestdiag/guestdiag/protocol"
	"golang.org/x/sys/unix"
)

// testNetns makes a network namespace for the test and returns its name
// and an open fd for it. It skips the test without root, ip or nft.
func testNetns(t *testing.T) (string, int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace; run the tests as root (e.g. sudo go test ./checks/)")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: apt-get install -y --no-install-recommends iproute2 nftables", tool)
		}
	}
	b := make([]byte, 4)
	rand.Read(b)
	name := "guestdiag-fw-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("cannot make a network namespace: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	f, err := os.Open(filepath.Join("/run/netns", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	// An empty namespace says whether this kernel has nf_tables at all.
	conn, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ListTables(); err != nil {
		t.Skipf("nf_tables unusable here (%v); needs a kernel with nf_tables", err)
	}
	return name, int(f.Fd())
}

// runNft runs nft in the namespace, never in the host's.
func runNft(t *testing.T, ns string, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// testSource reads the namespace, with no /proc or /etc of its own so
// that the host's legacy tables, firewalld and ufw stay out of it.
func testSource(t *testing.T, fd int) *linuxSource {
	return &linuxSource{logger: testLogger(t), netns: fd, root: t.TempDir()}
}

func TestIntegrationFirewallRendersRules(t *testing.T) {
	ns, fd := testNetns(t)
	runNft(t, ns, "-f", "testdata/ruleset.nft")

	g, err := testSource(t, fd).gather(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		table, chain string
		header       string
		rules        []string
		finalDrop    bool
	}{
		{
			table: "inet filter", chain: "input",
			header: "type filter hook input priority 0 policy drop",
			rules: []string{
				"ct state established,related accept",
				"ct state invalid drop",
				`iifname "lo" accept`,
				"tcp dport 22 accept",
				"tcp dport { 80, 443, 8000-8080 } counter accept",
				"ip saddr 192.168.0.0/16 udp dport 53 accept",
				"ip saddr @allowed accept",
				"ip6 saddr fe80::/64 udp dport 546 accept",
				"ip6 nexthdr ipv6-icmp accept",
				"meta l4proto icmp limit rate 10/second burst 5 packets accept",
				"tcp flags & syn,ack == syn jump syn_flood",
				`meta l4proto { tcp, udp } th dport 5353 drop comment "no mdns"`,
				`log prefix "input drop: " level info`,
				"reject with icmpx admin-prohibited",
			},
			finalDrop: true,
		},
		{
			table: "inet filter", chain: "syn_flood",
			rules:     []string{"limit rate 25/second burst 50 packets return", "counter drop"},
			finalDrop: true,
		},
		{
			table: "inet filter", chain: "forward",
			header: "type filter hook forward priority 0 policy drop",
			rules:  []string{"ct state vmap { invalid : drop, established : accept, related : accept }"},
		},
		{
			table: "inet filter", chain: "output",
			header: "type filter hook output priority 0 policy accept",
			rules:  []string{"meta mark set 0x00000010"},
		},
		{
			table: "ip nat", chain: "prerouting",
			header: "type nat hook prerouting priority -100 policy accept",
			rules:  []string{"tcp dport 8080 dnat ip to 10.0.0.2:80"},
		},
		{
			table: "ip nat", chain: "postrouting",
			header: "type nat hook postrouting priority 100 policy accept",
			rules:  []string{`oifname "eth0" masquerade`},
		},
	}
	for _, tt := range tests {
		t.Run("chain "+tt.table+" "+tt.chain+" reads as nft writes it", func(t *testing.T) {
			c := chainOf(t, g.chains, tt.table, tt.chain)
			if c.Header != tt.header {
				t.Errorf("header = %q, want %q", c.Header, tt.header)
			}
			if !slices.Equal(c.Rules, tt.rules) {
				t.Errorf("rules:\n got %q\nwant %q", c.Rules, tt.rules)
			}
			if c.FinalDrop != tt.finalDrop {
				t.Errorf("FinalDrop = %v, want %v", c.FinalDrop, tt.finalDrop)
			}
		})
	}
	if in := chainOf(t, g.chains, "inet filter", "input"); in.Hook != "input" || in.Policy != "drop" {
		t.Errorf("input chain: hook %q policy %q, want input drop", in.Hook, in.Policy)
	}

	t.Run("reading it twice and reloading it give the same fingerprint", func(t *testing.T) {
		again, err := testSource(t, fd).gather(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		runNft(t, ns, "flush", "ruleset")
		runNft(t, ns, "-f", "testdata/ruleset.nft")
		reloaded, err := testSource(t, fd).gather(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		want := snapshotOf(g.chains).Fingerprint
		if got := snapshotOf(again.chains).Fingerprint; got != want {
			t.Errorf("second read: fingerprint %s, want %s", got, want)
		}
		if got := snapshotOf(reloaded.chains).Fingerprint; got != want {
			t.Errorf("after reload: fingerprint %s, want %s", got, want)
		}
	})
}

func TestIntegrationFirewallDecision(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		enabled bool
	}{
		{"an input chain with policy drop is a firewall", "policy-drop.nft", true},
		{"an input chain ending with reject is a firewall", "final-reject.nft", true},
		{"an input chain accepting what it does not drop is no firewall", "accept-only.nft", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, fd := testNetns(t)
			runNft(t, ns, "-f", filepath.Join("testdata", tt.file))
			fw := newCheck(DefaultConfig(), testSource(t, fd), checks.Env{Logger: testLogger(t)})
			res := fw.Run(t.Context())
			if got := res.Data.(Data).Enabled; got != tt.enabled {
				t.Errorf("enabled = %v, want %v (%s)", got, tt.enabled, res.Summary)
			}
		})
	}
}

func TestIntegrationFirewallLifecycle(t *testing.T) {
	ns, fd := testNetns(t)
	src := testSource(t, fd)
	env := checks.Env{Logger: testLogger(t), State: checks.NewState(t.TempDir(), Name)}

	t.Run("an empty namespace has no firewall", func(t *testing.T) {
		res := newCheck(DefaultConfig(), src, checks.Env{Logger: testLogger(t)}).Run(t.Context())
		if res.Status != protocol.StatusCrit || !hasCode(res, CodeFirewallDisabled) {
			t.Fatalf("got %s %q %v, want crit with fw.disabled", res.Status, res.Summary, res.Findings)
		}
	})

	runNft(t, ns, "-f", "testdata/policy-drop.nft")
	fw := newCheck(DefaultConfig(), src, env)
	t.Run("a policy drop input chain is on and becomes the baseline", func(t *testing.T) {
		res := fw.Run(t.Context())
		if res.Status != protocol.StatusOK || len(res.Findings) != 0 {
			t.Fatalf("got %s %q %v, want ok without findings", res.Status, res.Summary, res.Findings)
		}
		if err := fw.Commit(); err != nil {
			t.Fatal(err)
		}
	})

	runNft(t, ns, "add", "rule", "inet", "filter", "input", "tcp", "dport", "2222", "accept")
	t.Run("an added rule is fw.changed listing exactly that rule", func(t *testing.T) {
		res := fw.Run(t.Context())
		if res.Status != protocol.StatusWarn || !hasCode(res, CodeFirewallChanged) {
			t.Fatalf("got %s %q %v, want warn with fw.changed", res.Status, res.Summary, res.Findings)
		}
		d := res.Data.(Data)
		want := []string{"inet filter input: tcp dport 2222 accept"}
		if !slices.Equal(d.Added, want) || len(d.Removed) != 0 || d.AddedCount != 1 {
			t.Errorf("added %q (%d), removed %q; want added %q only", d.Added, d.AddedCount, d.Removed, want)
		}
		if got, want := res.Findings[0].Message, "1 rule added in table inet filter"; got != want {
			t.Errorf("message %q, want %q", got, want)
		}
		if err := fw.Commit(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a restarted check compares with the committed snapshot", func(t *testing.T) {
		res := newCheck(DefaultConfig(), src, env).Run(t.Context())
		if res.Status != protocol.StatusOK {
			t.Fatalf("got %s %q %v, want ok", res.Status, res.Summary, res.Findings)
		}
	})
}

func TestIntegrationFirewallWatch(t *testing.T) {
	ns, fd := testNetns(t)
	runNft(t, ns, "-f", "testdata/policy-drop.nft")
	fw := newCheck(DefaultConfig(), testSource(t, fd), checks.Env{Logger: testLogger(t)})

	w := checktest.StartWatch(t, fw)

	// The monitor subscribes asynchronously: change the ruleset until it
	// reports, then measure on a clean slate.
	deadline := time.Now().Add(10 * time.Second)
	for ready := false; !ready; {
		if time.Now().After(deadline) {
			t.Fatal("the monitor never reported a change")
		}
		runNft(t, ns, "add", "table", "ip", "probe")
		runNft(t, ns, "delete", "table", "ip", "probe")
		ready = w.Poll(t, 200*time.Millisecond)
	}
	w.Drain()

	runNft(t, ns, "add", "rule", "inet", "filter", "input", "tcp", "dport", "2222", "accept")
	t.Logf("triggered %v after nft add rule returned", w.Await(t, "nft add rule", 2*time.Second))
}

func TestIntegrationFirewallNoNamespaceAccess(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root; run the tests as root")
	}
	// A closed fd is not a namespace: gathering must say why, not panic.
	_, err := (&linuxSource{logger: testLogger(t), netns: 1 << 20, root: t.TempDir()}).gather(t.Context())
	if err == nil {
		t.Fatal("gather in a bad namespace fd: no error")
	}
}

func TestFirewallRenderRule(t *testing.T) {
	tcp := []byte{unix.IPPROTO_TCP}
	tests := []struct {
		name  string
		exprs []expr.Any
		want  string
		drop  bool
	}{
		{
			name: "a port match drops the meta l4proto it depends on",
			exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: tcp},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 22}},
				&expr.Verdict{Kind: expr.VerdictAccept},
			},
			want: "tcp dport 22 accept",
		},
		{
			name: "a protocol match alone is kept",
			exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: tcp},
				&expr.Verdict{Kind: expr.VerdictDrop},
			},
			want: "meta l4proto tcp drop",
		},
		{
			name:  "counter values never show",
			exprs: []expr.Any{&expr.Counter{Packets: 12, Bytes: 3456}, &expr.Verdict{Kind: expr.VerdictDrop}},
			want:  "counter drop",
			drop:  true,
		},
		{
			name: "a masked address is a prefix",
			exprs: []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 255, 240, 0}, Xor: []byte{0, 0, 0, 0}},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{172, 16, 0, 0}},
				&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
			},
			want: "ip daddr != 172.16.0.0/20 reject with tcp reset",
		},
		{
			name:  "an expression without words prints its fields",
			exprs: []expr.Any{&expr.Numgen{Register: 1, Modulus: 2}},
			want:  `numgen {"Register":1,"Modulus":2,"Type":0,"Offset":0}`,
		},
	}
	noSets := func(string) (setInfo, bool) { return setInfo{}, false }
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, drop := renderRule(nftables.TableFamilyIPv4, &nftables.Rule{Exprs: tt.exprs, Handle: 42}, noSets)
			if got != tt.want || drop != tt.drop {
				t.Errorf("got %q drop=%v, want %q drop=%v", got, drop, tt.want, tt.drop)
			}
		})
	}
}

func TestFirewallUFWEnabled(t *testing.T) {
	tests := []struct {
		name string
		conf string
		want bool
	}{
		{"ENABLED=yes is on", "# /etc/ufw/ufw.conf\nENABLED=yes\nLOGLEVEL=low\n", true},
		{"ENABLED=no is off", "ENABLED=no\nLOGLEVEL=low\n", false},
		{"a quoted yes is on", "ENABLED=\"yes\"\n", true},
		{"a commented yes is off", "#ENABLED=yes\nENABLED=no\n", false},
		{"no ENABLED is off", "LOGLEVEL=low\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ufwEnabled([]byte(tt.conf)); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFirewallLinuxFiles(t *testing.T) {
	root := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := &linuxSource{logger: testLogger(t), root: root}
	if got := s.firewalld(); got != "" {
		t.Errorf("firewalld not installed: got %q, want empty", got)
	}
	write("etc/firewalld/firewalld.conf", "DefaultZone=public\n")
	write("proc/1/comm", "systemd\n")
	if got := s.firewalld(); got != "not running" {
		t.Errorf("firewalld installed, not running: got %q", got)
	}
	write("proc/812/comm", "firewalld\n")
	if got := s.firewalld(); got != "running" {
		t.Errorf("firewalld running without a pid file: got %q", got)
	}
	write("run/firewalld.pid", "812\n")
	if got := s.firewalld(); got != "running" {
		t.Errorf("firewalld running with a pid file: got %q", got)
	}

	write("etc/ufw/ufw.conf", "ENABLED=yes\n")
	if got := s.ufw(nil); got != "enabled in ufw.conf but its chains are not loaded" {
		t.Errorf("ufw enabled without chains: got %q", got)
	}
	if got := s.ufw([]chain{{Table: "legacy ip filter", Name: "ufw-user-input"}}); got != "active" {
		t.Errorf("ufw with chains: got %q", got)
	}
}
