package pkgbuild

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The MSI's component that holds the default config, and the Component
// table attributes it is given after wixl: 256 (64-bit) + 16 (permanent:
// left in place on uninstall, and so kept across a major upgrade, which
// uninstalls the old product first) + 128 (never overwritten once there).
// wixl knows neither Permanent= nor NeverOverwrite= on a Component.
const (
	msiConfigComponent  = "AgentConfig"
	msiConfigAttributes = 256 + 16 + 128
)

// The event log source's message file, as eventlog.InstallAsEventCreate
// writes it: REG_EXPAND_SZ, since it names %SystemRoot%. The Registry
// table marks that type by "#%" before the whole value (so "#%%SystemRoot%":
// Wine's msiexec, given "#%SystemRoot%", wrote "SystemRoot%"). wixl 0.101 accepts
// Type="expandable" but writes the value bare (REG_SZ), and with
// Type="string" it escapes a leading "#" as "##", so the prefix is set
// after it has run.
const (
	msiMessageFileName  = "EventMessageFile"
	msiMessageFileValue = `#%%SystemRoot%\System32\EventCreate.exe`
)

// BuildMSI builds the Windows agent's MSI from packaging/windows/guestdiag-agent.wxs
// with wixl, for the windows_amd64 agent under in.Bin, and returns its path.
func BuildMSI(ctx context.Context, in Inputs, dir string) (string, error) {
	wixl, err := exec.LookPath("wixl")
	if err != nil {
		return "", fmt.Errorf("wixl (Debian package wixl): %w", err)
	}
	msibuild, err := exec.LookPath("msibuild")
	if err != nil {
		return "", fmt.Errorf("msibuild (Debian package msitools): %w", err)
	}
	ver, err := MSIVersion(in.Version)
	if err != nil {
		return "", err
	}
	// wixl looks sources up relative to where it runs and refuses absolute
	// paths, so it runs in a directory holding copies of them.
	tmp, err := os.MkdirTemp("", "guestdiag-msi-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	for src, dst := range map[string]string{
		filepath.Join(in.Packaging, "windows", "guestdiag-agent.wxs"): "guestdiag-agent.wxs",
		filepath.Join(in.Bin, "windows_amd64", "guestdiag-agent.exe"): "guestdiag-agent.exe",
		filepath.Join(in.Packaging, "config", "agent.yaml"):           "agent.yaml",
	} {
		if err := copyFile(src, filepath.Join(tmp, dst)); err != nil {
			return "", err
		}
	}
	out := filepath.Join(tmp, "out.msi")
	if err := run(ctx, tmp, wixl, "-a", "x64", "-D", "Version="+ver, "-D", "AgentExe=guestdiag-agent.exe",
		"-D", "AgentConfig=agent.yaml", "-o", out, "guestdiag-agent.wxs"); err != nil {
		return "", err
	}
	for _, q := range []string{
		fmt.Sprintf("UPDATE `Component` SET `Attributes` = %d WHERE `Component` = '%s'", msiConfigAttributes, msiConfigComponent),
		fmt.Sprintf("UPDATE `Registry` SET `Value` = '%s' WHERE `Name` = '%s'", msiMessageFileValue, msiMessageFileName),
	} {
		if err := run(ctx, tmp, msibuild, out, "-q", q); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	name := filepath.Join(dir, fmt.Sprintf("guestdiag-agent_%s_amd64.msi", in.Version))
	if err := copyFile(out, name); err != nil {
		return "", err
	}
	return name, nil
}

func run(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", filepath.Base(name), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
