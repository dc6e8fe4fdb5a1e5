package checks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"

	"golang.org/x/sys/windows"
	winreg "golang.org/x/sys/windows/registry"
)

// fwWindows reads the Windows firewall's profiles and rules from the
// registry: the local store under FirewallPolicy and the Group Policy store
// under SOFTWARE\Policies, which wins where it sets a value.
type fwWindows struct {
	logger *slog.Logger
}

func fwNewSource(logger *slog.Logger) fwSource { return &fwWindows{logger: logger} }

func (s *fwWindows) gather(ctx context.Context) (fwGathered, error) {
	root, err := winreg.OpenKey(winreg.LOCAL_MACHINE, fwWinLocalKey, winreg.QUERY_VALUE)
	if err != nil {
		return fwGathered{}, fmt.Errorf(`open HKLM\%s: %w`, fwWinLocalKey, err)
	}
	root.Close()

	local := make([]fwWinValues, len(fwWinProfileKeys))
	policy := make([]fwWinValues, len(fwWinProfileKeys))
	for i, p := range fwWinProfileKeys {
		if local[i], err = fwWinReadValues(fwWinLocalKey + `\` + p.localKey); err != nil {
			return fwGathered{}, err
		}
		if policy[i], err = fwWinReadValues(fwWinPolicyKey + `\` + p.policyKey); err != nil {
			return fwGathered{}, err
		}
	}
	localRules, err := fwWinReadRules(fwWinLocalKey + `\FirewallRules`)
	if err != nil {
		return fwGathered{}, err
	}
	policyRules, err := fwWinReadRules(fwWinPolicyKey + `\FirewallRules`)
	if err != nil {
		return fwGathered{}, err
	}
	if err := ctx.Err(); err != nil {
		return fwGathered{}, err
	}
	profiles := fwWinEffective(local, policy)
	return fwGathered{
		chains:   fwWinChains(profiles, localRules, policyRules),
		sources:  []string{"registry"},
		profiles: profiles,
	}, nil
}

// fwWinReadValues reads EnableFirewall and DefaultInboundAction of one
// profile key; a missing key or value is nil.
func fwWinReadValues(path string) (fwWinValues, error) {
	k, err := winreg.OpenKey(winreg.LOCAL_MACHINE, path, winreg.QUERY_VALUE)
	if errors.Is(err, winreg.ErrNotExist) {
		return fwWinValues{}, nil
	}
	if err != nil {
		return fwWinValues{}, fmt.Errorf(`open HKLM\%s: %w`, path, err)
	}
	defer k.Close()
	var v fwWinValues
	for _, f := range []struct {
		name string
		dst  **uint32
	}{{"EnableFirewall", &v.EnableFirewall}, {"DefaultInboundAction", &v.DefaultInboundAction}} {
		n, _, err := k.GetIntegerValue(f.name)
		if errors.Is(err, winreg.ErrNotExist) {
			continue
		}
		if err != nil {
			return fwWinValues{}, fmt.Errorf(`read HKLM\%s\%s: %w`, path, f.name, err)
		}
		x := uint32(n)
		*f.dst = &x
	}
	return v, nil
}

// fwWinReadRules reads every string value of a FirewallRules key; a
// missing key has no rules.
func fwWinReadRules(path string) (map[string]string, error) {
	k, err := winreg.OpenKey(winreg.LOCAL_MACHINE, path, winreg.QUERY_VALUE)
	if errors.Is(err, winreg.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf(`open HKLM\%s: %w`, path, err)
	}
	defer k.Close()
	names, err := k.ReadValueNames(0)
	if err != nil {
		return nil, fmt.Errorf(`list HKLM\%s: %w`, path, err)
	}
	rules := make(map[string]string, len(names))
	for _, n := range names {
		v, _, err := k.GetStringValue(n)
		if err != nil {
			continue // not a string: not a rule
		}
		rules[n] = v
	}
	return rules, nil
}

// watch waits for registry change notifications on the local firewall key
// and the Group Policy key (or, while Group Policy has no firewall key, on
// its parent), whole subtrees, and triggers on each.
func (s *fwWindows) watch(ctx context.Context, trigger func()) error {
	// An asynchronous notification ends with the thread that asked for it
	// (before Windows 8), so this goroutine keeps its thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	paths := []string{fwWinLocalKey, fwWinPolicyKey}
	var keys []winreg.Key
	defer func() {
		for _, k := range keys {
			k.Close()
		}
	}()
	for _, p := range paths {
		k, err := winreg.OpenKey(winreg.LOCAL_MACHINE, p, winreg.NOTIFY)
		if errors.Is(err, winreg.ErrNotExist) && p == fwWinPolicyKey {
			k, err = winreg.OpenKey(winreg.LOCAL_MACHINE, `SOFTWARE\Policies\Microsoft`, winreg.NOTIFY)
		}
		if err != nil {
			return fmt.Errorf(`watch HKLM\%s: %w`, p, err)
		}
		keys = append(keys, k)
	}

	events := make([]windows.Handle, 0, len(keys)+1)
	defer func() {
		for _, h := range events {
			windows.CloseHandle(h)
		}
	}()
	for range len(keys) + 1 { // one per key, and one for ctx
		h, err := windows.CreateEvent(nil, 0, 0, nil)
		if err != nil {
			return fmt.Errorf("create event: %w", err)
		}
		events = append(events, h)
	}
	cancelled := events[len(keys)]
	stop := context.AfterFunc(ctx, func() { windows.SetEvent(cancelled) })
	defer stop()

	arm := func(i int) error {
		const filter = windows.REG_NOTIFY_CHANGE_NAME | windows.REG_NOTIFY_CHANGE_LAST_SET
		if err := windows.RegNotifyChangeKeyValue(windows.Handle(keys[i]), true, filter, events[i], true); err != nil {
			return fmt.Errorf(`watch HKLM\%s: %w`, paths[i], err)
		}
		return nil
	}
	for i := range keys {
		if err := arm(i); err != nil {
			return err
		}
	}
	for {
		r, err := windows.WaitForMultipleObjects(events, false, windows.INFINITE)
		if err != nil {
			return fmt.Errorf("wait for registry changes: %w", err)
		}
		i := int(r - windows.WAIT_OBJECT_0)
		if i < 0 || i >= len(events) {
			return fmt.Errorf("wait for registry changes: unexpected result %#x", r)
		}
		if events[i] == cancelled {
			return nil
		}
		if err := arm(i); err != nil {
			return err
		}
		trigger()
	}
}
