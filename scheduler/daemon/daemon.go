package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/scheduler/executor"
	"github.com/guestdiag/guestdiag/scheduler/inventory"
	"github.com/guestdiag/guestdiag/scheduler/lease"
)

// Config is one scheduler instance.
type Config struct {
	// Name is the instance's name in plans, outcomes and the lease.
	Name string
	// Mode is protocol.ModeAdvisory (the default) or ModeExecute.
	Mode string
	// Interval between cycles; 0 takes the file's.
	Interval time.Duration
	// File is the configuration: Defaults() or Parse's, changed as the
	// caller likes; nil is Defaults(). A zero period or count that cannot
	// mean "none" (interval, migrate_timeout, lease) takes its default.
	File *File
	// Executor carries moves out in execute mode, and is never called in
	// advisory mode.
	Executor executor.Executor
	// Virsh runs virsh against a host's libvirt to find chunks; nil runs
	// File.Libvirt.Virsh with -c and File.Libvirt.URI when a URI is set.
	Virsh  func(host string) inventory.Runner
	Logger *slog.Logger
}

type daemon struct {
	cfg   Config
	f     *File
	js    jetstream.JetStream
	kv    jetstream.KeyValue
	recs  *records
	lease *lease.Lease
	fleet *inventory.Fleet
	log   *slog.Logger

	last      protocol.Plan // the last plan published since the lease was taken
	published bool

	derived   map[string]string // chunks found in libvirt
	derivedAt time.Time
	libvirt   map[string]*hostChunks // by host, once asked
}

// hostChunks is what one host's libvirt last said.
type hostChunks struct {
	nets *inventory.HostNets // the last answer; nil if it never answered
	at   time.Time           // of that answer
	err  error               // of the last attempt, nil if it answered
}

func (c *Config) check() error {
	if c.File == nil {
		c.File = Defaults()
	}
	c.File.fillZeros()
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Interval <= 0 {
		c.Interval = time.Duration(c.File.Interval)
	}
	if c.Name == "" {
		return errors.New("scheduler: no instance name")
	}
	switch c.Mode {
	case "":
		c.Mode = protocol.ModeAdvisory
	case protocol.ModeAdvisory:
	case protocol.ModeExecute:
		if c.Executor == nil {
			return errors.New("scheduler: execute mode needs an executor (--executor); none is given")
		}
	default:
		return fmt.Errorf("scheduler: mode %q: want advisory or execute", c.Mode)
	}
	if c.Virsh == nil && c.File.Libvirt.URI != "" {
		c.Virsh = virshRunner(c.File.Libvirt.Virsh, c.File.Libvirt.URI)
	}
	return nil
}

// Run is a scheduler instance: it follows the fleet, and while it holds
// the lease plans every interval (and soon after a hint is raised),
// publishes the plans and in execute mode carries them out. It returns nil
// when ctx is cancelled.
func Run(ctx context.Context, nc *nats.Conn, cfg Config) error {
	if err := cfg.check(); err != nil {
		return err
	}
	// What Run starts (the records and drain watches, the stream's
	// consumers, the lease) ends with it, on an error too: a consumer
	// left running after a failed start would go on feeding a fleet
	// nobody plans from.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d := &daemon{cfg: cfg, f: cfg.File, log: cfg.Logger}
	d.fleet = inventory.NewFleet(inventory.Demand{Window: time.Duration(d.f.Demand.Window), Percentile: d.f.Demand.Percentile})
	var err error
	if d.js, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("scheduler: %w", err)
	}
	if _, err := natsutil.EnsureStream(ctx, d.js, natsutil.StreamConfig{}); err != nil {
		return fmt.Errorf("scheduler: %w", err)
	}
	if d.kv, err = openState(ctx, d.js, d.f.Lease.Replicas); err != nil {
		return fmt.Errorf("scheduler: %w", err)
	}
	if d.recs, err = watchRecords(ctx, d.kv); err != nil {
		return fmt.Errorf("scheduler: %w", err)
	}
	d.lease, err = lease.Open(ctx, d.js, lease.Config{Name: cfg.Name, TTL: time.Duration(d.f.Lease.TTL), Replicas: d.f.Lease.Replicas}, d.log)
	if err != nil {
		return fmt.Errorf("scheduler: %w", err)
	}
	soon := make(chan struct{}, 1)
	raised := func(h protocol.Hint) {
		d.log.Info("hint_raised", "host", h.Host, "kind", string(h.Kind))
		select {
		case soon <- struct{}{}:
		default:
		}
	}
	drains, err := watchDrains(ctx, d.js, d.f.HostBucket, d.fleet, d.log)
	if err != nil {
		return fmt.Errorf("scheduler: %w", err)
	}
	if err := follow(ctx, d.js, d.fleet, time.Duration(d.f.Demand.Window), raised, d.log); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("scheduler: %w", err)
	}
	for _, ready := range []<-chan struct{}{d.recs.ready, drains} {
		select {
		case <-ready:
		case <-ctx.Done():
			return nil
		}
	}
	leaseDone := make(chan error, 1)
	go func() { leaseDone <- d.lease.Run(ctx) }()
	defer func() { <-leaseDone }()
	d.log.Info("scheduler_started", "name", cfg.Name, "mode", cfg.Mode, "interval", cfg.Interval)

	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	// A hint waits HintDelay, so that the samples behind it arrive first
	// and several hints raised together make one cycle.
	var hintTimer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.lease.Changed():
			d.published = false
			if d.lease.Held() {
				d.cycle(ctx)
			}
		case <-soon:
			if hintTimer == nil {
				hintTimer = time.After(time.Duration(d.f.HintDelay))
			}
		case <-hintTimer:
			hintTimer = nil
			d.cycle(ctx)
		case <-tick.C:
			d.cycle(ctx)
		}
	}
}

// cycle plans once if this instance holds the lease.
func (d *daemon) cycle(ctx context.Context) {
	if !d.lease.Held() {
		return
	}
	now := time.Now()
	derived, unknown := d.chunks(ctx, now)
	inv, p := planCycle(d.fleet, d.f, derived, planning(d.recs.snapshot(), now, time.Duration(d.f.MigrateTimeout)), storedTimes(ctx, d.kv), now)
	p = withoutSources(p, unknown)
	id := now.UTC().Format("20060102T150405.000Z") + "-" + protocol.EscapeToken(d.cfg.Name)
	msg := toProtocol(inv, p, id, d.cfg.Name, d.cfg.Mode, now)
	// An advisory plan goes out when it says something new: the first
	// after taking the lease, then each that differs from the last. In
	// execute mode every plan with moves goes out too, since its moves
	// are carried out and their outcomes name it.
	publish := !d.published || !sameContent(d.last, msg) || d.cfg.Mode == protocol.ModeExecute && len(msg.Moves) > 0
	if publish {
		if err := d.lease.Check(ctx); err != nil {
			d.log.Warn("plan_not_published", "plan", id, "err", err)
			return
		}
		if err := d.publish(ctx, protocol.PlanSubject, msg, id); err != nil {
			d.log.Error("plan_publish_failed", "plan", id, "err", err)
			return
		}
		d.last, d.published = msg, true
		d.log.Info("plan_published", "plan", id, "moves", len(msg.Moves), "unresolved", len(msg.Unresolved))
	}
	st := Status{Scheduler: d.cfg.Name, Mode: d.cfg.Mode, TS: now.UTC(), VMs: len(inv.VMs), Plan: id,
		Published: publish, Moves: len(msg.Moves), Unresolved: len(msg.Unresolved)}
	if d.cfg.Executor != nil {
		st.Executor = d.cfg.Executor.Name()
	}
	for _, h := range inv.Hosts {
		st.Hosts++
		if h.Down {
			st.HostsDown++
		}
	}
	if err := putStatus(ctx, d.kv, st); err != nil {
		d.log.Warn("status_write_failed", "err", err)
	}
	if d.cfg.Mode == protocol.ModeExecute {
		d.execute(ctx, msg)
	}
}

// publish sends a plan (on protocol.PlanSubject) or a move outcome (on
// its protocol.OutcomeSubject) with msgID as its de-duplication id.
func (d *daemon) publish(ctx context.Context, subject string, v any, msgID string) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = d.js.Publish(ctx, subject, b, jetstream.WithMsgID(msgID))
	return err
}

// chunks asks each live host's libvirt for chunks when that is
// configured, at most every libvirt.refresh (and a host first seen since
// at once): private networks change rarely, and a round of virsh over ssh
// to every host costs seconds. A host whose libvirt does not answer keeps
// the chunks of its last answer, since planning its VMs as singletons
// would split a chunk; unresolved lists the live hosts that never
// answered, with why, which must not be sources: their chunks are
// unknown.
func (d *daemon) chunks(ctx context.Context, now time.Time) (derived map[string]string, unresolved map[string]string) {
	if d.cfg.Virsh == nil {
		return nil, nil
	}
	if d.libvirt == nil {
		d.libvirt = map[string]*hostChunks{}
	}
	refresh := d.derived == nil || now.Sub(d.derivedAt) >= time.Duration(d.f.Libvirt.Refresh)
	asked := false
	unresolved = map[string]string{}
	for _, h := range d.fleet.Hosts(now) {
		if h.Down {
			continue
		}
		hc := d.libvirt[h.Name]
		if hc == nil {
			hc = &hostChunks{}
			d.libvirt[h.Name] = hc
		} else if !refresh {
			if hc.nets == nil {
				unresolved[h.Name] = unknownChunks(hc.err)
			}
			continue
		}
		asked = true
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		n, err := inventory.GatherNets(cctx, h.Name, d.cfg.Virsh(h.Name), d.f.Libvirt.PrivateBridges)
		cancel()
		hc.err = err
		switch {
		case err == nil:
			hc.nets, hc.at = &n, now
		case hc.nets != nil:
			d.log.Warn("libvirt_chunks_kept", "host", h.Name, "err", err, "derived_at", hc.at)
		default:
			d.log.Warn("libvirt_chunks_failed", "host", h.Name, "err", err)
			unresolved[h.Name] = unknownChunks(err)
		}
	}
	if refresh {
		d.derivedAt = now
	}
	if asked || d.derived == nil {
		var nets []inventory.HostNets
		for _, hc := range d.libvirt {
			if hc.nets != nil {
				nets = append(nets, *hc.nets)
			}
		}
		d.derived = inventory.Chunks(nets)
	}
	return d.derived, unresolved
}

func unknownChunks(err error) string {
	return fmt.Sprintf("not a source: its chunks are unknown, libvirt never answered (%v)", err)
}

func virshRunner(virsh, uriTemplate string) func(host string) inventory.Runner {
	return func(host string) inventory.Runner {
		uri := strings.ReplaceAll(uriTemplate, "{host}", host)
		return func(ctx context.Context, args ...string) ([]byte, error) {
			cmd := exec.CommandContext(ctx, virsh, append([]string{"-c", uri}, args...)...)
			cmd.Env = append(cmd.Environ(), "LC_ALL=C")
			out, err := cmd.Output()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) && len(ee.Stderr) > 0 {
					return nil, fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
				}
				return nil, err
			}
			return out, nil
		}
	}
}
