//go:build linux

package processes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/guestdiag/guestdiag/checks/internal/kmsg"
	"golang.org/x/sys/unix"
)

// Watch follows the events of the config until ctx ends: unit exits from
// systemd's D-Bus signals, OOM kills from /dev/kmsg and from cgroup v2
// memory.events, and with trace_signals the signals sent. A source that
// cannot be followed is logged and the others go on; Watch returns an
// error only when none can be.
func (p *Processes) Watch(ctx context.Context, trigger func()) error {
	if !p.cfg.Events {
		return fmt.Errorf("processes: events are off in the config: %w", errors.ErrUnsupported)
	}
	watchers := []struct {
		name string
		run  func(context.Context, func()) error
	}{
		{"systemd", p.watchUnits},
		{"kmsg", p.watchKmsg},
		{"memory_events", p.watchMemoryEvents},
	}
	if p.cfg.TraceSignals {
		watchers = append(watchers, struct {
			name string
			run  func(context.Context, func()) error
		}{"signal_generate", p.traceSignals})
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, w := range watchers {
		wg.Go(func() {
			err := w.run(ctx, trigger)
			if err == nil || ctx.Err() != nil {
				return
			}
			p.logger.Warn("processes_event_source_failed", "source", w.name, "err", err)
			mu.Lock()
			errs = append(errs, fmt.Errorf("%s: %w", w.name, err))
			mu.Unlock()
		})
	}
	wg.Wait()
	if ctx.Err() != nil || len(errs) < len(watchers) {
		return nil
	}
	return errors.Join(errs...)
}

// watchKmsg follows the kernel log from now on for the OOM killer's
// reports. Reading /dev/kmsg needs CAP_SYSLOG when kernel.dmesg_restrict
// is 1 (Debian's default).
func (p *Processes) watchKmsg(ctx context.Context, trigger func()) error {
	kr, err := kmsg.Open(ctx, p.cfg.KmsgPath)
	if err != nil {
		return err
	}
	defer kr.Close()
	// Only what comes from now on: older kills are in the log's history,
	// which the logs check reads.
	if err := kr.SeekEnd(); err != nil {
		return err
	}
	var r oomReader
	buf := make([]byte, 8<<10)
	for {
		n, err := kr.Read(buf) // parked in the poller until a record comes
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, unix.EPIPE):
			continue // records overwritten before we read them
		case err != nil:
			return err
		}
		rec, err := kmsg.Parse(buf[:n])
		if err != nil || rec.Facility != 0 {
			continue
		}
		// A record's stamp is on the monotonic clock; put it on the wall
		// clock as of now, not as of the watcher's start: a guest's wall
		// clock drifts against its monotonic one (a second in minutes
		// under TCG) and NTP steps it.
		at := time.Now().Add(time.Duration(rec.Usec)*time.Microsecond - monotonic())
		o, ok := r.line(rec.Message, at)
		if !ok {
			continue
		}
		o.Seen = time.Now()
		p.readCgroupMemory(&o)
		p.ev.addOOM(o)
		trigger()
	}
}

// readCgroupMemory adds the victim's cgroup's memory figures when that
// cgroup is in a cgroup v2 tree under CgroupRoot.
func (p *Processes) readCgroupMemory(o *OOMKill) {
	if o.Cgroup == "" {
		return
	}
	dir := filepath.Join(p.cfg.CgroupRoot, filepath.Clean("/"+o.Cgroup))
	read := func(name string) *uint64 {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil
		}
		if v, ok := cgroupBytes(b); ok {
			return &v
		}
		return nil
	}
	o.MemCurrent, o.MemMax, o.MemPeak = read("memory.current"), read("memory.max"), read("memory.peak")
	if b, err := os.ReadFile(filepath.Join(dir, "memory.events")); err == nil {
		o.Kills, _ = oomKillCount(b)
	}
}

// monotonic is the time since boot on the clock kmsg stamps records
// with.
func monotonic() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
