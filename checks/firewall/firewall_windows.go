package firewall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"

	"golang.org/x/sys/windows"
	winreg "golang.org/x/sys/windows/registry"
)

// windowsSource reads the Windows firewall's profiles and rules from the
// registry: the local store under FirewallPolicy and the Group Policy store
// under SOFTWARE\Policies, which wins where it sets a value.
type windowsSource struct {
	logger *slog.Logger
}

func newSource(logger *slog.Logger) source { return &windowsSource{logger: logger} }

func (s *windowsSource) gather(ctx context.Context) (gathered, error) {
	root, err := winreg.OpenKey(winreg.LOCAL_MACHINE, winLocalKey, winreg.QUERY_VALUE)
	if err != nil {
		return gathered{}, fmt.Errorf(`open HKLM\%s: %w`, winLocalKey, err)
	}
	root.Close()

	local := make([]winValues, len(winProfileKeys))
	policy := make([]winValues, len(winProfileKeys))
	for i, p := range winProfileKeys {
		if local[i], err = winReadValues(winLocalKey + `\` + p.localKey); err != nil {
			return gathered{}, err
		}
		if policy[i], err = winReadValues(winPolicyKey + `\` + p.policyKey); err != nil {
			return gathered{}, err
		}
	}
	localRules, err := winReadRules(winLocalKey + `\FirewallRules`)
	if err != nil {
		return gathered{}, err
	}
	policyRules, err := winReadRules(winPolicyKey + `\FirewallRules`)
	if err != nil {
		return gathered{}, err
	}
	if err := ctx.Err(); err != nil {
		return gathered{}, err
	}
	profiles := winEffective(local, policy)
	return gathered{
		chains:   winChains(profiles, localRules, policyRules),
		sources:  []string{"registry"},
		profiles: profiles,
	}, nil
}

// winReadValues reads EnableFirewall and DefaultInboundAction of one
// profile key; a missing key or value is nil.
func winReadValues(path string) (winValues, error) {
	k, err := winreg.OpenKey(winreg.LOCAL_MACHINE, path, winreg.QUERY_VALUE)
	if errors.Is(err, winreg.ErrNotExist) {
		return winValues{}, nil
	}
	if err != nil {
		return winValues{}, fmt.Errorf(`open HKLM\%s: %w`, path, err)
	}
	defer k.Close()
	var v winValues
	for _, f := range []struct {
		name string
		dst  **uint32
	}{{"EnableFirewall", &v.EnableFirewall}, {"DefaultInboundAction", &v.DefaultInboundAction}} {
		n, _, err := k.GetIntegerValue(f.name)
		if errors.Is(err, winreg.ErrNotExist) {
			continue
		}
		if err != nil {
			return winValues{}, fmt.Errorf(`read HKLM\%s\%s: %w`, path, f.name, err)
		}
		x := uint32(n)
		*f.dst = &x
	}
	return v, nil
}

// winReadRules reads every string value of a FirewallRules key; a
// missing key has no rules.
func winReadRules(path string) (map[string]string, error) {
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
func (s *windowsSource) watch(ctx context.Context, trigger func()) error {
	// An asynchronous notification ends with the thread that asked for it
	// (before Windows 8), so this goroutine keeps its thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	paths := []string{winLocalKey, winPolicyKey}
	var keys []winreg.Key
	defer func() {
		for _, k := range keys {
			k.Close()
		}
	}()
	for _, p := range paths {
		k, err := winreg.OpenKey(winreg.LOCAL_MACHINE, p, winreg.NOTIFY)
		if errors.Is(err, winreg.ErrNotExist) && p == winPolicyKey {
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
