package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/guestdiag/guestdiag/internal/cli"
	"github.com/guestdiag/guestdiag/internal/version"
)

func TestUsage(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"help lists every command", []string{"help"}, cli.ExitOK, "  kb search [flags] TEXT...", ""},
		{"help names the alerts command", []string{"help"}, cli.ExitOK, "  alerts [flags]", ""},
		{"a command's -h prints its flags", []string{"alerts", "-h"}, cli.ExitOK, "", "usage: guestdiag alerts [flags]"},
		{"help CMD is CMD -h", []string{"help", "vm"}, cli.ExitOK, "", "  -host host\n"},
		{"version prints the version", []string{"version"}, cli.ExitOK, version.Version + "\n", ""},
		{"an unknown command exits 64 naming it", []string{"stauts"}, cli.ExitUsage, "", `guestdiag: unknown command "stauts"`},
		{"no command exits 64", nil, cli.ExitUsage, "", "guestdiag: missing command"},
		{"kb alone exits 64", []string{"kb"}, cli.ExitUsage, "", "guestdiag kb: missing command"},
		{"vm without a name exits 64", []string{"vm"}, cli.ExitUsage, "", "guestdiag vm: missing the VM name (see guestdiag vm -h)"},
		{"vm with two names exits 64", []string{"vm", "a", "b"}, cli.ExitUsage, "", `guestdiag vm: unexpected argument "b"`},
		{"kb lint without a directory exits 64", []string{"kb", "lint"}, cli.ExitUsage, "", "missing the directory to lint"},
		{"an unknown flag exits 64", []string{"status", "--nope"}, cli.ExitUsage, "", "flag provided but not defined: -nope"},
		{"a state alerts does not know exits 64", []string{"alerts", "--state", "open"}, cli.ExitUsage, "", `"open" is neither firing nor resolved`},
		{"a severity alerts does not know exits 64", []string{"alerts", "--severity", "high"}, cli.ExitUsage, "", `"high" is not crit, warn or info`},
		{"version takes no argument", []string{"version", "x"}, cli.ExitUsage, "", `unexpected argument "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, 0, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code: got %d, want %d; stderr: %s", code, tt.wantCode, stderr)
			}
			if !strings.Contains(stdout, tt.wantStdout) {
				t.Errorf("stdout: got %q, want it to contain %q", stdout, tt.wantStdout)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr: got %q, want it to contain %q", stderr, tt.wantStderr)
			}
		})
	}
}

func TestTheTokenIsSentAndNeverPrinted(t *testing.T) {
	t.Setenv("GUESTDIAG_TOKEN", "s3cret")
	var auth string
	api := fakeAPI(t, map[string]string{"/api/vms": "[]"})
	inner := api.Config.Handler
	api.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		inner.ServeHTTP(w, r)
	})
	if code, _, stderr := runCLI(t, 0, "status", "--api", api.URL); code != cli.ExitOK {
		t.Fatalf("exit code: got %d, want 0; stderr: %s", code, stderr)
	}
	if auth != "Bearer s3cret" {
		t.Errorf("Authorization: got %q, want the token from GUESTDIAG_TOKEN", auth)
	}
	if _, _, stderr := runCLI(t, 0, "status", "-h"); strings.Contains(stderr, "s3cret") {
		t.Errorf("status -h prints the token:\n%s", stderr)
	}
	t.Setenv("GUESTDIAG_API", api.URL)
	if code, _, stderr := runCLI(t, 0, "status", "--token", "flag"); code != cli.ExitOK || auth != "Bearer flag" {
		t.Errorf("with GUESTDIAG_API and --token: exit %d, Authorization %q; want 0 and the flag's token; stderr: %s", code, auth, stderr)
	}
}
