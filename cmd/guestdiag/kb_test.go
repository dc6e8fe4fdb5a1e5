package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/guestdiag/guestdiag/internal/cli"
)

const goodKB = `- id: ops.win.billing_crash
  title: Our billing service crashed
  match:
    os: windows
    channel: Application
    provider: Application Error
    event_id: 1000
    pattern: 'billing\.exe'
  severity: crit
  cause: >-
    The billing service crashes
    when its license server is away.
  resolution:
    - Check the license server with ` + "`Test-NetConnection lic01 -Port 27000`" + `.
    - Restart the service with ` + "`Restart-Service Billing`" + `.
  samples:
    - message: 'Faulting application name: billing.exe, version: 2.3.1.0'
- id: ops.myapp.pool_exhausted
  title: myapp ran out of database connections
  match:
    os: linux
    unit: myapp
    pattern: 'connection pool exhausted \(size \d+\)'
  severity: warn
  cause: The pool is sized for 20 workers.
  resolution:
    - Restart myapp with ` + "`systemctl restart myapp`" + `.
  samples:
    - message: 'connection pool exhausted (size 20)'
`

// brokenKB has a bad severity on line 6 and an unknown key on line 12.
const brokenKB = `- id: ops.broken.severity
  title: A severity that does not exist
  match:
    code: net.dns_failure
  cause: Something.
  severity: fatal
  resolution:
    - Do something.
  samples:
    - message: hello
- id: ops.broken.key
  colour: red
  title: An unknown key
  match:
    code: net.dns_failure
  severity: warn
  cause: Something.
  resolution:
    - Do something.
  samples:
    - message: hello
`

func kbDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestKBLint(t *testing.T) {
	good := kbDir(t, map[string]string{"ops.yaml": goodKB})
	mixed := kbDir(t, map[string]string{"good.yaml": goodKB, "broken.yaml": brokenKB})
	other := kbDir(t, map[string]string{"again.yml": goodKB})
	tests := []struct {
		name       string
		dirs       []string
		wantCode   int
		wantStdout []string
	}{
		{"a good directory", []string{good}, cli.ExitOK, []string{"2 entries OK\n"}},
		{"a broken file among good ones", []string{mixed}, cli.ExitFailed, []string{
			filepath.Join(mixed, "broken.yaml") + `:6: entry "ops.broken.severity": severity: "fatal"`,
			filepath.Join(mixed, "broken.yaml") + `:12: entry "ops.broken.key": colour:`,
		}},
		{"the same id in two directories", []string{good, other}, cli.ExitFailed, []string{
			filepath.Join(other, "again.yml") + `:1: entry "ops.win.billing_crash": id: already defined in ` + filepath.Join(good, "ops.yaml"),
		}},
		{"a directory that does not exist", []string{filepath.Join(good, "nope")}, cli.ExitFailed, []string{"nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, 0, append([]string{"kb", "lint"}, tt.dirs...)...)
			if code != tt.wantCode {
				t.Errorf("exit code: got %d, want %d; stdout:\n%s\nstderr:\n%s", code, tt.wantCode, stdout, stderr)
			}
			for _, want := range tt.wantStdout {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout:\n%s\nwant it to contain %q", stdout, want)
				}
			}
			if tt.wantCode == cli.ExitOK && stderr != "" {
				t.Errorf("stderr: got %q, want nothing", stderr)
			}
			if tt.wantCode != cli.ExitOK && !strings.Contains(stderr, "error") {
				t.Errorf("stderr: got %q, want the count of errors", stderr)
			}
		})
	}
}

func TestKBSearch(t *testing.T) {
	dir := kbDir(t, map[string]string{"ops.yaml": goodKB})
	broken := kbDir(t, map[string]string{"ops.yaml": goodKB, "broken.yaml": brokenKB})
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string
		wantStderr string
	}{
		{"an operator entry by its event id", []string{"-kb-dir", dir, "1000"}, cli.ExitOK,
			[]string{"ops.win.billing_crash  crit  Our billing service crashed\n  match: os windows, channel Application, provider Application Error, event id 1000, pattern billing\\\\.exe\n"}, ""},
		{"an operator entry by words, with -v after them", []string{"database", "connections", "-v", "-kb-dir", dir}, cli.ExitOK,
			[]string{"ops.myapp.pool_exhausted  warn  myapp ran out of database connections\n", "  cause: The pool is sized for 20 workers.\n", "    1. Restart myapp with `systemctl restart myapp`.\n"}, ""},
		{"a folded cause reads as one paragraph", []string{"-v", "-kb-dir", dir, "billing"}, cli.ExitOK,
			[]string{"  cause: The billing service crashes when its license server is away.\n", "    2. Restart the service"}, ""},
		{"a shipped entry by its event id", []string{"7000"}, cli.ExitOK, []string{"win.scm.7000  warn  A service failed to start\n  match: os windows, channel System, provider Service Control Manager, event id 7000\n"}, ""},
		{"a shipped entry by words", []string{"oom", "killer"}, cli.ExitOK, []string{"linux.memory.oom_kill  crit"}, ""},
		{"a shipped entry by its finding code", []string{"net.dns_failure"}, cli.ExitOK, []string{"guestdiag.net.dns_failure  warn"}, ""},
		{"a broken operator file is skipped and said", []string{"-kb-dir", broken, "billing"}, cli.ExitOK,
			[]string{"ops.win.billing_crash"}, "guestdiag kb search: skipped: " + filepath.Join(broken, "broken.yaml") + ":6"},
		{"nothing matches", []string{"-kb-dir", dir, "no-such-thing-anywhere"}, cli.ExitFailed, nil, "no entry matches no-such-thing-anywhere"},
		{"no text is a usage error", []string{"-v"}, cli.ExitUsage, nil, "missing the text to search for"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, 0, append([]string{"kb", "search"}, tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("exit code: got %d, want %d; stderr: %s", code, tt.wantCode, stderr)
			}
			for _, want := range tt.wantStdout {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout:\n%s\nwant it to contain %q", stdout, want)
				}
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr: got %q, want it to contain %q", stderr, tt.wantStderr)
			}
			onlyPrintable(t, stdout)
		})
	}
}
