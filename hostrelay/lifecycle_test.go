package hostrelay

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/protocol"
)

func TestParseVirshEventsFromFixture(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "virsh-events.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for line := range strings.Lines(string(b)) {
		ev, ok := parseVirshEvent(strings.TrimRight(line, "\n"))
		if !ok {
			continue
		}
		got = append(got, ev.TS.Format("05.000")+" "+ev.Domain+" "+string(ev.state())+" ("+ev.Event+"/"+ev.Detail+")")
	}
	want := []string{
		"00.101 web01 running (Started/Booted)",
		"05.202 web01 paused (Suspended/Paused)",
		"06.303 web01 running (Resumed/Unpaused)",
		"07.404 db 01 paused (Suspended/I/O Error)",
		"08.505 it's: odd panicked (Crashed/Panicked)",
		"09.606 web01 migrating (Suspended/Migrated)",
		"09.707 web01 migrated (Stopped/Migrated)",
		"10.808 db 01 shutdown (Shutdown/Finished after guest request)",
		"10.909 db 01 shutdown (Stopped/Shutdown)",
		"11.000 web02 crashed (Stopped/Crashed)",
		"12.000 web02  (Undefined/Removed)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("parsed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseVirshEventRefusesOtherLines(t *testing.T) {
	for _, line := range []string{
		"",
		"events received: 3",
		"event 'lifecycle' for domain 'web01': Started Booted", // no timestamp
		"2026-03-02 10:00:13.000+0000: event 'reboot' for domain 'web01'",
		"2026-03-02 10:00:13.000+0000: event 'lifecycle' for domain '': Started Booted",
		"yesterday: event 'lifecycle' for domain 'web01': Started Booted",
	} {
		if ev, ok := parseVirshEvent(line); ok {
			t.Errorf("parseVirshEvent(%q) = %+v, want refused", line, ev)
		}
	}
}

func TestLifecycleNextDropsConsequences(t *testing.T) {
	tests := []struct {
		name  string
		steps []protocol.VMState
		want  []protocol.VMState
	}{
		{"a panic's shutdown and exit add nothing", []protocol.VMState{protocol.VMRunning, protocol.VMPanicked, protocol.VMShutdown, protocol.VMCrashed},
			[]protocol.VMState{protocol.VMRunning, protocol.VMPanicked}},
		{"a migrated VM's source stopping adds nothing", []protocol.VMState{protocol.VMRunning, protocol.VMMigrating, protocol.VMMigrated, protocol.VMShutdown, protocol.VMCrashed},
			[]protocol.VMState{protocol.VMRunning, protocol.VMMigrating, protocol.VMMigrated}},
		{"a VM started again after a panic runs", []protocol.VMState{protocol.VMPanicked, protocol.VMRunning},
			[]protocol.VMState{protocol.VMPanicked, protocol.VMRunning}},
		{"the same state twice is published once", []protocol.VMState{protocol.VMPaused, protocol.VMPaused, protocol.VMRunning},
			[]protocol.VMState{protocol.VMPaused, protocol.VMRunning}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l vmLifecycle
			var got []protocol.VMState
			for _, s := range tt.steps {
				if l.next(s, "x") {
					got = append(got, s)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("published %v, want %v", got, tt.want)
			}
		})
	}
	var l vmLifecycle
	l.next(protocol.VMShutdown, "guest-shutdown")
	if l.next(protocol.VMCrashed, reasonQEMUExited) {
		t.Error("QEMU closing its socket after a shutdown was published as a crash")
	}
}

func TestProxmoxNameComesFromTheCurrentSection(t *testing.T) {
	dir := t.TempDir()
	conf := "boot: order=scsi0\nname: web-prod\nmemory: 2048\n\n[before-upgrade]\nname: web-old\n"
	if err := os.WriteFile(filepath.Join(dir, "104.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, path, want string }{
		{"a vmid socket takes the name in its config", "/run/gd-qmp/104.qmp", "web-prod"},
		{"a vmid without a config keeps the vmid", "/run/gd-qmp/105.qmp", "105"},
		{"a named socket keeps its name", "/run/gd-qmp/db01.sock", "db01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := qmpVMName(dir, tt.path); got != tt.want {
				t.Errorf("qmpVMName(%s) = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
}

// fakeMonitor plays a QEMU QMP socket: it answers query-status with the
// run state the test sets and sends the events the test pushes.
type fakeMonitor struct {
	ln     *net.UnixListener
	mu     sync.Mutex
	status string
	events chan string
	conns  chan net.Conn
}

func listenMonitor(t *testing.T, path, status string) *fakeMonitor {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeMonitor{ln: ln, status: status, events: make(chan string, 16), conns: make(chan net.Conn, 4)}
	t.Cleanup(func() { ln.Close() })
	go m.serve()
	return m
}

func (m *fakeMonitor) setStatus(s string) {
	m.mu.Lock()
	m.status = s
	m.mu.Unlock()
}

func (m *fakeMonitor) serve() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			return
		}
		m.conns <- c
		c.Write([]byte(`{"QMP": {"version": {}, "capabilities": []}}` + "\n"))
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
	conn:
		for {
			select {
			case ev := <-m.events:
				if ev == "" { // close, as QEMU does when it exits
					c.Close()
					break conn
				}
				c.Write([]byte(ev + "\n"))
			case l, ok := <-lines:
				if !ok {
					break conn
				}
				var cmd struct {
					Execute string `json:"execute"`
					ID      string `json:"id"`
				}
				json.Unmarshal([]byte(l), &cmd)
				ret := `{}`
				if cmd.Execute == "query-status" {
					m.mu.Lock()
					ret = `{"status": "` + m.status + `", "running": false}`
					m.mu.Unlock()
				}
				c.Write([]byte(`{"return": ` + ret + `, "id": "` + cmd.ID + `"}` + "\n"))
			}
		}
	}
}

// lifecycleStates returns the lifecycle events of hv1/web01 in the
// stream as state/reason, none while the relay has not made the stream.
func lifecycleStates(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	if _, err := js.Stream(ctx, natsutil.StreamName); errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	var out []string
	for _, msg := range streamMsgs(t, js, "guestdiag.channel.hv1.web01") {
		var ev protocol.LifecycleEvent
		if err := json.Unmarshal(msg.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Kind != protocol.KindVMLifecycle || ev.Host != "hv1" || ev.VM != "web01" || ev.Source != "qmp" {
			t.Fatalf("event %s: want a qmp vm_lifecycle of hv1/web01", msg.Data)
		}
		out = append(out, string(ev.State)+"/"+ev.Reason)
	}
	return out
}

func TestRelayPublishesLifecycleFromQMP(t *testing.T) {
	// Each play ends in a state the relay must publish last, so that
	// anything it wrongly adds on the way shows up before it.
	tests := []struct {
		name string
		// play drives the monitor once the relay has published the first
		// state; wait(n) waits for n states in the stream.
		play func(m *fakeMonitor, wait func(int))
		want []string
	}{
		{"a pvpanic panic is published once, not also as a shutdown or crash",
			func(m *fakeMonitor, wait func(int)) {
				m.events <- `{"timestamp": {"seconds": 1700000000, "microseconds": 5}, "event": "GUEST_PANICKED", "data": {"action": "poweroff"}}`
				m.events <- `{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-panic"}}`
				wait(2)
				m.setStatus("running") // the VM started again
				m.events <- ""
			},
			[]string{"running/running", "panicked/guest-panicked: action poweroff", "running/running"}},
		{"a live migration's source ends migrated, not shut down",
			func(m *fakeMonitor, wait func(int)) {
				m.setStatus("finish-migrate")
				m.events <- `{"event": "STOP"}`
				wait(2)
				m.setStatus("postmigrate")
				wait(3)
				m.events <- `{"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}`
				m.setStatus("running") // migrated back
				m.events <- ""
			},
			[]string{"running/running", "migrating/finish-migrate", "migrated/postmigrate", "running/running"}},
		{"a source quit right after its migration events said completed ends migrated",
			func(m *fakeMonitor, wait func(int)) {
				m.setStatus("finish-migrate")
				m.events <- `{"event": "STOP"}`
				wait(2)
				m.events <- `{"event": "MIGRATION", "data": {"status": "completed"}}`
				m.events <- `{"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}`
				wait(3)
				m.setStatus("running") // migrated back
				m.events <- ""
			},
			[]string{"running/running", "migrating/finish-migrate", "migrated/migration-completed", "running/running"}},
		{"a destination whose migration completed is asked for its state",
			func(m *fakeMonitor, wait func(int)) {
				m.setStatus("inmigrate")
				m.events <- `{"event": "STOP"}`
				wait(2)
				m.setStatus("running")
				m.events <- `{"event": "MIGRATION", "data": {"status": "completed"}}`
			},
			[]string{"running/running", "migrating/inmigrate", "running/running"}},
		{"a pause and a resume are published with QEMU's reason",
			func(m *fakeMonitor, wait func(int)) {
				m.setStatus("io-error")
				m.events <- `{"event": "STOP"}`
				wait(2)
				m.events <- `{"event": "RESUME"}`
			},
			[]string{"running/running", "paused/io-error", "running/resumed"}},
		{"QEMU gone without a word is a crash",
			func(m *fakeMonitor, wait func(int)) {
				m.events <- "" // and the next QEMU runs
			},
			[]string{"running/running", "crashed/qemu_exited", "running/running"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := natstest.Start(t)
			dir := socketDir(t)
			m := listenMonitor(t, filepath.Join(dir, "web01.qmp"), "running")
			cfg := testConfig(dir)
			cfg.Lifecycle = LifecycleConfig{QMP: []Channel{{Name: "web01", Path: filepath.Join(dir, "web01.qmp")}}, Virsh: VirshOff}
			log, _ := newTestLogger(t)
			_, js := startRelay(t, srv, cfg, log)
			wait := func(n int) {
				eventually(t, fmt.Sprintf("%d lifecycle events", n), func() bool { return len(lifecycleStates(t, js)) >= n })
			}
			wait(1)
			tt.play(m, wait)
			wait(len(tt.want))
			if got := lifecycleStates(t, js); !slices.Equal(got, tt.want) {
				t.Errorf("published %q, want %q", got, tt.want)
			}
		})
	}
}
