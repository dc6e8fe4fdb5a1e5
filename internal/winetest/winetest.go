package winetest

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Tools the harness needs, at Debian's paths.
const (
	// Wine64 is the loader: Debian's wine64 package puts no wine64 on PATH.
	Wine64     = "/usr/lib/wine/wine64"
	Wineserver = "/usr/lib/wine/wineserver"
	MinGW      = "x86_64-w64-mingw32-gcc"
)

//go:embed testdata/processprng.c
var processPrngC []byte

// Enabled says whether Wine tests should run: they start Wine, which takes
// seconds per prefix, so `go test ./...` skips them unless
// GUESTDIAG_VMLAB (1 or require), GUESTDIAG_WINE=1 or
// GUESTDIAG_REQUIRE_WINE=1 is set.
func Enabled() bool {
	return required() || os.Getenv("GUESTDIAG_VMLAB") == "1" || os.Getenv("GUESTDIAG_WINE") == "1"
}

// required says whether missing tools fail the test instead of skipping it.
func required() bool {
	return os.Getenv("GUESTDIAG_VMLAB") == "require" || os.Getenv("GUESTDIAG_REQUIRE_WINE") == "1"
}

// Require skips t unless the Wine tests are enabled and Wine, wineserver,
// MinGW and go are there; when they are required it fails instead.
func Require(t testing.TB) {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("Wine tests run on linux/amd64, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	if !Enabled() {
		t.Skip("runs windows/amd64 builds under Wine; enable with GUESTDIAG_WINE=1 (or GUESTDIAG_VMLAB=1) on a Debian host with wine64 and gcc-mingw-w64-x86-64-win32 (scripts/deps.sh installs them)")
	}
	var missing []string
	for _, p := range []string{Wine64, Wineserver} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p+" (apt-get install wine64)")
		}
	}
	if _, err := exec.LookPath(MinGW); err != nil {
		missing = append(missing, MinGW+" (apt-get install gcc-mingw-w64-x86-64-win32)")
	}
	if _, err := exec.LookPath("go"); err != nil {
		missing = append(missing, "go")
	}
	if len(missing) == 0 {
		return
	}
	msg := "Wine tests need " + strings.Join(missing, ", ")
	if required() {
		t.Fatal(msg + "; GUESTDIAG_VMLAB=require or GUESTDIAG_REQUIRE_WINE=1 says they must run")
	}
	t.Skip(msg)
}

// Prefix is a fresh Wine prefix with its own wineserver, kept running for
// the test and killed at its end.
type Prefix struct {
	Dir string
	t   testing.TB
	env []string
	// netns, when set, is the network namespace every process of the
	// prefix runs in, the wineserver included.
	netns string
	// bootLog is the stderr file of the last Reboot's wineboot.
	bootLog string
}

// Setenv sets an environment variable for the commands that follow, for
// example WINEDEBUG=-all,+eventlog, which makes Wine's ReportEventW (whose
// event log keeps nothing readable) trace each event to stderr.
func (p *Prefix) Setenv(key, value string) {
	p.env = append(p.env, key+"="+value)
}

// BootLog returns what the processes started by the last Reboot wrote to
// stderr so far: services.exe and the services it starts inherit the
// stderr of the wineboot that started them.
func (p *Prefix) BootLog() string {
	b, _ := os.ReadFile(p.bootLog)
	return string(b)
}

// NewPrefix makes a prefix in t.TempDir(), initialises it with wineboot,
// and installs the ProcessPrng stand-in as system32\bcryptprimitives.dll.
// Without it, Go 1.22 and later programs die at start under Wine 8 with
// "bcryptprimitives.dll not found".
func NewPrefix(t testing.TB) *Prefix {
	t.Helper()
	return newPrefix(t, "")
}

// NewPrefixInNetns is NewPrefix with every process of the prefix in the
// network namespace netns, which the caller made. All of them, because
// Wine answers network calls (routes, adapters, ICMP) in winedevice.exe's
// nsiproxy.sys, a process of its own, not in the caller.
func NewPrefixInNetns(t testing.TB, netns string) *Prefix {
	t.Helper()
	return newPrefix(t, netns)
}

func newPrefix(t testing.TB, netns string) *Prefix {
	t.Helper()
	Require(t)
	dir := filepath.Join(t.TempDir(), "prefix")
	p := &Prefix{Dir: dir, t: t, netns: netns, env: append(os.Environ(),
		"WINEPREFIX="+dir, "WINEDEBUG=-all", "WINEDLLOVERRIDES=mscoree,mshtml=",
		// No display: Wine must not try to open windows.
		"DISPLAY=")}
	start := time.Now()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// -p keeps the wineserver up between the test's commands, so the
	// prefix is not shut down and "booted" again (which would also start
	// automatic services) at unpredictable moments.
	t.Cleanup(p.Kill)
	if r := p.Run(time.Minute, Wineserver, "-p"); r.Exit != 0 {
		t.Fatalf("wineserver -p: %v", r)
	}
	if r := p.Run(3*time.Minute, "wineboot", "-i"); r.Exit != 0 {
		t.Fatalf("wineboot -i: %v", r)
	}
	// Wine's first boot of a prefix leaves two services.exe behind, and a
	// service created then is known to one only (OpenService in the next
	// command says it does not exist). A second boot starts from one.
	p.Reboot()
	t.Logf("wine prefix %s initialised in %v", dir, time.Since(start).Round(time.Millisecond))
	dll := filepath.Join(dir, "drive_c", "windows", "system32", "bcryptprimitives.dll")
	buildDLL(t, dll)
	return p
}

// Kill ends the prefix's wineserver and every process of the prefix, and
// waits for them.
func (p *Prefix) Kill() {
	// Status 1 means no server was running, which is what we want.
	if r := p.Run(time.Minute, Wineserver, "-k"); r.Exit > 1 {
		p.t.Logf("wineserver -k: %v", r)
	}
	p.Run(time.Minute, Wineserver, "-w")
	p.killStrays()
}

// killStrays kills what wineserver -k missed: a Wine process that was
// still starting when its server went (seen: a winedevice.exe left
// waiting on a pipe for ever). They are found by the prefix in their
// environment, which only this test's processes carry, and killed by pid.
func (p *Prefix) killStrays() {
	want := []byte("WINEPREFIX=" + p.Dir + "\x00")
	procs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, f := range procs {
		env, err := os.ReadFile(f)
		if err != nil || !bytes.Contains(append(env, 0), want) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if proc, err := os.FindProcess(pid); err == nil {
			p.t.Logf("killing Wine process %d left behind in %s", pid, p.Dir)
			proc.Kill()
		}
	}
}

// Reboot ends every process of the prefix and boots it again, as wineboot
// does at a first start: Wine's service manager then starts the services
// whose start type is automatic.
func (p *Prefix) Reboot() {
	p.t.Helper()
	p.Kill()
	if r := p.Run(time.Minute, Wineserver, "-p"); r.Exit != 0 {
		p.t.Fatalf("wineserver -p: %v", r)
	}
	r := p.Run(3*time.Minute, "wineboot")
	if r.Exit != 0 {
		p.t.Fatalf("wineboot: %v", r)
	}
	p.bootLog = r.stderrFile
}

func (p *Prefix) cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	if p.netns != "" {
		name, args = "ip", append([]string{"netns", "exec", p.netns, name}, args...)
	}
	c := exec.CommandContext(ctx, name, args...)
	c.Env = p.env
	c.WaitDelay = 5 * time.Second
	return c
}

// Command returns a command that runs exe (a host path, or a program Wine
// knows such as "reg" or "net") under wine64 in the prefix.
func (p *Prefix) Command(ctx context.Context, exe string, args ...string) *exec.Cmd {
	return p.cmd(ctx, Wine64, append([]string{exe}, args...)...)
}

// Result is what one run under Wine printed and how it ended.
type Result struct {
	Stdout, Stderr string
	Exit           int
	Took           time.Duration
	stderrFile     string
}

// Run runs exe with args under wine64 (or Wineserver itself) and waits up
// to timeout. A run that cannot start or is killed by the timeout fails the
// test; a non-zero exit status does not (it is in Result.Exit).
//
// Output goes through files, not pipes: Wine's helper processes
// (services.exe, the wineserver) inherit them and outlive the command, and
// a pipe would keep the wait open until they end.
func (p *Prefix) Run(timeout time.Duration, exe string, args ...string) Result {
	p.t.Helper()
	return p.RunIn("", timeout, exe, args...)
}

// RunIn is Run in the working directory dir (a host path; "" keeps the
// test's), as a test executable needs to find its testdata.
func (p *Prefix) RunIn(dir string, timeout time.Duration, exe string, args ...string) Result {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := p.Command(ctx, exe, args...)
	if exe == Wineserver {
		c = p.cmd(ctx, Wineserver, args...)
	}
	c.Dir = dir
	stdout, stderr := p.outFile("stdout"), p.outFile("stderr")
	defer stdout.Close()
	defer stderr.Close()
	c.Stdout, c.Stderr = stdout, stderr
	start := time.Now()
	err := c.Run()
	r := Result{Stdout: readBack(stdout), Stderr: readBack(stderr), Took: time.Since(start), stderrFile: stderr.Name()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		p.t.Fatalf("wine64 %s %s: no end within %v\nstdout: %s\nstderr: %s", filepath.Base(exe), strings.Join(args, " "), timeout, r.Stdout, r.Stderr)
	case errors.As(err, &ee):
		r.Exit = ee.ExitCode()
	case err != nil:
		p.t.Fatalf("wine64 %s: %v", filepath.Base(exe), err)
	}
	return r
}

func (p *Prefix) outFile(name string) *os.File {
	f, err := os.CreateTemp(p.t.TempDir(), name)
	if err != nil {
		p.t.Fatal(err)
	}
	return f
}

func readBack(f *os.File) string {
	b, _ := os.ReadFile(f.Name())
	return string(b)
}

// HostPath returns where the Windows path C:\... lies on this machine.
func (p *Prefix) HostPath(winPath string) string {
	rest, ok := strings.CutPrefix(winPath, `C:\`)
	if !ok {
		p.t.Fatalf("HostPath(%q): only C:\\ paths lie in the prefix", winPath)
	}
	return filepath.Join(p.Dir, "drive_c", filepath.FromSlash(strings.ReplaceAll(rest, `\`, "/")))
}

// WinPath returns the Windows name of an absolute host path, through the
// Z: drive that maps the host's root.
func WinPath(hostPath string) string {
	return `Z:` + strings.ReplaceAll(hostPath, "/", `\`)
}

// buildDLL compiles the ProcessPrng stand-in into out.
func buildDLL(t testing.TB, out string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "processprng.c")
	if err := os.WriteFile(src, processPrngC, 0o644); err != nil {
		t.Fatal(err)
	}
	c := exec.Command(MinGW, "-shared", "-O2", "-o", out, src, "-ladvapi32")
	if b, err := c.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", MinGW, err, b)
	}
}

// Build builds the Go package pkg (an import path or a ./ path relative to
// the test's directory) for windows/amd64, stripped as shipped, into a
// temporary directory and returns the .exe's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	Require(t)
	out := filepath.Join(t.TempDir(), filepath.Base(pkg)+".exe")
	c := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	c.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	if b, err := c.CombinedOutput(); err != nil {
		t.Fatalf("go build %s for windows/amd64: %v\n%s", pkg, err, b)
	}
	return out
}

// BuildTest compiles the tests of package pkg for windows/amd64 (go test
// -c) and returns the test executable's path and the package's source
// directory, where it must run to find its testdata.
func BuildTest(t testing.TB, pkg string) (exe, dir string) {
	t.Helper()
	Require(t)
	exe = filepath.Join(t.TempDir(), filepath.Base(pkg)+".test.exe")
	c := exec.Command("go", "test", "-c", "-o", exe, pkg)
	c.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	if b, err := c.CombinedOutput(); err != nil {
		t.Fatalf("go test -c %s for windows/amd64: %v\n%s", pkg, err, b)
	}
	out, err := exec.Command("go", "list", "-f", "{{.Dir}}", pkg).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	return exe, strings.TrimSpace(string(out))
}

// String makes Result print usefully in failure messages.
func (r Result) String() string {
	return fmt.Sprintf("exit %d after %v\nstdout:\n%s\nstderr:\n%s", r.Exit, r.Took.Round(time.Millisecond), r.Stdout, r.Stderr)
}
