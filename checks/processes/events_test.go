package processes

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/checks/internal/kmsg"
	"github.com/guestdiag/guestdiag/protocol"
)

func TestParseSignalLine(t *testing.T) {
	b, err := os.ReadFile("testdata/trace_pipe.txt")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	tests := []struct {
		name string
		ok   bool
		want sigRecord
	}{
		{"kill(1) sending SIGKILL is read with its sender", true, sigRecord{Sig: 9, From: "kill", FromPID: 1240, To: "sleep", ToPID: 1234, Group: true}},
		{"systemd stopping a unit is read", true, sigRecord{Sig: 15, From: "systemd", FromPID: 1, To: "nginx", ToPID: 880, Group: true}},
		{"comms with spaces and dashes are read whole", true, sigRecord{Sig: 11, Code: 1, From: "my prog-x", FromPID: 77, To: "my prog-x", ToPID: 77}},
		{"the OOM killer's SIGKILL has code 128", true, sigRecord{Sig: 9, Code: 128, From: "stress", FromPID: 2001, To: "stress", ToPID: 2001, Group: true}},
		{"a comm that mimics the fields is read up to the real ones at the end", true, sigRecord{Sig: 15, From: "bash", FromPID: 500, To: "x pid=9 grp=1 res=0", ToPID: 1, Group: true, Res: 2}},
		{"a lost-events note is no signal", false, sigRecord{}},
		{"another event is no signal", false, sigRecord{}},
	}
	if len(lines) != len(tests) {
		t.Fatalf("%d lines, %d cases", len(lines), len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseSignalLine(lines[i], time.Time{})
			if ok != tt.ok || got != tt.want {
				t.Errorf("got %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestSignalFilterNamesEveryTracedSignal(t *testing.T) {
	got := signalFilter()
	if !strings.HasPrefix(got, "sig==2||") || strings.Count(got, "sig==") != len(killSignals) || strings.Contains(got, "sig==1|") {
		t.Errorf("filter %q", got)
	}
}

func readOOMFixture(t *testing.T) []OOMKill {
	t.Helper()
	f, err := os.Open("testdata/kmsg_oom.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r oomReader
	var out []OOMKill
	boot := time.Unix(1700000000, 0)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rec, err := kmsg.Parse(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := r.line(rec.Message, boot.Add(time.Duration(rec.Usec)*time.Microsecond)); ok {
			out = append(out, o)
		}
	}
	return out
}

func TestOOMReaderPairsSummaryAndKill(t *testing.T) {
	got := readOOMFixture(t)
	if len(got) != 3 {
		t.Fatalf("got %d kills, want 3: %+v", len(got), got)
	}
	tests := []struct {
		name string
		got  OOMKill
		want OOMKill
	}{
		{"a kill at a unit's memory limit names the unit and both cgroups", got[0], OOMKill{PID: 2001, Name: "stress", TotalVMKB: 138600, AnonRSSKB: 32512, FileRSSKB: 1204,
			Constraint: "CONSTRAINT_MEMCG", Cgroup: "/system.slice/stress.service", LimitCgroup: "/system.slice/stress.service", Unit: "stress.service", Source: "kmsg"}},
		{"a global kill of a process with parentheses in its name", got[1], OOMKill{PID: 3100, Name: "a (b) c", UID: 1000, TotalVMKB: 2048000, AnonRSSKB: 1900000, ShmemRSSKB: 12, OOMScoreAdj: 200,
			Constraint: "CONSTRAINT_NONE", Cgroup: "/user.slice/user-1000.slice/session-3.scope", Unit: "session-3.scope", Source: "kmsg"}},
		{"a kill line without its summary still names the victim", got[2], OOMKill{PID: 3300, Name: "lonely", TotalVMKB: 100, AnonRSSKB: 50, OOMScoreAdj: -500, Source: "kmsg"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got.At == nil {
				t.Fatal("no kernel time")
			}
			g := tt.got
			g.At = nil
			if g != tt.want {
				t.Errorf("got  %+v\nwant %+v", g, tt.want)
			}
		})
	}
	if want := time.Unix(1700000000, 0).Add(88231420 * time.Microsecond); !got[0].At.Equal(want) {
		t.Errorf("at %v, want %v", got[0].At, want)
	}
}

func TestUnitOfCgroup(t *testing.T) {
	tests := []struct{ name, path, want string }{
		{"a system service", "/system.slice/nginx.service", "nginx.service"},
		{"a user's service inside the user manager", "/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service", "foo.service"},
		{"a container scope", "/machine.slice/docker-4f1e.scope", "docker-4f1e.scope"},
		{"only slices", "/user.slice/user-1000.slice", "user-1000.slice"},
		{"outside systemd's tree", "/oomtest", ""},
		{"the root", "/", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unitOfCgroup(tt.path); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestUnitOfPath(t *testing.T) {
	tests := []struct {
		name, path, want string
		ok               bool
	}{
		{"an escaped service", "/org/freedesktop/systemd1/unit/nginx_2eservice", "nginx.service", true},
		{"a template instance with an escaped dash and at", "/org/freedesktop/systemd1/unit/getty_40tty1_2eservice", "getty@tty1.service", true},
		{"a leading digit", "/org/freedesktop/systemd1/unit/_31password_2eservice", "1password.service", true},
		{"the manager object", "/org/freedesktop/systemd1", "", false},
		{"a job", "/org/freedesktop/systemd1/job/12", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := unitOfPath(tt.path)
			if got != tt.want || ok != tt.ok {
				t.Errorf("got %q %v, want %q %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestServiceExit(t *testing.T) {
	seen := time.Unix(1700000100, 0)
	killed := map[string]any{"Result": "signal", "ExecMainCode": int32(2), "ExecMainStatus": int32(9), "ExecMainPID": uint32(1234),
		"ExecMainExitTimestamp": uint64(1700000099500000), "NRestarts": uint32(3)}
	tests := []struct {
		name      string
		unit, svc map[string]any
		ok        bool
		code, sig string
	}{
		{"SIGKILL with Restart= is an exit", map[string]any{"ActiveState": "activating", "SubState": "auto-restart"}, killed, true, "killed", "SIGKILL"},
		{"a failed unit is an exit", map[string]any{"ActiveState": "failed", "SubState": "failed"},
			map[string]any{"Result": "exit-code", "ExecMainCode": int32(1), "ExecMainStatus": int32(1)}, true, "exited", ""},
		{"a core dump names the signal", map[string]any{"ActiveState": "failed", "SubState": "failed"},
			map[string]any{"Result": "core-dump", "ExecMainCode": int32(3), "ExecMainStatus": int32(11)}, true, "dumped", "SIGSEGV"},
		{"a restart after success is no exit", map[string]any{"ActiveState": "activating", "SubState": "auto-restart"},
			map[string]any{"Result": "success", "ExecMainCode": int32(1)}, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, ok := serviceExit("web.service", true, tt.unit, tt.svc, seen)
			if ok != tt.ok {
				t.Fatalf("ok %v, want %v", ok, tt.ok)
			}
			if ok && (x.Code != tt.code || x.Signal != tt.sig) {
				t.Errorf("got code %q signal %q, want %q %q", x.Code, x.Signal, tt.code, tt.sig)
			}
		})
	}
	x, _ := serviceExit("web.service", true, map[string]any{"ActiveState": "activating", "SubState": "auto-restart"}, killed, seen)
	if x.MainPID != 1234 || x.Restarts != 3 || x.Exited == nil || !x.Exited.Equal(time.UnixMicro(1700000099500000)) {
		t.Errorf("got %+v", x)
	}
}

func TestEventFindings(t *testing.T) {
	now := time.Unix(1700000100, 0)
	var ev events
	ev.addSignal(sigRecord{Seen: now.Add(-time.Second), Sig: 9, From: "kill", FromPID: 1240, ToPID: 1234})
	ev.addSignal(sigRecord{Seen: now.Add(-time.Second), Sig: 9, Code: 128, From: "stress", FromPID: 2001, ToPID: 2001})
	restart := ServiceExit{Unit: "web.service", Watched: true, Seen: now, State: "activating", SubState: "auto-restart",
		Result: "signal", MainPID: 1234, Code: "killed", Status: 9, Signal: "SIGKILL", Restarts: 1}
	ev.addExit(restart)
	ev.addExit(restart) // the second PropertiesChanged of the same exit
	ev.addExit(ServiceExit{Unit: "db.service", Watched: true, Seen: now, State: "failed", SubState: "failed", Result: "exit-code", MainPID: 77, Code: "exited", Status: 1})
	ev.addOOM(OOMKill{Seen: now, PID: 2001, Name: "stress", AnonRSSKB: 32512, TotalVMKB: 138600, Constraint: "CONSTRAINT_MEMCG",
		Cgroup: "/system.slice/stress.service", Unit: "stress.service", Source: "kmsg"})
	ev.addOOM(OOMKill{Seen: now.Add(-time.Millisecond), Cgroup: "/system.slice/stress.service", Unit: "stress.service", Kills: 1, Source: "memory.events"})
	ev.addOOM(OOMKill{Seen: now, Cgroup: "/system.slice/other.service", Unit: "other.service", Kills: 1, Source: "memory.events"})

	sampled := []protocol.Finding{{Code: CodeProcessesServiceFailed, Severity: protocol.SeverityCrit, Source: "db.service", Message: "unit db.service failed (failed) 0s ago"}}
	exits, ooms, dropped := ev.take()
	got := eventFindings(sampled, exits, ooms, dropped)
	want := []struct{ code, source, message string }{
		{CodeProcessesServiceFailed, "db.service", "unit db.service failed (failed) 0s ago: main process 77 exited with status 1, result exit-code"},
		{CodeProcessesServiceRestarted, "web.service", "unit web.service restarted (1 restarts): main process 1234 killed by signal 9 (SIGKILL), result signal, sent by kill[1240]"},
		{CodeProcessesOOMKilled, "stress.service", "OOM killer killed stress (pid 2001) in /system.slice/stress.service: anon-rss 32 MiB, total-vm 135 MiB (its cgroup's memory limit), while stress[2001] allocated"},
		{CodeProcessesOOMKilled, "other.service", "OOM killer killed 1 process(es) in /system.slice/other.service"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d findings, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].Code != w.code || got[i].Source != w.source || got[i].Message != w.message {
			t.Errorf("finding %d: got %s %s %q\nwant %s %s %q", i, got[i].Code, got[i].Source, got[i].Message, w.code, w.source, w.message)
		}
	}

	ev.addOOM(OOMKill{Seen: now, PID: 9, Name: "late", Source: "kmsg"})
	ev.commit()
	exits, ooms, _ = ev.take()
	if len(exits) != 0 || len(ooms) != 1 || ooms[0].Name != "late" {
		t.Errorf("after commit: %d exits, ooms %+v; want only the late kill", len(exits), ooms)
	}
}
