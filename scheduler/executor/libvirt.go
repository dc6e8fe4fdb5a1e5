package executor

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Defaults for LibvirtConfig.
const (
	DefaultVirsh            = "virsh"
	DefaultLibvirtURI       = "qemu+ssh://{host}/system"
	DefaultLibvirtTargetURI = "qemu+ssh://{host}/system"
	jobInfoTimeout          = 10 * time.Second
)

// LibvirtConfig configures the libvirt executor. The zero value of a field
// means its default. The yaml keys are those of the scheduler's config
// file section executors.libvirt.
type LibvirtConfig struct {
	// Virsh is the virsh binary; default "virsh" from PATH.
	Virsh string `yaml:"virsh"`
	// URI is the source's libvirt URI, with {host} standing for the
	// source host's name; default qemu+ssh://{host}/system. The
	// scheduler runs virsh on its own machine, which is rarely the source.
	URI string `yaml:"uri"`
	// TargetURI is the destination's libvirt URI, with {host} standing for
	// the target host's name; default qemu+ssh://{host}/system.
	TargetURI string `yaml:"target_uri"`
}

// Libvirt migrates with virsh migrate --live --persistent --undefinesource:
// the domain's definition moves with it, so after success it exists on the
// target only.
type Libvirt struct {
	cfg LibvirtConfig
	log *slog.Logger
}

// NewLibvirt checks cfg and returns the executor.
func NewLibvirt(cfg LibvirtConfig, log *slog.Logger) (*Libvirt, error) {
	if cfg.Virsh == "" {
		cfg.Virsh = DefaultVirsh
	}
	if cfg.URI == "" {
		cfg.URI = DefaultLibvirtURI
	}
	if cfg.TargetURI == "" {
		cfg.TargetURI = DefaultLibvirtTargetURI
	}
	if !strings.Contains(cfg.URI, "{host}") {
		return nil, fmt.Errorf("libvirt executor: source URI %q has no {host}: each move has its own source host", cfg.URI)
	}
	if !strings.Contains(cfg.TargetURI, "{host}") {
		return nil, fmt.Errorf("libvirt executor: target URI %q has no {host}", cfg.TargetURI)
	}
	return &Libvirt{cfg: cfg, log: log}, nil
}

// Name is "libvirt".
func (l *Libvirt) Name() string { return "libvirt" }

// Migrate runs virsh migrate against the source host's libvirt and, once it has succeeded, reads the
// downtime from virsh domjobinfo --completed on the target, where the
// domain now lives. Duration is the wall time virsh migrate took; a
// downtime the target does not report is left zero. The VM and target are
// passed as --domain and --desturi, the named forms of virsh migrate's
// two positional arguments.
func (l *Libvirt) Migrate(ctx context.Context, vm, from, to string) (Result, error) {
	if err := checkName("vm", vm); err != nil {
		return Result{}, err
	}
	for _, h := range []string{from, to} {
		if err := checkName("host", h); err != nil {
			return Result{}, err
		}
	}
	source := strings.ReplaceAll(l.cfg.URI, "{host}", from)
	target := strings.ReplaceAll(l.cfg.TargetURI, "{host}", to)
	started := time.Now()
	out, err := l.virsh(ctx, "-c", source, "migrate", "--live", "--persistent", "--undefinesource", "--domain", vm, "--desturi", target)
	if err != nil {
		return Result{}, fmt.Errorf("libvirt migrate %s to %s: %w", vm, to, err)
	}
	res := Result{Duration: time.Since(started)}
	l.log.Info("libvirt_migrated", "vm", vm, "to", to, "duration_ms", res.Duration.Milliseconds(), "output", limit(out))

	// The job's statistics are kept on both ends; the target is asked as
	// the source no longer has the domain after --undefinesource.
	ictx, cancel := context.WithTimeout(ctx, jobInfoTimeout)
	defer cancel()
	info, err := l.virsh(ictx, "-c", target, "domjobinfo", "--completed", "--domain", vm)
	if err != nil {
		l.log.Warn("libvirt_jobinfo_failed", "vm", vm, "err", err)
		return res, nil
	}
	res.Downtime = downtime(info)
	return res, nil
}

// virsh runs virsh with args and returns its stdout, or an error carrying
// what it printed on stderr.
func (l *Libvirt) virsh(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, l.cfg.Virsh, args...)
	// virsh translates its labels; the parser reads the C locale's.
	cmd.Env = append(cmd.Environ(), "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		return "", fmt.Errorf("virsh %s: %w: %s", args[2], err, limit(msg))
	}
	return stdout.String(), nil
}

// downtime reads "Total downtime: 12 ms" from virsh domjobinfo; 0 when
// it is not there.
func downtime(out string) time.Duration {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "Total downtime" {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "ms" {
			return 0
		}
		if ms, err := strconv.ParseInt(f[0], 10, 64); err == nil && ms >= 0 {
			return time.Duration(ms) * time.Millisecond
		}
		return 0
	}
	return 0
}
