package software

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/windows"
	winreg "golang.org/x/sys/windows/registry"
)

// views are the two views of HKLM\SOFTWARE a 64-bit process sees:
// its own, and the one 32-bit installers write to (WOW6432Node).
var views = []struct {
	arch string
	flag uint32
}{
	{"x64", winreg.WOW64_64KEY},
	{"x86", winreg.WOW64_32KEY},
}

// gatherOS reads the Uninstall key of HKLM in both registry views, which is
// what Programs and Features lists. Per-user installs under HKCU are left
// out: the agent runs as LocalSystem, whose HKCU nobody installs into.
func (s *Software) gatherOS(ctx context.Context) ([]database, error) {
	var pkgs []pkg
	for _, v := range views {
		entries, err := readUninstall(ctx, v.flag)
		if errors.Is(err, winreg.ErrNotExist) && v.arch == "x86" {
			continue // a 32-bit Windows has no second view
		}
		if err != nil {
			return nil, fmt.Errorf("read HKLM\\%s (%s view): %w", uninstallKey, v.arch, err)
		}
		pkgs = append(pkgs, uninstallPackages(entries, v.arch)...)
	}
	return []database{{Source: SourceWindows, Path: `HKLM\` + uninstallKey, Packages: pkgs}}, nil
}

func readUninstall(ctx context.Context, view uint32) ([]regEntry, error) {
	k, err := winreg.OpenKey(winreg.LOCAL_MACHINE, uninstallKey, winreg.ENUMERATE_SUB_KEYS|winreg.QUERY_VALUE|view)
	if err != nil {
		return nil, err
	}
	defer k.Close()
	subs, err := k.ReadSubKeyNames(-1)
	if err != nil {
		return nil, err
	}
	entries := make([]regEntry, 0, len(subs))
	for _, sub := range subs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sk, err := winreg.OpenKey(k, sub, winreg.QUERY_VALUE|view)
		if err != nil {
			continue // removed while we listed, or locked down: not a program we can name
		}
		e := regEntry{Key: sub, Values: map[string]string{}}
		for _, name := range []string{"DisplayName", "DisplayVersion", "Publisher", "InstallDate", "ParentKeyName"} {
			if v, _, err := sk.GetStringValue(name); err == nil {
				e.Values[strings.ToLower(name)] = v
			}
		}
		if v, _, err := sk.GetIntegerValue("SystemComponent"); err == nil {
			e.Values["systemcomponent"] = strconv.FormatUint(v, 10)
		}
		sk.Close()
		entries = append(entries, e)
	}
	return entries, nil
}

// Watch triggers a run when a program is installed, changed or removed:
// RegNotifyChangeKeyValue on the Uninstall key of both views signals an
// event, and the notification is armed again after each.
func (s *Software) Watch(ctx context.Context, trigger func()) error {
	// Registrations belong to the calling thread unless thread agnostic,
	// which older Windows lacks; stay on one thread either way.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	stop, err := windows.CreateEvent(nil, 1, 0, nil)
	if err != nil {
		return fmt.Errorf("software: create event: %w", err)
	}
	defer windows.CloseHandle(stop)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			windows.SetEvent(stop)
		case <-done:
		}
	}()

	var keys []winreg.Key
	handles := []windows.Handle{stop}
	defer func() {
		for _, k := range keys {
			k.Close()
		}
		for _, h := range handles[1:] {
			windows.CloseHandle(h)
		}
	}()
	for _, v := range views {
		k, err := winreg.OpenKey(winreg.LOCAL_MACHINE, uninstallKey, winreg.NOTIFY|v.flag)
		if err != nil {
			s.logger.Warn("software_watch_failed", "view", v.arch, "err", err)
			continue
		}
		ev, err := windows.CreateEvent(nil, 0, 0, nil)
		if err != nil {
			k.Close()
			return fmt.Errorf("software: create event: %w", err)
		}
		keys = append(keys, k)
		handles = append(handles, ev)
	}
	if len(keys) == 0 {
		return errors.New("software: no Uninstall key to watch")
	}
	arm := func(i int) error {
		const filter = windows.REG_NOTIFY_CHANGE_NAME | windows.REG_NOTIFY_CHANGE_LAST_SET
		if err := windows.RegNotifyChangeKeyValue(windows.Handle(keys[i]), true, filter, handles[i+1], true); err != nil {
			return fmt.Errorf("software: RegNotifyChangeKeyValue: %w", err)
		}
		return nil
	}
	for i := range keys {
		if err := arm(i); err != nil {
			return err
		}
	}
	for {
		ev, err := windows.WaitForMultipleObjects(handles, false, windows.INFINITE)
		if err != nil {
			return fmt.Errorf("software: wait for registry change: %w", err)
		}
		i := int(ev - windows.WAIT_OBJECT_0)
		if i == 0 || ctx.Err() != nil {
			return nil
		}
		if i < 1 || i >= len(handles) {
			return fmt.Errorf("software: unexpected wait result %#x", ev)
		}
		trigger()
		if err := arm(i - 1); err != nil {
			return err
		}
	}
}
