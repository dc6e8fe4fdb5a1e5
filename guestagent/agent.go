package guestagent

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shirou/gopsutil/v3/host"

	"github.com/guestdiag/guestdiag/checks"
	_ "github.com/guestdiag/guestdiag/checks/all" // the six checks register themselves
	"github.com/guestdiag/guestdiag/internal/version"
	"github.com/guestdiag/guestdiag/protocol"
)

// Run runs the agent until ctx ends and then returns nil. It returns an
// error if the agent cannot start (no usable state directory, an unknown
// check, no transport for this OS).
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	cfg = cfg.withDefaults()
	list, err := selectChecks(cfg, logger)
	if err != nil {
		return err
	}
	if cfg.Transport != nil {
		return newAgent(cfg, cfg.Transport, list, logger).run(ctx)
	}
	sel, err := newTransports(cfg, logger)
	if err != nil {
		return err
	}
	a := newAgent(cfg, sel, list, logger)
	sel.onActive = a.transportChanged
	return a.run(ctx)
}

type agent struct {
	cfg    Config
	tr     Transport
	checks []checks.Runner
	logger *slog.Logger

	// Replaced in tests.
	hello        func(ctx context.Context) protocol.Hello
	systemUptime func(ctx context.Context) uint64

	runID string
	spool *spool
	// transport is the name of the active transport, once known.
	transport atomic.Value

	mu      sync.Mutex // orders seq allocation with spool appends
	nextSeq uint64
	// Spool drops already reported in an event, by reason.
	reported drops
}

func newAgent(cfg Config, tr Transport, list []checks.Runner, logger *slog.Logger) *agent {
	a := &agent{cfg: cfg, tr: tr, checks: list, logger: logger, nextSeq: 1}
	a.hello = a.gatherHello
	// The guest's uptime, not the agent process's: how long the system
	// has been up is what tells a reboot apart from an agent restart.
	a.systemUptime = func(ctx context.Context) uint64 {
		up, _ := host.UptimeWithContext(ctx)
		return up
	}
	return a
}

func (a *agent) run(ctx context.Context) error {
	if err := os.MkdirAll(a.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	sp, err := openSpool(filepath.Join(a.cfg.StateDir, "spool"), a.cfg.SpoolMaxBytes, a.logger)
	if err != nil {
		return err
	}
	defer sp.close()
	sp.setMaxAge(a.cfg.SpoolMaxAge)
	a.spool = sp
	a.runID = newRunID()
	a.logger.Info("agent_started", "run", a.runID, "version", version.Version, "state_dir", a.cfg.StateDir,
		"checks", len(a.checks), "spooled", sp.waiting())

	a.sendHello(ctx)

	ctx, cancelAll := context.WithCancel(ctx)
	defer cancelAll()
	var (
		wg        sync.WaitGroup
		senderErr error
	)
	wg.Go(func() {
		snd := newSender(sp, a.tr, a.cfg, a.runID, a.logger)
		if err := snd.run(ctx); err != nil {
			senderErr = err
			cancelAll()
		}
	})
	wg.Go(func() { a.heartbeats(ctx) })
	for _, sc := range a.checks {
		wg.Go(func() { a.schedule(ctx, sc) })
	}
	wg.Wait()
	a.logger.Info("agent_stopped", "run", a.runID, "spooled", sp.waiting())
	return senderErr
}

// sendHello spools a hello. It is seq 1 of the run, and comes again each
// time the agent connects over a different transport, naming it.
func (a *agent) sendHello(ctx context.Context) {
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	h := a.hello(hctx)
	cancel()
	if name, ok := a.transport.Load().(string); ok {
		h.Transport = name
	}
	data, _ := json.Marshal(h)
	a.emit(protocol.Envelope{Kind: protocol.KindHello, Data: data})
}

// transportChanged is called by the selector when a connection is made
// over another transport than before.
func (a *agent) transportChanged(name string) {
	a.transport.Store(name)
	a.logger.Info("transport_changed", "transport", name)
	a.sendHello(context.Background())
}

func (a *agent) heartbeats(ctx context.Context) {
	t := time.NewTicker(a.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.reportDrops()
		// uptime_s is the guest system's uptime (seconds since boot).
		data, _ := json.Marshal(protocol.Heartbeat{UptimeSec: a.systemUptime(ctx), Spooled: uint64(a.spool.waiting()), Dropped: a.spool.droppedCount()})
		a.emit(protocol.Envelope{Kind: protocol.KindHeartbeat, Data: data})
	}
}

// reportDrops sends an event when the spool has dropped messages since the
// last report. Every heartbeat carries the running total in Dropped; the
// event says it once, as a finding with the reason, so that it shows up
// wherever findings are read without comparing heartbeats.
func (a *agent) reportDrops() {
	now := a.spool.dropCounts()
	a.mu.Lock()
	last := a.reported
	a.reported = now
	a.mu.Unlock()
	if now == last {
		return
	}
	var findings []protocol.Finding
	if now.full != last.full {
		findings = append(findings, protocol.Finding{
			Code:     "agent.spool_dropped",
			Severity: protocol.SeverityWarn,
			Source:   "bytes",
			Message:  fmt.Sprintf("the spool reached its bound of %d bytes while the host did not acknowledge; the oldest messages were dropped", a.cfg.SpoolMaxBytes),
			Count:    now.full,
		})
	}
	if now.expired != last.expired {
		findings = append(findings, protocol.Finding{
			Code:     "agent.spool_dropped",
			Severity: protocol.SeverityWarn,
			Source:   "age",
			Message:  fmt.Sprintf("messages waited longer than the spool's maximum age of %v without an ack and were dropped", a.cfg.SpoolMaxAge),
			Count:    now.expired,
		})
	}
	if now.damaged != last.damaged {
		findings = append(findings, protocol.Finding{
			Code:     "agent.spool_damaged",
			Severity: protocol.SeverityWarn,
			Source:   "damaged",
			Message:  "spooled messages could not be read back (missing or failing their checksum) and were dropped unsent",
			Count:    now.damaged,
		})
	}
	n := now.full + now.expired + now.damaged
	delta := n - (last.full + last.expired + last.damaged)
	a.emit(protocol.Envelope{
		Kind:     protocol.KindEvent,
		Check:    protocol.AgentCheck,
		Status:   protocol.StatusWarn,
		Summary:  fmt.Sprintf("spool dropped %d unacknowledged messages (%d in total)", delta, n),
		Findings: findings,
	})
}

// schedule runs one check on its interval and on its own triggers.
func (a *agent) schedule(ctx context.Context, run checks.Runner) {
	run.Report = func(res checks.Result) bool { return a.report(run.Check.Name(), res) }
	run.Run(ctx)
}

// report spools one result and says whether it is stored. A result the
// protocol refuses is a bug in the check; an unknown result saying so goes
// in its place, and the check's position is not committed.
func (a *agent) report(name string, res checks.Result) bool {
	env := protocol.Envelope{
		Kind:     protocol.KindResult,
		Check:    name,
		Status:   res.Status,
		Summary:  protocol.Clip(res.Summary, protocol.MaxSummaryLen),
		Findings: res.Findings,
	}
	if res.Data != nil {
		data, err := json.Marshal(res.Data)
		if err != nil {
			a.logger.Error("result_data_unmarshalable", "check", name, "err", err)
		}
		env.Data = data
	}
	err := a.emit(env)
	if errors.Is(err, protocol.ErrLineTooLong) && env.Data != nil {
		// The findings are what the host acts on; keep them and drop the
		// detail, saying so.
		n := len(env.Data)
		a.logger.Warn("result_data_dropped", "check", name, "data_bytes", n, "err", err)
		env.Data = nil
		env.Summary = protocol.Clip(fmt.Sprintf("%s [data of %d bytes left out: over the %d-byte line limit]", env.Summary, n, protocol.MaxLineLen), protocol.MaxSummaryLen)
		err = a.emit(env)
	}
	if errors.Is(err, protocol.ErrInvalid) || errors.Is(err, protocol.ErrLineTooLong) {
		a.emit(protocol.Envelope{
			Kind:    protocol.KindResult,
			Check:   name,
			Status:  protocol.StatusUnknown,
			Summary: protocol.Clip("check produced an invalid result: "+err.Error(), protocol.MaxSummaryLen),
		})
	}
	return err == nil
}

// emit numbers, validates and spools one envelope, and logs the error if
// that fails. A seq is used only once its message is spooled, so a failed
// append leaves no gap. Messages other than heartbeats are on disk when emit
// returns; the wait for the disk happens outside a.mu, so that a slow or
// stuck disk holds up only this caller, not every check and heartbeat.
func (a *agent) emit(e protocol.Envelope) error {
	if err := a.spoolEnvelope(&e); err != nil {
		a.logger.Error("message_lost", "kind", e.Kind, "check", e.Check, "err", err)
		return err
	}
	// Heartbeats are not worth an fsync of their own; the next message's
	// fsync makes them durable too.
	if e.Kind == protocol.KindHeartbeat {
		return nil
	}
	if err := a.spool.sync(); err != nil {
		// The message is spooled and will be sent; only a crash before
		// then could lose it.
		a.logger.Warn("spool_sync_failed", "kind", e.Kind, "check", e.Check, "seq", e.Seq, "err", err)
	}
	return nil
}

// spoolEnvelope numbers e and appends it to the spool. a.mu keeps seqs in
// spool order.
func (a *agent) spoolEnvelope(e *protocol.Envelope) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	e.V = protocol.Version
	e.Run = a.runID
	e.Seq = a.nextSeq
	e.TS = time.Now().UTC()
	if err := e.Validate(); err != nil {
		return err
	}
	line, err := protocol.Marshal(*e)
	if err != nil {
		return err
	}
	if err := a.spool.append(e.Run, e.Seq, line); err != nil {
		return err
	}
	a.nextSeq++
	return nil
}

func (a *agent) gatherHello(ctx context.Context) protocol.Hello {
	h := protocol.Hello{
		OS:           runtime.GOOS,
		Arch:         runtime.GOARCH,
		AgentVersion: protocol.Clip(version.Version, protocol.MaxSourceLen),
		Checks:       []string{},
		HeartbeatS:   seconds(a.cfg.HeartbeatInterval),
		Intervals:    make(map[string]uint32, len(a.checks)),
	}
	for _, sc := range a.checks {
		h.Checks = append(h.Checks, sc.Check.Name())
		h.Intervals[sc.Check.Name()] = seconds(sc.Interval)
	}
	if name, err := os.Hostname(); err == nil {
		h.Hostname = protocol.Clip(name, protocol.MaxHostnameLen)
	}
	// Everything below is best effort: a busybox guest has no os-release.
	if platform, _, version, err := host.PlatformInformationWithContext(ctx); err == nil {
		h.Platform = protocol.Clip(strings.TrimSpace(platform+" "+version), protocol.MaxSourceLen)
	}
	if k, err := host.KernelVersionWithContext(ctx); err == nil {
		h.Kernel = protocol.Clip(k, protocol.MaxSourceLen)
	}
	if arch, err := host.KernelArch(); err == nil && arch != "" {
		h.Arch = protocol.Clip(arch, protocol.MaxSourceLen)
	}
	if bt, err := host.BootTimeWithContext(ctx); err == nil {
		h.BootTime = int64(bt)
	}
	return h
}

// newRunID returns 128 random bits as 22 characters of [A-Za-z0-9_-].
func newRunID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// seconds rounds d up to whole seconds, so that a sub-second interval does
// not read as none.
func seconds(d time.Duration) uint32 {
	return uint32(min((d+time.Second-1)/time.Second, math.MaxUint32))
}
