//go:build linux

package vmlab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// AgentChannelName is the virtio-serial port name the guestdiag agent looks for.
const AgentChannelName = "org.guestdiag.agent.0"

// LabChannelName is the virtio-serial port through which VM.Exec reaches
// vmlab-guest serve in the guest.
const LabChannelName = "org.guestdiag.lab.0"

// NetdevID is the QEMU netdev of the guest's NIC, for SetLink.
const NetdevID = "n0"

// maxSocketPath is the usable length of sun_path on Linux (108 bytes with the NUL).
const maxSocketPath = 107

// pollInterval paces the checks for files and console lines that QEMU and the guest
// produce without telling us.
const pollInterval = 25 * time.Millisecond

// VMConfig describes one guest. Kernel and Initrd are required.
type VMConfig struct {
	Name      string // QEMU -name and error messages; default "vmlab"
	Kernel    string // path to a vmlinuz, see EnsureKernel
	Initrd    string // path to an initramfs, see BuildInitramfs
	MemoryMiB int    // default 256
	// ChannelSocket, when set, adds a virtio-serial port named ChannelName that QEMU
	// exposes as a listening unix socket (server=on,wait=off, as libvirt does); the
	// relay under test connects to it.
	ChannelSocket string
	ChannelName   string // default AgentChannelName
	// LabPort adds a second virtio-serial port named LabChannelName, served
	// in the guest by vmlab-guest serve, through which Exec runs commands.
	LabPort bool
	// Network adds a virtio NIC on QEMU's user network, always with restrict=on so
	// the guest reaches only 10.0.2.2 and 10.0.2.3 and never the outside world.
	Network bool
	// QMPSocket and ConsoleLog default to files in a private directory that Stop
	// removes.
	QMPSocket  string
	ConsoleLog string
	// KVM tries -accel kvm before falling back to tcg. Off by default: on the lab
	// machines /dev/kvm opens but guests never finish booting.
	KVM bool
	// Cmdline is appended to the kernel command line.
	Cmdline string
	// ExtraArgs are appended to QEMU's arguments, for example -incoming unix:PATH.
	ExtraArgs []string
	// QEMU defaults to qemu-system-x86_64 from PATH.
	QEMU string
}

// VM is a running QEMU process.
type VM struct {
	name        string
	qmpPath     string
	consolePath string
	ownDir      string
	cmd         *exec.Cmd
	stderr      bytes.Buffer // read only after done is closed
	done        chan struct{}
	waitErr     error

	qmpMu sync.Mutex // QEMU's QMP chardev serves one client at a time

	labPath string
	labMu   sync.Mutex // one command at a time
	labConn net.Conn
	labRd   *bufio.Reader

	stopOnce sync.Once
	stopErr  error
	mu       sync.Mutex
	console  []byte // final console, kept after Stop removes ownDir
	stopped  bool
}

// Boot starts QEMU and returns once its QMP socket (and channel socket, if any)
// exist, so callers can connect straight away. The guest itself is still booting;
// use WaitConsole with InitDoneMarker to wait for it.
func Boot(ctx context.Context, cfg VMConfig) (*VM, error) {
	if cfg.Name == "" {
		cfg.Name = "vmlab"
	}
	if cfg.Kernel == "" || cfg.Initrd == "" {
		return nil, fmt.Errorf("vm %s: Kernel and Initrd are required", cfg.Name)
	}
	for _, p := range []string{cfg.Kernel, cfg.Initrd} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("vm %s: %w", cfg.Name, err)
		}
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 256
	}
	if cfg.ChannelName == "" {
		cfg.ChannelName = AgentChannelName
	}
	if cfg.QEMU == "" {
		cfg.QEMU = "qemu-system-x86_64"
	}

	vm := &VM{name: cfg.Name, qmpPath: cfg.QMPSocket, consolePath: cfg.ConsoleLog, done: make(chan struct{})}
	if vm.qmpPath == "" || vm.consolePath == "" {
		// Short, under /tmp: t.TempDir paths can exceed the unix socket limit.
		dir, err := os.MkdirTemp("", "vml")
		if err != nil {
			return nil, fmt.Errorf("vm %s: %w", cfg.Name, err)
		}
		vm.ownDir = dir
		if vm.qmpPath == "" {
			vm.qmpPath = filepath.Join(dir, "qmp")
		}
		if vm.consolePath == "" {
			vm.consolePath = filepath.Join(dir, "console")
		}
	}
	if cfg.LabPort {
		if vm.ownDir == "" {
			return nil, fmt.Errorf("vm %s: LabPort needs the default QMP and console paths", cfg.Name)
		}
		vm.labPath = filepath.Join(vm.ownDir, "lab")
	}
	args, err := qemuArgs(cfg, vm.qmpPath, vm.consolePath, vm.labPath)
	if err != nil {
		vm.removeOwnDir()
		return nil, fmt.Errorf("vm %s: %w", cfg.Name, err)
	}

	// Not CommandContext: ctx bounds the boot, not the guest's life; Stop ends it.
	vm.cmd = exec.Command(cfg.QEMU, args...)
	vm.cmd.Stdout = &vm.stderr
	vm.cmd.Stderr = &vm.stderr
	// A test binary killed by a timeout must not leave guests running.
	vm.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := vm.cmd.Start(); err != nil {
		vm.removeOwnDir()
		if errors.Is(err, exec.ErrNotFound) {
			err = fmt.Errorf("%w: %w; install with: %s", ErrMissingPrerequisite, err, installHint)
		}
		return nil, fmt.Errorf("vm %s: %w", cfg.Name, err)
	}
	go func() {
		vm.waitErr = vm.cmd.Wait()
		close(vm.done)
	}()

	sockets := []string{vm.qmpPath}
	if cfg.ChannelSocket != "" {
		sockets = append(sockets, cfg.ChannelSocket)
	}
	if vm.labPath != "" {
		sockets = append(sockets, vm.labPath)
	}
	if err := vm.waitFiles(ctx, sockets); err != nil {
		vm.Stop()
		return nil, err
	}
	return vm, nil
}

func qemuArgs(cfg VMConfig, qmpPath, consolePath, labPath string) ([]string, error) {
	// QEMU's option syntax splits on commas; doubling them escapes -chardev values
	// but not the -qmp shorthand, so refuse them everywhere.
	for _, p := range []string{qmpPath, consolePath, cfg.ChannelSocket} {
		if strings.Contains(p, ",") {
			return nil, fmt.Errorf("path %q contains a comma", p)
		}
	}
	for _, p := range []string{qmpPath, cfg.ChannelSocket} {
		if len(p) > maxSocketPath {
			return nil, fmt.Errorf("unix socket path %q is %d bytes, over the %d-byte limit: use a shorter directory such as os.MkdirTemp(\"\", \"vml\")",
				p, len(p), maxSocketPath)
		}
	}
	if strings.ContainsAny(cfg.ChannelName, ", ") {
		return nil, fmt.Errorf("channel name %q contains a comma or space", cfg.ChannelName)
	}

	accel := []string{"-accel", "tcg"}
	if cfg.KVM {
		accel = []string{"-accel", "kvm", "-accel", "tcg"}
	}
	// no_timer_check: without it the guest can hang for good after "MP-BIOS bug:
	// 8254 timer not connected" under TCG. panic=-1 with -no-reboot turns a guest
	// panic into a QEMU exit that WaitConsole reports at once.
	cmdline := "console=ttyS0 no_timer_check panic=-1 quiet"
	if cfg.Cmdline != "" {
		cmdline += " " + cfg.Cmdline
	}
	args := []string{"-name", cfg.Name}
	args = append(args, accel...)
	args = append(args,
		"-m", strconv.Itoa(cfg.MemoryMiB),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", cfg.Kernel, "-initrd", cfg.Initrd, "-append", cmdline,
		"-chardev", "file,id=con0,path="+consolePath, "-serial", "chardev:con0",
		"-qmp", "unix:"+qmpPath+",server=on,wait=off",
	)
	if cfg.ChannelSocket != "" || labPath != "" {
		args = append(args, "-device", "virtio-serial-pci,id=vser0")
	}
	if cfg.ChannelSocket != "" {
		args = append(args,
			"-chardev", "socket,id=c0,path="+cfg.ChannelSocket+",server=on,wait=off",
			"-device", "virtserialport,bus=vser0.0,chardev=c0,name="+cfg.ChannelName,
		)
	}
	if labPath != "" {
		args = append(args,
			"-chardev", "socket,id=lab0,path="+labPath+",server=on,wait=off",
			"-device", "virtserialport,bus=vser0.0,chardev=lab0,name="+LabChannelName,
		)
	}
	if cfg.Network {
		args = append(args,
			"-netdev", "user,id="+NetdevID+",restrict=on",
			"-device", "virtio-net-pci,netdev="+NetdevID,
		)
	}
	return append(args, cfg.ExtraArgs...), nil
}

// waitFiles polls until every path exists, QEMU exits, or ctx ends.
func (vm *VM) waitFiles(ctx context.Context, paths []string) error {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		missing := ""
		for _, p := range paths {
			if _, err := os.Stat(p); err != nil {
				missing = p
				break
			}
		}
		if missing == "" {
			return nil
		}
		select {
		case <-vm.done:
			return vm.exitError("before creating " + missing)
		case <-ctx.Done():
			return fmt.Errorf("vm %s: waiting for %s: %w", vm.name, missing, ctx.Err())
		case <-tick.C:
		}
	}
}

// exitError describes an exited QEMU; call it only after done is closed.
func (vm *VM) exitError(when string) error {
	err := vm.waitErr
	if err == nil {
		err = errors.New("exit status 0")
	}
	msg := strings.TrimSpace(vm.stderr.String())
	if msg == "" {
		msg = "console: " + tail(vm.Console(), 10)
	}
	return fmt.Errorf("vm %s: qemu exited %s: %w: %s", vm.name, when, err, msg)
}

// Pid is QEMU's process id.
func (vm *VM) Pid() int {
	return vm.cmd.Process.Pid
}

// Console returns everything the guest printed to its serial console so far.
func (vm *VM) Console() string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.stopped {
		return string(vm.console)
	}
	b, _ := os.ReadFile(vm.consolePath)
	return string(b)
}

// WaitConsole waits until the console contains substr. It fails early when QEMU
// exits first.
func (vm *VM) WaitConsole(ctx context.Context, substr string) error {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if strings.Contains(vm.Console(), substr) {
			return nil
		}
		select {
		case <-vm.done:
			if strings.Contains(vm.Console(), substr) {
				return nil
			}
			return vm.exitError(fmt.Sprintf("before the console showed %q", substr))
		case <-ctx.Done():
			return fmt.Errorf("vm %s: console did not show %q: %w; last lines: %s",
				vm.name, substr, ctx.Err(), tail(vm.Console(), 10))
		case <-tick.C:
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// QMPError is an error reply from QEMU's QMP.
type QMPError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *QMPError) Error() string {
	return "qmp " + e.Class + ": " + e.Desc
}

type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *QMPError       `json:"error"`
	Event  string          `json:"event"`
}

// QMP runs one QMP command on a fresh connection and returns its "return" value.
// args may be nil.
func (vm *VM) QMP(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	vm.qmpMu.Lock()
	defer vm.qmpMu.Unlock()
	ret, err := vm.qmp(ctx, cmd, args)
	if err != nil {
		return nil, fmt.Errorf("vm %s: qmp %s: %w", vm.name, cmd, err)
	}
	return ret, nil
}

func (vm *VM) qmp(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", vm.qmpPath)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	dec := json.NewDecoder(conn)
	var greeting qmpMessage
	if err := dec.Decode(&greeting); err != nil {
		return nil, fmt.Errorf("read greeting: %w", err)
	}
	if greeting.QMP == nil {
		return nil, errors.New("no QMP greeting")
	}
	if _, err := qmpExchange(conn, dec, "qmp_capabilities", nil); err != nil {
		return nil, err
	}
	return qmpExchange(conn, dec, cmd, args)
}

func qmpExchange(conn net.Conn, dec *json.Decoder, cmd string, args any) (json.RawMessage, error) {
	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
	}{cmd, args}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return nil, err
	}
	for {
		var m qmpMessage
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("read reply: %w", err)
		}
		switch {
		case m.Event != "":
			continue
		case m.Error != nil:
			return nil, m.Error
		case m.Return != nil:
			return m.Return, nil
		}
	}
}

// ExecResult is what a command run by Exec printed and how it ended.
type ExecResult struct {
	Exit   int    `json:"exit"`
	Output string `json:"output"`
}

// Exec runs command with /bin/sh -c in the guest through vmlab-guest serve
// on the lab port, and returns once it has finished there. End command
// with & to leave it running.
func (vm *VM) Exec(ctx context.Context, command string) (ExecResult, error) {
	if vm.labPath == "" {
		return ExecResult{}, fmt.Errorf("vm %s: no lab port (VMConfig.LabPort)", vm.name)
	}
	if strings.ContainsAny(command, "\n\r") {
		return ExecResult{}, fmt.Errorf("vm %s: command contains a newline", vm.name)
	}
	vm.labMu.Lock()
	defer vm.labMu.Unlock()
	if vm.labConn == nil {
		conn, err := (&net.Dialer{}).DialContext(ctx, "unix", vm.labPath)
		if err != nil {
			return ExecResult{}, fmt.Errorf("vm %s: lab port: %w", vm.name, err)
		}
		vm.labConn, vm.labRd = conn, bufio.NewReader(conn)
	}
	fail := func(err error) (ExecResult, error) {
		vm.labConn.Close()
		vm.labConn = nil
		return ExecResult{}, fmt.Errorf("vm %s: exec %q: %w", vm.name, command, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		vm.labConn.SetDeadline(dl)
	} else {
		vm.labConn.SetDeadline(time.Time{})
	}
	if _, err := io.WriteString(vm.labConn, command+"\n"); err != nil {
		return fail(err)
	}
	line, err := vm.labRd.ReadBytes('\n')
	if err != nil {
		return fail(err)
	}
	var r ExecResult
	if err := json.Unmarshal(line, &r); err != nil {
		return fail(fmt.Errorf("reply %q: %w", line, err))
	}
	return r, nil
}

// SetLink sets the link state of a netdev (NetdevID for the NIC that Network adds),
// as a cable pull the guest sees as carrier loss.
func (vm *VM) SetLink(ctx context.Context, netdev string, up bool) error {
	_, err := vm.QMP(ctx, "set_link", map[string]any{"name": netdev, "up": up})
	return err
}

// Stop kills QEMU and waits for it to exit. It is safe to call more than once; the
// console stays readable afterwards.
func (vm *VM) Stop() error {
	vm.labMu.Lock()
	if vm.labConn != nil {
		vm.labConn.Close()
		vm.labConn = nil
	}
	vm.labMu.Unlock()
	vm.stopOnce.Do(func() {
		if err := vm.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			vm.stopErr = fmt.Errorf("vm %s: kill: %w", vm.name, err)
		}
		<-vm.done
		console, _ := os.ReadFile(vm.consolePath)
		vm.mu.Lock()
		vm.console = console
		vm.stopped = true
		vm.mu.Unlock()
		vm.removeOwnDir()
	})
	return vm.stopErr
}

func (vm *VM) removeOwnDir() {
	if vm.ownDir != "" {
		os.RemoveAll(vm.ownDir)
	}
}

// LibvirtChannelPath returns <root>/domain-<id>-<name>/org.guestdiag.agent.0, the
// layout libvirt uses under /var/lib/libvirt/qemu/channel/target/, and creates the
// domain directory. Like libvirt it keeps only the first 20 characters of name. A
// failure to create the directory shows up when QEMU cannot bind the socket.
func LibvirtChannelPath(root string, id int, name string) string {
	if r := []rune(name); len(r) > 20 {
		name = string(r[:20])
	}
	dir := filepath.Join(root, fmt.Sprintf("domain-%d-%s", id, name))
	os.MkdirAll(dir, 0o755)
	return filepath.Join(dir, AgentChannelName)
}
