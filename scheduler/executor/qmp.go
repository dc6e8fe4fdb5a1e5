package executor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/internal/qmp"
)

// Defaults for QMPConfig.
const (
	DefaultPollInterval   = 100 * time.Millisecond
	DefaultPrepareTimeout = 2 * time.Minute
	// cleanupTimeout bounds migrate_cancel and the destination's quit,
	// which run after the migration's own context may have ended.
	cleanupTimeout = 5 * time.Second
)

// ErrMovedUnconfirmed says a migration may have moved the VM although
// the move is not confirmed: QEMU reported it completed but the
// destination could not be confirmed running (the source is kept paused),
// or the source could not say how a cancelled migration ended. The VM may
// be on the target; the caller must not take it for one still on its
// source.
var ErrMovedUnconfirmed = errors.New("the VM may be on the target: the move is not confirmed")

// Destination is a QEMU process started on the target host with
// -incoming, waiting for the VM's state.
type Destination struct {
	// URI is the migration URI the source sends to, such as
	// "unix:/run/guestdiag/incoming/web1.sock" or "tcp:10.0.0.2:49152".
	URI string
	// QMP is the destination's QMP socket on this machine; the source is
	// quit only after it says the VM runs, so it is required unless
	// QMPConfig.KeepSource is set.
	QMP string
}

// PrepareFunc starts the destination of vm on host to and returns once it
// listens for the migration.
type PrepareFunc func(ctx context.Context, vm, from, to string) (Destination, error)

// QMPConfig configures the QMP executor, which migrates between QEMU
// processes that no libvirt manages (the VM lab's guests). The zero value
// of a field means its default. The yaml keys are those of the
// scheduler's config file section executors.qmp.
type QMPConfig struct {
	// Sockets maps each host to the path of its VMs' QMP sockets, with
	// {vm} standing for the VM's name: "/run/guestdiag/qmp/{vm}.sock". The
	// executor is the socket's only client while it migrates; QEMU serves
	// one client per QMP socket, so give it a monitor of its own.
	Sockets map[string]string `yaml:"sockets"`
	// Prepare starts the destination (library use; the VM lab passes its
	// own). When nil, PrepareCommand is run instead.
	Prepare PrepareFunc `yaml:"-"`
	// PrepareCommand is the command that starts the destination, one
	// argument per element, with {vm}, {from} and {to} replaced in each
	// (no shell). Its stdout must hold the lines "uri=URI" and
	// "qmp=PATH" (see ParseDestination); its stderr goes into the error
	// when it fails.
	PrepareCommand []string `yaml:"prepare_command"`
	// PrepareTimeout bounds PrepareCommand; default DefaultPrepareTimeout.
	PrepareTimeout time.Duration `yaml:"prepare_timeout"`
	// KeepSource leaves the source QEMU paused after a completed
	// migration instead of quitting it, as libvirt does by default.
	KeepSource bool `yaml:"keep_source"`
	// PollInterval paces query-migrate; default DefaultPollInterval.
	PollInterval time.Duration `yaml:"poll_interval"`
}

// QMP migrates with QEMU's own live migration over QMP.
type QMP struct {
	cfg QMPConfig
	log *slog.Logger
}

// NewQMP checks cfg and returns the executor.
func NewQMP(cfg QMPConfig, log *slog.Logger) (*QMP, error) {
	if len(cfg.Sockets) == 0 {
		return nil, errors.New("qmp executor: no host has a QMP socket template")
	}
	for host, tmpl := range cfg.Sockets {
		if !strings.Contains(tmpl, "{vm}") {
			return nil, fmt.Errorf("qmp executor: socket template %q of host %s has no {vm}", tmpl, host)
		}
	}
	if cfg.Prepare == nil && len(cfg.PrepareCommand) == 0 {
		return nil, errors.New("qmp executor: no way to start the destination: set Prepare or PrepareCommand")
	}
	if cfg.PrepareTimeout <= 0 {
		cfg.PrepareTimeout = DefaultPrepareTimeout
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Prepare == nil {
		cfg.Prepare = commandPrepare(cfg.PrepareCommand, cfg.PrepareTimeout)
	}
	return &QMP{cfg: cfg, log: log}, nil
}

// Name is "qmp".
func (q *QMP) Name() string { return "qmp" }

// migrationStatus is the part of query-migrate's answer the executor reads.
type migrationStatus struct {
	Status    string `json:"status"`
	TotalTime int64  `json:"total-time"` // ms
	Downtime  int64  `json:"downtime"`   // ms
	ErrorDesc string `json:"error-desc"`
}

// Migrate prepares the destination, sends migrate to the source and
// polls query-migrate until the migration completes, fails or ctx ends.
// A failed or abandoned migration is cancelled, leaving the VM running on
// its source, and the destination is told to quit; one that completed
// while being cancelled counts as completed. An error wrapping
// ErrMovedUnconfirmed means the VM may be on the target.
func (q *QMP) Migrate(ctx context.Context, vm, from, to string) (Result, error) {
	if err := checkName("vm", vm); err != nil {
		return Result{}, err
	}
	srcTmpl, ok := q.cfg.Sockets[from]
	if !ok {
		return Result{}, fmt.Errorf("qmp migrate %s: host %s has no QMP socket template", vm, from)
	}
	src, err := qmp.Dial(ctx, strings.ReplaceAll(srcTmpl, "{vm}", vm))
	if err != nil {
		return Result{}, fmt.Errorf("qmp migrate %s: source: %w", vm, err)
	}
	defer src.Close()
	go drain(src)

	// A source that ran is resumed if an abandoned migration leaves it
	// paused; one its user paused stays paused.
	before, err := src.Status(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("qmp migrate %s: source: %w", vm, err)
	}
	wasRunning := before == "running"

	started := time.Now()
	dst, err := q.cfg.Prepare(ctx, vm, from, to)
	if err != nil {
		return Result{}, fmt.Errorf("qmp migrate %s: prepare destination on %s: %w", vm, to, err)
	}
	if dst.QMP == "" && !q.cfg.KeepSource {
		// Quitting the source needs the destination confirmed running.
		// The destination started stays waiting: only the prepare
		// command knows how to end it.
		return Result{}, fmt.Errorf("qmp migrate %s: prepare on %s gave no qmp= line, and without the destination's QMP socket the source cannot be quit safely: print qmp=PATH or set keep_source", vm, to)
	}
	q.log.Info("migration_destination_ready", "vm", vm, "to", to, "uri", dst.URI, "prepare_ms", time.Since(started).Milliseconds())

	// Migration events tell every monitor of the source, such as the
	// relay's, that the migration completed, before this executor quits
	// it; libvirt turns them on too.
	events := map[string]any{"capabilities": []map[string]any{{"capability": "events", "state": true}}}
	if _, err := src.Execute(ctx, "migrate-set-capabilities", events); err != nil {
		q.log.Warn("migration_events_not_enabled", "vm", vm, "err", err)
	}
	if _, err := src.Execute(ctx, "migrate", map[string]any{"uri": dst.URI}); err != nil {
		q.quitDestination(dst, vm)
		return Result{}, fmt.Errorf("qmp migrate %s: %w", vm, err)
	}
	st, err := q.wait(ctx, src)
	if err != nil {
		if st, err = q.abandon(src, vm, st, wasRunning, err); err != nil {
			if !errors.Is(err, ErrMovedUnconfirmed) {
				q.quitDestination(dst, vm)
			}
			return Result{}, fmt.Errorf("qmp migrate %s to %s: %w", vm, to, err)
		}
		q.log.Warn("migration_completed_while_cancelled", "vm", vm, "to", to)
	}
	res := Result{Duration: time.Duration(st.TotalTime) * time.Millisecond, Downtime: time.Duration(st.Downtime) * time.Millisecond}
	if q.cfg.KeepSource {
		return res, nil
	}
	// A migration that completed while it was being cancelled is
	// confirmed and its source quit all the same, on a context of its own.
	if ctx.Err() != nil {
		var done context.CancelFunc
		ctx, done = context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer done()
	}
	// The state lives on in the destination and the paused source would
	// only hold its memory, but only once the destination runs: until
	// then the source is the VM's only copy.
	if err := q.confirmRunning(ctx, dst); err != nil {
		return res, fmt.Errorf("qmp migrate %s to %s: completed, source kept paused: %w: %w", vm, to, ErrMovedUnconfirmed, err)
	}
	// QEMU may close before its reply arrives.
	if _, err := src.Execute(ctx, "quit", nil); err != nil && !closedByQuit(err) {
		q.log.Warn("migration_source_quit_failed", "vm", vm, "err", err)
	}
	return res, nil
}

// abandon ends a migration that wait gave up on. After migrate_cancel it
// asks the source again, since the migration may have completed in
// between: then it returns the completed status and no error, and the
// caller goes on as after a success. A cancelled or failed migration
// leaves the VM on its source, which is resumed if it ran before and is
// paused now; waitErr is returned. When the source cannot say how the
// migration ended, the VM may be on either host: ErrMovedUnconfirmed, and
// the destination must be left alone.
func (q *QMP) abandon(src *qmp.Conn, vm string, st migrationStatus, wasRunning bool, waitErr error) (migrationStatus, error) {
	ctx, done := context.WithTimeout(context.Background(), cleanupTimeout)
	defer done()
	if !final(st.Status) {
		if _, err := src.Execute(ctx, "migrate_cancel", nil); err != nil {
			q.log.Warn("migration_cancel_failed", "vm", vm, "err", err)
		}
		var err error
		if st, err = q.settle(ctx, src); err != nil {
			return st, fmt.Errorf("%w: %w; after migrate_cancel the source did not say how the migration ended: %w", waitErr, ErrMovedUnconfirmed, err)
		}
	}
	if st.Status == "completed" {
		return st, nil
	}
	if !wasRunning {
		return st, waitErr
	}
	if now, err := src.Status(ctx); err != nil {
		q.log.Warn("migration_source_status_failed", "vm", vm, "err", err)
	} else if now == "paused" || now == "postmigrate" {
		if _, err := src.Execute(ctx, "cont", nil); err != nil {
			return st, fmt.Errorf("%w; the source is %s and did not resume: %w", waitErr, now, err)
		}
		q.log.Warn("migration_source_resumed", "vm", vm, "was", now)
	}
	return st, waitErr
}

// settle polls query-migrate until the migration has ended one way or
// the other.
func (q *QMP) settle(ctx context.Context, src *qmp.Conn) (migrationStatus, error) {
	return poll(ctx, src, min(q.cfg.PollInterval, 50*time.Millisecond))
}

// poll runs query-migrate every interval until the migration has ended
// (a final status, returned with no error) or ctx ends.
func poll(ctx context.Context, src *qmp.Conn, interval time.Duration) (migrationStatus, error) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		var st migrationStatus
		ret, err := src.Execute(ctx, "query-migrate", nil)
		if err != nil {
			return st, err
		}
		if err := json.Unmarshal(ret, &st); err != nil {
			return st, fmt.Errorf("query-migrate answered %q: %w", ret, err)
		}
		if final(st.Status) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("migration still %s: %w", st.Status, ctx.Err())
		case <-tick.C:
		}
	}
}

func final(status string) bool {
	return status == "completed" || status == "failed" || status == "cancelled"
}

// confirmRunning waits until the destination's run state is "running",
// or "paused" for a VM that was paused when it left.
func (q *QMP) confirmRunning(ctx context.Context, dst Destination) error {
	c, err := qmp.Dial(ctx, dst.QMP)
	if err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	defer c.Close()
	go drain(c)
	tick := time.NewTicker(q.cfg.PollInterval)
	defer tick.Stop()
	for {
		status, err := c.Status(ctx)
		if err != nil {
			return fmt.Errorf("destination: %w", err)
		}
		switch status {
		case "running", "paused":
			return nil
		case "inmigrate", "finish-migrate", "prelaunch":
		default:
			return fmt.Errorf("destination is %s, not running", status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("destination still %s: %w", status, ctx.Err())
		case <-tick.C:
		}
	}
}

// wait polls query-migrate until a final status or ctx's end; a failed
// or cancelled migration is an error.
func (q *QMP) wait(ctx context.Context, src *qmp.Conn) (migrationStatus, error) {
	st, err := poll(ctx, src, q.cfg.PollInterval)
	if err != nil || st.Status == "completed" {
		return st, err
	}
	desc := st.ErrorDesc
	if desc == "" {
		desc = "QEMU gave no reason"
	}
	return st, fmt.Errorf("migration %s: %s", st.Status, desc)
}

// quitDestination ends a destination that will get no state; QEMU often
// ends it by itself when the incoming stream breaks.
func (q *QMP) quitDestination(dst Destination, vm string) {
	if dst.QMP == "" {
		return
	}
	ctx, done := context.WithTimeout(context.Background(), cleanupTimeout)
	defer done()
	c, err := qmp.Dial(ctx, dst.QMP)
	if err != nil {
		return // gone already
	}
	defer c.Close()
	go drain(c)
	if _, err := c.Execute(ctx, "quit", nil); err != nil && !closedByQuit(err) {
		q.log.Warn("migration_destination_quit_failed", "vm", vm, "err", err)
	}
}

// drain reads events nobody needs, so that the connection does not end
// with qmp.ErrEventOverflow during a long migration.
func drain(c *qmp.Conn) {
	for range c.Events() {
	}
}

// closedByQuit says whether err is QEMU closing the connection, as it
// does on quit.
func closedByQuit(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, qmp.ErrClosed)
}

// commandPrepare runs argv with the placeholders replaced and reads the
// destination from its stdout.
func commandPrepare(argv []string, timeout time.Duration) PrepareFunc {
	return func(ctx context.Context, vm, from, to string) (Destination, error) {
		for _, h := range []string{from, to} {
			if err := checkName("host", h); err != nil {
				return Destination{}, err
			}
		}
		r := strings.NewReplacer("{vm}", vm, "{from}", from, "{to}", to)
		args := make([]string, len(argv))
		for i, a := range argv {
			args[i] = r.Replace(a)
		}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return Destination{}, fmt.Errorf("%s: %w: %s", args[0], err, strings.TrimSpace(limit(stderr.String())))
		}
		d, err := ParseDestination(stdout.Bytes())
		if err != nil {
			return Destination{}, fmt.Errorf("%s: %w", args[0], err)
		}
		return d, nil
	}
}

// ParseDestination reads a prepare command's stdout: the lines
// "uri=URI" and "qmp=PATH", in any order; blank lines are ignored and
// anything else is an error, so that a script printing its log to stdout
// is caught rather than misread.
func ParseDestination(out []byte) (Destination, error) {
	var d Destination
	sc := bufio.NewScanner(bytes.NewReader(out))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		switch {
		case k == "uri" && d.URI == "":
			d.URI = v
		case k == "qmp" && d.QMP == "":
			d.QMP = v
		default:
			return Destination{}, fmt.Errorf("prepare output line %d: %q is not a first uri= or qmp= line", n, limit(line))
		}
	}
	if err := sc.Err(); err != nil {
		return Destination{}, fmt.Errorf("prepare output: %w", err)
	}
	if d.URI == "" {
		return Destination{}, errors.New("prepare output has no uri= line")
	}
	return d, nil
}

// checkName refuses what cannot be a VM or host name in a path, an
// argument or a URI: a path separator, a leading dash (an option to the
// command it is passed to), control characters.
func checkName(kind, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty %s name", kind)
	case len(s) > 255:
		return fmt.Errorf("%s name of %d bytes", kind, len(s))
	case strings.HasPrefix(s, "-"), strings.HasPrefix(s, "."):
		return fmt.Errorf("%s name %q starts with %q", kind, s, s[:1])
	case strings.ContainsAny(s, "/\\@?#"):
		return fmt.Errorf("%s name %q holds a path or URI separator", kind, s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%s name %q holds a control character", kind, s)
		}
	}
	return nil
}

// limit cuts a command's output quoted in an error to a readable size.
func limit(s string) string {
	const max = 2048
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
