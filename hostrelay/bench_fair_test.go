package hostrelay

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/internal/pause"
	"github.com/guestdiag/guestdiag/protocol"
)

// BenchmarkRelayFloodFairness: one guest floods its channel as fast as it
// can write, reconnecting whenever the relay hangs up on it, while 99 others
// send ten messages a second each, one line per write as the agent does.
// It reports the calm guests' write-to-ack latency, and the same without
// the flood ("no-flood") as the baseline. "default-limits" runs
// the relay as shipped; "no-limits" turns the per-VM rate limits off, so
// that the flood reaches the relay's publishing at full speed. Run:
//
//	go test ./hostrelay -run '^$' -bench 'BenchmarkRelayFloodFairness' -benchtime 5000x -cpu 1
func BenchmarkRelayFloodFairness(b *testing.B) {
	defaults := func(cfg *Config) {
		cfg.Rate, cfg.Burst, cfg.MaxBytesRate = DefaultRate, DefaultBurst, DefaultMaxBytesRate
	}
	for _, tc := range []struct {
		name  string
		flood bool
		mod   func(*Config)
	}{
		// The baseline: on a shared machine only the difference to it
		// says what the flood costs.
		{"no-flood", false, defaults},
		{"default-limits", true, defaults},
		{"no-limits", true, func(cfg *Config) { cfg.Rate, cfg.Burst, cfg.MaxBytesRate = math.Inf(1), 1, math.Inf(1) }},
	} {
		b.Run(tc.name, func(b *testing.B) { benchFairness(b, tc.flood, tc.mod) })
	}
}

func benchFairness(b *testing.B, flooded bool, mod func(*Config)) {
	const calm, perGuest = 99, 100 * time.Millisecond
	srv := natstest.Start(b)
	dir := socketDir(b)
	flood := listenChannel(b, filepath.Join(dir, "domain-1-flood", channelFile))
	qs := make([]*fakeQEMU, calm)
	for i := range qs {
		qs[i] = listenChannel(b, filepath.Join(dir, fmt.Sprintf("domain-%d-calm%02d", i+2, i), channelFile))
	}
	cfg := testConfig(dir)
	mod(&cfg)
	r, _ := startRelay(b, srv, cfg, slog.New(slog.DiscardHandler))
	guests := make([]*fakeGuest, calm)
	for i, q := range qs {
		guests[i] = q.accept(b)
	}

	ctx, stopFlood := context.WithCancel(context.Background())
	var flooding sync.WaitGroup
	flooding.Go(func() {
		if !flooded {
			return
		}
		fl := newBenchLines(b, "flood")
		var buf []byte
		seq := uint64(0)
		for ctx.Err() == nil {
			if err := flood.ln.SetDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
				return
			}
			conn, err := flood.ln.AcceptUnix()
			if err != nil {
				continue // the relay waits for the bucket to refill
			}
			g := newFakeGuest(conn)
			for ctx.Err() == nil {
				buf = buf[:0]
				for range 50 {
					seq++
					buf = fl.append(buf, seq)
				}
				if g.write(buf) != nil {
					break
				}
			}
			conn.Close()
		}
	})
	defer func() {
		stopFlood()
		flooding.Wait()
	}()

	type guestLat struct {
		sent  []time.Time
		acked uint64
		lat   []time.Duration
	}
	n := max(1, b.N/calm)
	lats := make([]*guestLat, calm)
	for i, g := range guests {
		gl := &guestLat{sent: make([]time.Time, n)}
		lats[i] = gl
		g.mu.Lock()
		g.onAck = func(a protocol.Ack, at time.Time) {
			for ; gl.acked < a.Seq && gl.acked < uint64(len(gl.sent)); gl.acked++ {
				gl.lat = append(gl.lat, at.Sub(gl.sent[gl.acked]))
			}
		}
		g.mu.Unlock()
	}
	var errs workerErrs
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b.ResetTimer()
	var wg sync.WaitGroup
	for i, g := range guests {
		gl := lats[i]
		wg.Go(func() {
			lines := newBenchLines(b, fmt.Sprintf("calm%02d", i))
			if pause.For(wctx, time.Duration(i)*perGuest/calm) != nil {
				return
			}
			tick := time.NewTicker(perGuest)
			defer tick.Stop()
			var buf []byte
			for seq := uint64(1); seq <= uint64(n); seq++ {
				buf = lines.append(buf[:0], seq)
				g.mu.Lock()
				gl.sent[seq-1] = time.Now()
				g.mu.Unlock()
				if err := g.write(buf); err != nil {
					errs.add(err)
					return
				}
				if seq < uint64(n) {
					<-tick.C
				}
			}
			if err := g.requireAck(fmt.Sprintf("calm%02d", i), uint64(n)); err != nil {
				errs.add(err)
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	errs.check(b)
	var all []time.Duration
	for i, g := range guests {
		g.mu.Lock()
		all = append(all, lats[i].lat...)
		g.mu.Unlock()
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		return float64(all[int(math.Ceil(p*float64(len(all))))-1]) / float64(time.Millisecond)
	}
	st := r.Stats()["flood"]
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
	b.ReportMetric(float64(st.Published), "flood-stored")
	b.ReportMetric(float64(st.Dropped[DropRateLimited]), "flood-cutoffs")
}
