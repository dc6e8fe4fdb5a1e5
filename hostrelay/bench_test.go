package hostrelay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/checks/resources"
	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/internal/pause"
	"github.com/guestdiag/guestdiag/protocol"
	"github.com/nats-io/nats.go/jetstream"
)

// The relay's figures: 100 VM channels on unix sockets (the benchmark plays
// QEMU's listening side and the agents), an embedded JetStream server with
// file storage, and acks back to every guest. Relay, server and load
// generator share the CPUs given by -cpu. Run:
//
//	go test ./hostrelay -run '^$' -bench 'BenchmarkRelayThroughput' -benchtime 200000x -cpu 1
//	go test ./hostrelay -run '^$' -bench 'BenchmarkRelayLatency1000' -benchtime 10000x -cpu 1

const benchChannels = 100

// benchLines writes one agent's result lines: a resources result with a
// finding and resources.Data's CPU, memory and load, about 600 bytes,
// as an agent sends every interval.
type benchLines struct {
	head, tail []byte
}

func newBenchLines(tb testing.TB, run string) benchLines {
	tb.Helper()
	data, err := json.Marshal(resources.Data{
		CPU:    &resources.CPUData{WindowSec: 30, Count: 4, UsedPct: 93.1, UserPct: 80.2, SystemPct: 10.1, IowaitPct: 1.2, StealPct: 0.4, IdlePct: 8.1},
		Memory: &resources.MemoryData{TotalBytes: 8 << 30, AvailableBytes: 2 << 30, UsedPct: 75},
		Load:   &resources.LoadData{Load1: 3.1, Load5: 2.7, Load15: 2.2},
	})
	if err != nil {
		tb.Fatal(err)
	}
	first := testTS.Add(-time.Minute)
	b := line(tb, protocol.Envelope{V: 1, Kind: protocol.KindResult, Run: run, Seq: 1, TS: testTS,
		Check: "resources", Status: protocol.StatusCrit, Summary: "cpu 93% for 3 samples",
		Findings: []protocol.Finding{{Code: "res.cpu_high", Severity: protocol.SeverityCrit,
			Message: "CPU at 93.1% for 3 samples (threshold 90%)", Count: 3, First: &first, Last: &testTS}},
		Data: data})
	head, tail, ok := bytes.Cut(b, []byte(`"seq":1,`))
	if !ok {
		tb.Fatalf("no seq in %s", b)
	}
	l := benchLines{head: append(head, `"seq":`...), tail: append([]byte(","), tail...)}
	if _, err := protocol.Decode(bytes.TrimSuffix(l.append(nil, 12345), []byte("\n"))); err != nil {
		tb.Fatalf("benchmark line does not validate: %v", err)
	}
	return l
}

func (l benchLines) append(b []byte, seq uint64) []byte {
	b = append(b, l.head...)
	b = strconv.AppendUint(b, seq, 10)
	return append(b, l.tail...)
}

// startBenchRelay starts a server, benchChannels fake channels and a relay
// without rate limits, and returns the connected guests and a check that the
// stream holds n guest messages.
func startBenchRelay(b *testing.B) ([]*fakeGuest, func(n int)) {
	b.Helper()
	srv := natstest.Start(b)
	dir := socketDir(b)
	qs := make([]*fakeQEMU, benchChannels)
	for i := range qs {
		qs[i] = listenChannel(b, filepath.Join(dir, fmt.Sprintf("domain-%d-vm%03d", i+1, i), channelFile))
	}
	cfg := testConfig(dir)
	cfg.Rate, cfg.Burst = math.Inf(1), 1
	cfg.MaxBytesRate = math.Inf(1)
	_, js := startRelay(b, srv, cfg, slog.New(slog.DiscardHandler))
	guests := make([]*fakeGuest, benchChannels)
	for i, q := range qs {
		guests[i] = q.accept(b)
	}
	check := func(n int) {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		st, err := js.Stream(ctx, natsutil.StreamName)
		if err != nil {
			b.Fatal(err)
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter("guestdiag.report.>"))
		if err != nil {
			b.Fatal(err)
		}
		var got uint64
		for _, c := range info.State.Subjects {
			got += c
		}
		if got != uint64(n) {
			b.Fatalf("stream holds %d reports, want %d", got, n)
		}
	}
	return guests, check
}

// share splits n messages over the channels.
func share(n, i int) uint64 {
	per := n / benchChannels
	if i < n%benchChannels {
		per++
	}
	return uint64(per)
}

// workerErrs collects what the guests' goroutines ran into: only the
// benchmark's own goroutine may stop it.
type workerErrs struct {
	mu   sync.Mutex
	errs []error
}

func (w *workerErrs) add(err error) {
	w.mu.Lock()
	w.errs = append(w.errs, err)
	w.mu.Unlock()
}

func (w *workerErrs) check(tb testing.TB) {
	tb.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := errors.Join(w.errs...); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkRelayThroughput has every guest send its share of b.N messages
// as fast as the relay takes them, and stops the clock when every guest has
// its last ack.
func BenchmarkRelayThroughput(b *testing.B) {
	guests, check := startBenchRelay(b)
	lines := make([]benchLines, len(guests))
	for i := range guests {
		lines[i] = newBenchLines(b, fmt.Sprintf("bench%03d", i))
	}
	var errs workerErrs
	b.ResetTimer()
	start := time.Now()
	cpu0, cpuOK := processCPU()
	var wg sync.WaitGroup
	for i, g := range guests {
		n := share(b.N, i)
		if n == 0 {
			continue
		}
		wg.Go(func() {
			var buf []byte
			for seq := uint64(1); seq <= n; seq++ {
				buf = lines[i].append(buf, seq)
				if len(buf) >= 32<<10 || seq == n {
					if err := g.write(buf); err != nil {
						errs.add(err)
						return
					}
					buf = buf[:0]
				}
			}
			if err := g.requireAck(fmt.Sprintf("bench%03d", i), n); err != nil {
				errs.add(err)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, _ := processCPU()
	b.StopTimer()
	errs.check(b)
	check(b.N)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	if cpuOK {
		// On a shared machine wall time says more about the neighbours;
		// messages per CPU second is what one core of our own does.
		b.ReportMetric(float64(b.N)/(cpu1-cpu0).Seconds(), "msgs/cpu-s")
	}
}

// BenchmarkRelayLatency1000 sends 1,000 messages a second in total, ten a
// second from each of 100 guests, one line per write as the agent does, and
// reports the time from a guest's write to the ack that covers it.
func BenchmarkRelayLatency1000(b *testing.B) {
	const perGuest = 100 * time.Millisecond // 10 msgs/s × 100 guests
	guests, check := startBenchRelay(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	type guestLat struct {
		sent  []time.Time // by seq-1
		acked uint64
		lat   []time.Duration
	}
	lats := make([]*guestLat, len(guests))
	for i, g := range guests {
		gl := &guestLat{sent: make([]time.Time, share(b.N, i))}
		lats[i] = gl
		g.mu.Lock()
		g.onAck = func(a protocol.Ack, at time.Time) {
			for ; gl.acked < a.Seq && gl.acked < uint64(len(gl.sent)); gl.acked++ {
				gl.lat = append(gl.lat, at.Sub(gl.sent[gl.acked]))
			}
		}
		g.mu.Unlock()
	}

	lines := make([]benchLines, len(guests))
	for i := range guests {
		lines[i] = newBenchLines(b, fmt.Sprintf("lat%03d", i))
	}
	var errs workerErrs
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i, g := range guests {
		n := share(b.N, i)
		if n == 0 {
			continue
		}
		gl := lats[i]
		wg.Go(func() {
			// Spread the guests over the interval so the total rate is even.
			if pause.For(ctx, time.Duration(i)*perGuest/benchChannels) != nil {
				return
			}
			tick := time.NewTicker(perGuest)
			defer tick.Stop()
			var buf []byte
			for seq := uint64(1); seq <= n; seq++ {
				buf = lines[i].append(buf[:0], seq)
				g.mu.Lock()
				gl.sent[seq-1] = time.Now()
				g.mu.Unlock()
				if err := g.write(buf); err != nil {
					errs.add(err)
					return
				}
				if seq < n {
					<-tick.C
				}
			}
			if err := g.requireAck(fmt.Sprintf("lat%03d", i), n); err != nil {
				errs.add(err)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	errs.check(b)
	check(b.N)

	var all []time.Duration
	for i, g := range guests {
		g.mu.Lock()
		all = append(all, lats[i].lat...)
		g.mu.Unlock()
	}
	if len(all) != b.N {
		b.Fatalf("measured %d latencies, want %d", len(all), b.N)
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		return float64(all[int(math.Ceil(p*float64(len(all))))-1]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
}
