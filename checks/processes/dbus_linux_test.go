//go:build linux

package processes

import (
	"bufio"
	"context"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// standInManager answers as systemd's manager and one unit would: it is a
// stand-in, since this machine runs no systemd as PID 1; the real one is
// exercised in the VM lab's Debian guest.
type standInManager struct{ subscribed chan struct{} }

func (m *standInManager) Subscribe() *dbus.Error {
	close(m.subscribed)
	return nil
}

type standInService struct{}

func (standInService) GetAll(iface string) (map[string]dbus.Variant, *dbus.Error) {
	if iface != serviceIfc {
		return nil, dbus.MakeFailedError(nil)
	}
	return map[string]dbus.Variant{
		"Result": dbus.MakeVariant("signal"), "ExecMainCode": dbus.MakeVariant(int32(2)),
		"ExecMainStatus": dbus.MakeVariant(int32(9)), "ExecMainPID": dbus.MakeVariant(uint32(4321)),
		"NRestarts": dbus.MakeVariant(uint32(2)),
	}, nil
}

func TestWatchUnitsOverARealBusWithAStandInSystemd(t *testing.T) {
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Skip("dbus-daemon not installed (apt-get install dbus-daemon)")
	}
	addr := "unix:path=" + filepath.Join(t.TempDir(), "bus")
	daemon := exec.Command("dbus-daemon", "--session", "--nofork", "--print-address", "--address="+addr)
	out, err := daemon.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { daemon.Process.Kill(); daemon.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || !strings.HasPrefix(line, "unix:") {
		t.Fatalf("dbus-daemon printed %q, %v", line, err)
	}

	server, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if _, err := server.RequestName(systemdBusName, dbus.NameFlagDoNotQueue); err != nil {
		t.Fatal(err)
	}
	mgr := &standInManager{subscribed: make(chan struct{})}
	server.Export(mgr, systemdObject, "org.freedesktop.systemd1.Manager")
	unitPath := dbus.ObjectPath(unitObjectPrefix + "web_2eservice")
	server.Export(standInService{}, unitPath, "org.freedesktop.DBus.Properties")

	cfg := DefaultConfig()
	cfg.Units = []string{"web"}
	p := newCheck(cfg, &fake{}, slog.New(slog.DiscardHandler))
	testBusAddress = addr
	t.Cleanup(func() { testBusAddress = "" })
	ctx, cancel := context.WithCancel(context.Background())
	triggered := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- p.watchUnits(ctx, func() {
			select {
			case triggered <- struct{}{}:
			default:
			}
		})
	}()
	select {
	case <-mgr.subscribed:
	case err := <-done:
		t.Fatalf("watchUnits returned %v before subscribing", err)
	case <-time.After(5 * time.Second):
		t.Fatal("watchUnits did not call Subscribe")
	}
	// The match rule is added before Subscribe, so the signal is routed.
	start := time.Now()
	if err := server.Emit(unitPath, propsChanged, unitInterface, map[string]dbus.Variant{
		"ActiveState": dbus.MakeVariant("activating"), "SubState": dbus.MakeVariant("auto-restart"),
	}, []string{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-triggered:
	case <-time.After(2 * time.Second):
		t.Fatal("no trigger within 2 s of the signal")
	}
	t.Logf("signal to trigger: %s", time.Since(start).Round(time.Microsecond))
	exits, _, _ := p.ev.take()
	if len(exits) != 1 || exits[0].Unit != "web.service" || !exits[0].Watched || exits[0].Signal != "SIGKILL" || exits[0].MainPID != 4321 || exits[0].Restarts != 2 {
		t.Errorf("exits %+v, want web.service killed by SIGKILL", exits)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("watchUnits returned %v after cancel", err)
	}
}
