package loadgen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/guestdiag/guestdiag/hostrelay"
)

// Config says what fleet to play. The zero value of every field but VMs
// and Dir means its default.
type Config struct {
	// VMs is how many VMs to play.
	VMs int
	// Dir holds one folder per VM, domain-<n>-<name>, with the channel
	// socket org.guestdiag.agent.0 in it, as libvirt lays channels out: a
	// relay finds them with the glob Dir/domain-*/org.guestdiag.agent.0, or
	// is given Channels as static channels.
	Dir string
	// Prefix starts every VM name, followed by the VM's number; default
	// "vm".
	Prefix string
	// Speed compresses time: every interval is divided by it, so a fleet
	// of N VMs at Speed S sends what N×S VMs send in real time. Default 1.
	Speed float64
	// BurstEvery is the mean time (before Speed) between two bursts of log
	// findings on one VM, and BurstLen the triggered logs results of a
	// burst, 1 s apart as the agent spaces triggered runs. Defaults 30 min
	// and 5; BurstLen < 0 turns bursts off.
	BurstEvery time.Duration
	BurstLen   int
	// AckTimeout ends a connection on which acks have not advanced for
	// that long while messages wait, as the agent does; default 30 s, not
	// compressed.
	AckTimeout time.Duration
	// OnCrit, when set, is called when a crit result that Crit asked for
	// is first written, with its VM and the time.
	OnCrit func(vm string, written time.Time)
	// Seed makes the phases of the VMs' schedules repeatable.
	Seed uint64
	// Logger; default discards.
	Logger *slog.Logger
}

// ChannelFile is the socket's name in each VM's folder, libvirt's for the
// channel with target name org.guestdiag.agent.0.
const ChannelFile = "org.guestdiag.agent.0"

// Glob is the relay glob that finds the channels of a fleet in dir.
func Glob(dir string) string { return filepath.Join(dir, "domain-*", ChannelFile) }

// Stats counts what a fleet did.
type Stats struct {
	Messages  uint64 // produced: hello, heartbeats, results
	Written   uint64 // written at least once
	Resent    uint64 // writes of a message already written before
	Acked     uint64 // acknowledged and so forgotten
	Spooled   uint64 // produced and not yet acknowledged
	Bytes     uint64 // of first writes, newlines included
	Connects  uint64 // connections the relay made
	Crits     uint64 // crit results Crit asked for
	AckErrors uint64 // host lines that were not acks
}

// Fleet is a running fleet of played VMs.
type Fleet struct {
	cfg    Config
	mix    *mix
	vms    []*vm
	start  time.Time
	cancel context.CancelFunc
	// produce is cancelled by Drain: the VMs stop making messages but go
	// on sending what they hold.
	produce context.Context
	stopGen context.CancelFunc
	wg      sync.WaitGroup

	messages, written, resent, acked, bytes, connects, crits, ackErrors atomic.Uint64
}

// Start listens on one socket per VM and starts producing. A VM produces
// whether or not the relay is connected, as an agent spools; what it holds
// is written when the relay connects. The fleet runs until Close or until
// ctx ends.
func Start(ctx context.Context, cfg Config) (*Fleet, error) {
	if cfg.VMs <= 0 || cfg.Dir == "" {
		return nil, errors.New("loadgen: VMs and Dir are required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "vm"
	}
	if cfg.Speed <= 0 {
		cfg.Speed = 1
	}
	if cfg.BurstEvery <= 0 {
		cfg.BurstEvery = 30 * time.Minute
	}
	if cfg.BurstLen == 0 {
		cfg.BurstLen = 5
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := loadMix()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &Fleet{cfg: cfg, mix: m, start: time.Now(), cancel: cancel}
	f.produce, f.stopGen = context.WithCancel(ctx)
	rng := rand.New(rand.NewPCG(cfg.Seed, uint64(cfg.VMs)))
	for i := range cfg.VMs {
		name := fmt.Sprintf("%s%05d", cfg.Prefix, i)
		folder := filepath.Join(cfg.Dir, fmt.Sprintf("domain-%d-%s", i+1, name))
		if err := os.MkdirAll(folder, 0o750); err != nil {
			f.Close()
			return nil, fmt.Errorf("loadgen: %w", err)
		}
		path := filepath.Join(folder, ChannelFile)
		_ = os.Remove(path)
		ln, err := net.Listen("unix", path)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("loadgen: channel of %s: %w", name, err)
		}
		v := newVM(f, name, path, ln, rng.Uint64())
		f.vms = append(f.vms, v)
	}
	for _, v := range f.vms {
		f.wg.Go(func() { v.listen(ctx) })
		f.wg.Go(func() { v.generate(f.produce) })
	}
	return f, nil
}

// Channels are the VMs' sockets, as a relay's static channels.
func (f *Fleet) Channels() []hostrelay.Channel {
	chs := make([]hostrelay.Channel, len(f.vms))
	for i, v := range f.vms {
		chs[i] = hostrelay.Channel{Name: v.name, Path: v.path}
	}
	return chs
}

// Checks lists the mix's checks with their intervals and result sizes.
func (f *Fleet) Checks() []Check { return append([]Check(nil), f.mix.checks...) }

// PerVM is what one VM sends per second in real time (before Speed) on
// average: heartbeats, the six checks' results and bursts of log findings;
// the hello once per run aside.
func (f *Fleet) PerVM() float64 {
	r := 1 / f.mix.beat.Seconds()
	for _, c := range f.mix.checks {
		r += 1 / c.Interval.Seconds()
	}
	if f.cfg.BurstLen > 0 {
		r += float64(f.cfg.BurstLen) / f.cfg.BurstEvery.Seconds()
	}
	return r
}

// Crit makes VM i write a crit firewall result now, as a triggered run of
// the firewall check does when the ruleset is flushed; its next regular
// result is ok again.
func (f *Fleet) Crit(i int) {
	f.crits.Add(1)
	f.vms[i%len(f.vms)].emitCrit()
}

// Stats returns the counters so far.
func (f *Fleet) Stats() Stats {
	s := Stats{
		Messages: f.messages.Load(), Written: f.written.Load(), Resent: f.resent.Load(),
		Acked: f.acked.Load(), Bytes: f.bytes.Load(), Connects: f.connects.Load(),
		Crits: f.crits.Load(), AckErrors: f.ackErrors.Load(),
	}
	s.Spooled = s.Messages - s.Acked
	return s
}

// Drain stops producing and waits until every message produced has been
// acknowledged, or ctx ends.
func (f *Fleet) Drain(ctx context.Context) error {
	f.stopGen()
	for {
		s := f.Stats()
		if s.Spooled == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("loadgen: %d messages not acknowledged: %w", s.Spooled, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Close stops the fleet and removes its sockets.
func (f *Fleet) Close() {
	f.cancel()
	for _, v := range f.vms {
		v.close()
	}
	f.wg.Wait()
}
