//go:build linux

package processes

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/godbus/dbus/v5"
)

const (
	systemdBusName  = "org.freedesktop.systemd1"
	systemdObject   = "/org/freedesktop/systemd1"
	systemdPrivate  = "/run/systemd/private"
	propsChanged    = "org.freedesktop.DBus.Properties.PropertiesChanged"
	unitInterface   = "org.freedesktop.systemd1.Unit"
	serviceIfc      = "org.freedesktop.systemd1.Service"
	propsCallLimit  = 2 * time.Second
	signalQueueSize = 256
)

// watchUnits follows systemd's PropertiesChanged signals of units. systemd
// sends them only to clients that called Manager.Subscribe; on the system
// bus a match rule is needed as well, on its private socket (root, no
// dbus-daemon needed) every signal comes to the subscriber anyway. A unit
// that fails, or whose main process ended badly and that systemd will
// restart, is asked for its service properties and recorded.
func (p *Processes) watchUnits(ctx context.Context, trigger func()) error {
	if len(p.cfg.Units) == 0 && !p.cfg.FailedUnits {
		return nil
	}
	conn, bus, err := p.dialSystemd(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch := make(chan *dbus.Signal, signalQueueSize)
	conn.Signal(ch)
	if bus {
		if err := conn.AddMatchSignalContext(ctx, dbus.WithMatchInterface("org.freedesktop.DBus.Properties"),
			dbus.WithMatchMember("PropertiesChanged"), dbus.WithMatchPathNamespace(systemdObject+"/unit")); err != nil {
			return fmt.Errorf("add match for unit signals: %w", err)
		}
	}
	manager := conn.Object(systemdBusName, systemdObject)
	if err := manager.CallWithContext(ctx, "org.freedesktop.systemd1.Manager.Subscribe", 0).Err; err != nil {
		return fmt.Errorf("subscribe to systemd: %w", err)
	}
	watched := map[string]bool{}
	for _, n := range p.cfg.Units {
		watched[systemdUnitName(n)] = true
	}
	for {
		var sig *dbus.Signal
		select {
		case <-ctx.Done():
			return nil
		case sig = <-ch:
		}
		if sig == nil {
			return fmt.Errorf("systemd connection closed")
		}
		unit, changed, ok := unitChange(sig)
		if !ok || !exitWorthAsking(changed) || !watched[unit] && !p.cfg.FailedUnits {
			continue
		}
		seen := time.Now()
		cctx, cancel := context.WithTimeout(ctx, propsCallLimit)
		var svc map[string]dbus.Variant
		err := conn.Object(systemdBusName, sig.Path).CallWithContext(cctx, "org.freedesktop.DBus.Properties.GetAll", 0, serviceIfc).Store(&svc)
		cancel()
		if err == nil {
			if x, ok := serviceExit(unit, watched[unit], changed, plain(svc), seen); ok {
				p.ev.addExit(x)
			}
		}
		// Not a service, or gone already: the run still lists it if failed.
		trigger()
	}
}

// unitChange reads a PropertiesChanged signal of a unit's Unit interface.
func unitChange(sig *dbus.Signal) (string, map[string]any, bool) {
	if sig.Name != propsChanged || len(sig.Body) < 2 {
		return "", nil, false
	}
	if iface, _ := sig.Body[0].(string); iface != unitInterface {
		return "", nil, false
	}
	props, ok := sig.Body[1].(map[string]dbus.Variant)
	if !ok {
		return "", nil, false
	}
	unit, ok := unitOfPath(string(sig.Path))
	return unit, plain(props), ok
}

func plain(m map[string]dbus.Variant) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v.Value()
	}
	return out
}

// dialSystemd connects to systemd's private socket when it can (root),
// which works without a D-Bus daemon, and to the system bus otherwise.
// bus says which.
func (p *Processes) dialSystemd(ctx context.Context) (conn *dbus.Conn, bus bool, err error) {
	addr := testBusAddress
	if addr == "" {
		if _, err := os.Stat("/run/systemd/system"); err != nil {
			return nil, false, fmt.Errorf("systemd is not running (/run/systemd/system absent): %w", errNoManager)
		}
		if os.Geteuid() == 0 {
			if _, err := os.Stat(systemdPrivate); err == nil {
				addr = "unix:path=" + systemdPrivate
			}
		}
	}
	if addr != "" && addr == "unix:path="+systemdPrivate {
		c, err := dbus.Dial(addr, dbus.WithContext(ctx))
		if err != nil {
			return nil, false, fmt.Errorf("dial %s: %w", systemdPrivate, err)
		}
		if err := c.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Geteuid()))}); err != nil {
			c.Close()
			return nil, false, fmt.Errorf("authenticate on %s: %w", systemdPrivate, err)
		}
		return c, false, nil
	}
	if addr != "" {
		c, err := dbus.Connect(addr, dbus.WithContext(ctx))
		if err != nil {
			return nil, false, fmt.Errorf("connect to %s: %w", addr, err)
		}
		return c, true, nil
	}
	c, err := dbus.ConnectSystemBus(dbus.WithContext(ctx))
	if err != nil {
		return nil, false, fmt.Errorf("connect to the system bus: %w", err)
	}
	return c, true, nil
}

// exitWorthAsking says whether the changed properties of a unit (its
// org.freedesktop.systemd1.Unit interface) show its main process ending
// badly: the unit failed, or systemd waits to restart it.
func exitWorthAsking(changed map[string]any) bool {
	active, _ := changed["ActiveState"].(string)
	sub, _ := changed["SubState"].(string)
	return active == "failed" || sub == "auto-restart"
}
