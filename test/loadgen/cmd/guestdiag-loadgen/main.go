// Command guestdiag-loadgen plays a fleet of VMs' agents behind channel
// sockets for real relays to connect to, and, given NATS, reports what the
// pipeline behind them keeps up with: messages stored and through the
// collectors per second, KV writes per second, and the time from a crit
// result's write to its alert. A test tool; not packaged.
//
//	guestdiag-loadgen -hosts 2 -vms 500 -speed 20 -dir /tmp/fleet -nats nats://127.0.0.1:4222
//
// then, per host hvN: guestdiag-relay --host hvN --glob '/tmp/fleet/hvN/domain-*/org.guestdiag.agent.0'
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/guestdiag/guestdiag/test/loadgen"
)

type options struct {
	hosts, vms      int
	dir             string
	speed           float64
	natsURL         string
	durable         string
	critRate        float64
	every, duration time.Duration
	warmup          time.Duration
}

func main() {
	var o options
	fs := flag.NewFlagSet("guestdiag-loadgen", flag.ExitOnError)
	fs.IntVar(&o.hosts, "hosts", 1, "hosts hv1…hvN, one relay each")
	fs.IntVar(&o.vms, "vms", 100, "VMs per host")
	fs.StringVar(&o.dir, "dir", "", "`folder` of the channel sockets, one sub-folder per host (required)")
	fs.Float64Var(&o.speed, "speed", 1, "time compression: intervals are divided by it")
	fs.StringVar(&o.natsURL, "nats", "", "NATS `url`s to measure the pipeline through; none measures nothing")
	fs.StringVar(&o.durable, "durable", "", "the collectors' durable consumer (default theirs)")
	fs.Float64Var(&o.critRate, "crit-rate", 0, "crit firewall results per second over the fleet, each on a VM not used before, timed to their alerts")
	fs.DurationVar(&o.every, "every", 5*time.Second, "report interval")
	fs.DurationVar(&o.warmup, "warmup", 10*time.Second, "time before the measured window starts")
	fs.DurationVar(&o.duration, "duration", 0, "measured window, then exit; 0 runs until interrupted")
	_ = fs.Parse(os.Args[1:])
	if o.dir == "" {
		fmt.Fprintln(os.Stderr, "guestdiag-loadgen: -dir is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "guestdiag-loadgen:", err)
		os.Exit(1)
	}
}

type host struct {
	name  string
	fleet *loadgen.Fleet
	clock *loadgen.AlertClock
}

func run(ctx context.Context, o options) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var nc *nats.Conn
	var probe *loadgen.Probe
	if o.natsURL != "" {
		var err error
		if nc, err = nats.Connect(o.natsURL, nats.MaxReconnects(-1)); err != nil {
			return err
		}
		defer nc.Close()
		if probe, err = loadgen.NewProbe(nc, o.durable); err != nil {
			return err
		}
	}
	hosts := make([]*host, o.hosts)
	for i := range hosts {
		h := &host{name: fmt.Sprintf("hv%d", i+1)}
		cfg := loadgen.Config{VMs: o.vms, Dir: filepath.Join(o.dir, h.name), Speed: o.speed, Seed: uint64(i), Logger: log}
		if nc != nil && o.critRate > 0 {
			var err error
			if h.clock, err = loadgen.NewAlertClock(nc, h.name); err != nil {
				return err
			}
			defer h.clock.Close()
			cfg.OnCrit = h.clock.Written
		}
		f, err := loadgen.Start(ctx, cfg)
		if err != nil {
			return err
		}
		defer f.Close()
		h.fleet = f
		hosts[i] = h
		fmt.Printf("host %s: %d VMs, relay glob %s\n", h.name, o.vms, loadgen.Glob(cfg.Dir))
	}
	perVM := hosts[0].fleet.PerVM()
	fmt.Printf("fleet: %d hosts x %d VMs at speed %g (time compressed %gx): the load of %d VMs in real time, offered %.0f msgs/s (%.4f msgs/s per real VM)\n",
		o.hosts, o.vms, o.speed, o.speed, int(float64(o.hosts*o.vms)*o.speed), perVM*float64(o.hosts*o.vms)*o.speed, perVM)

	crits := make(chan struct{})
	if o.critRate > 0 {
		go injectCrits(ctx, hosts, o, crits)
	}
	var first, last loadgen.Sample
	var firstStats, lastStats loadgen.Stats
	begin := time.Now()
	tick := time.NewTicker(o.every)
	defer tick.Stop()
	measuring := false
	var cpu0 time.Duration
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		st := total(hosts)
		// Without NATS only the time is sampled: the fleet's own rates
		// still print and -duration still ends the run.
		s := loadgen.Sample{At: time.Now()}
		if probe != nil {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			var err error
			s, err = probe.Sample(sctx)
			cancel()
			if err != nil {
				log.Warn("probe_failed", "err", err)
				continue
			}
		}
		if !measuring && time.Since(begin) >= o.warmup {
			measuring, first, firstStats = true, s, st
			cpu0 = cpuTime()
			if o.critRate > 0 {
				close(crits)
			}
		}
		if last.At.IsZero() {
			last, lastStats = s, st
			continue
		}
		r := s.Since(last)
		d := s.At.Sub(last.At).Seconds()
		fmt.Printf("%6.0fs  written %7.0f/s  acked %7.0f/s  stored %7.0f/s  through collectors %7.0f/s  kv writes %6.0f/s  lag %7d  spooled %d resent %d\n",
			time.Since(begin).Seconds(), float64(st.Written-lastStats.Written)/d, float64(st.Acked-lastStats.Acked)/d,
			r.Stored, r.Processed, r.KVWrites, s.StreamLast-s.AckFloor, st.Spooled, st.Resent)
		last, lastStats = s, st
		if measuring && o.duration > 0 && s.At.Sub(first.At) >= o.duration {
			summary(hosts, first, s, firstStats, st)
			fmt.Printf("LOADGEN cpu_s=%.2f stream_leader=%s consumer_leader=%s\n", (cpuTime() - cpu0).Seconds(), s.StreamLeader, s.ConsumerLeader)
			return nil
		}
	}
}

func total(hosts []*host) loadgen.Stats {
	var t loadgen.Stats
	for _, h := range hosts {
		s := h.fleet.Stats()
		t.Messages += s.Messages
		t.Written += s.Written
		t.Resent += s.Resent
		t.Acked += s.Acked
		t.Spooled += s.Spooled
		t.Bytes += s.Bytes
		t.Connects += s.Connects
		t.Crits += s.Crits
	}
	return t
}

// injectCrits starts once the measured window opens and writes crits at
// the rate asked, each on the next VM of the next host, so that no VM's
// alert toggles often enough to be damped as flapping.
func injectCrits(ctx context.Context, hosts []*host, o options, start <-chan struct{}) {
	select {
	case <-start:
	case <-ctx.Done():
		return
	}
	t := time.NewTicker(time.Duration(float64(time.Second) / o.critRate))
	defer t.Stop()
	for n := 0; n < len(hosts)*o.vms; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hosts[n%len(hosts)].fleet.Crit(n / len(hosts))
	}
}

func summary(hosts []*host, first, last loadgen.Sample, fs, ls loadgen.Stats) {
	d := last.At.Sub(first.At).Seconds()
	r := last.Since(first)
	fmt.Printf("SUMMARY window_s=%.0f written_per_s=%.0f acked_per_s=%.0f stored_per_s=%.0f processed_per_s=%.0f kv_writes_per_s=%.0f bytes_per_msg=%.0f lag_start=%d lag_end=%d resent=%d\n",
		d, float64(ls.Written-fs.Written)/d, float64(ls.Acked-fs.Acked)/d, r.Stored, r.Processed, r.KVWrites,
		float64(ls.Bytes-fs.Bytes)/float64(max(1, ls.Written-fs.Written)),
		first.StreamLast-first.AckFloor, last.StreamLast-last.AckFloor, ls.Resent)
	var all []time.Duration
	waiting := 0
	for _, h := range hosts {
		if h.clock == nil {
			continue
		}
		l, w := h.clock.Latencies()
		all = append(all, l...)
		waiting += w
	}
	if len(all) > 0 || waiting > 0 {
		slices.Sort(all)
		fmt.Printf("ALERTS n=%d waiting=%d p50_ms=%.1f p99_ms=%.1f max_ms=%.1f\n", len(all), waiting,
			ms(loadgen.Quantile(all, 0.5)), ms(loadgen.Quantile(all, 0.99)), ms(loadgen.Quantile(all, 1)))
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
