package hostrelay

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/internal/pause"
	"github.com/guestdiag/guestdiag/protocol"
)

// Issue 9's figures at 1,000 channels. The relay runs as a child process
// (this test binary, TestRelayBenchChild), so that its CPU time and peak
// RSS are its own and not the NATS server's or the load generator's, which
// stay in the benchmark's process. In the same run the same messages (same
// reports, subjects, message ids, file storage) are published to a fresh
// server with no relay in between, and the ratio is reported. Run:
//
//	go test ./hostrelay -run '^$' -bench 'BenchmarkRelay1000Channels' -benchtime 200000x -cpu 1
const (
	bench1000     = 1000
	benchChildEnv = "GUESTDIAG_BENCH_RELAY_CHILD"
)

// TestRelayBenchChild is the relay process of BenchmarkRelay1000Channels.
func TestRelayBenchChild(t *testing.T) {
	dir := os.Getenv(benchChildEnv)
	if dir == "" {
		t.Skip("runs only as the relay process of BenchmarkRelay1000Channels")
	}
	cfg := testConfig(dir)
	cfg.NATSURL = os.Getenv("GUESTDIAG_BENCH_NATS")
	cfg.Rate, cfg.Burst, cfg.MaxBytesRate = math.Inf(1), 1, math.Inf(1)
	cfg.RescanInterval = time.Second
	// The machine is shared: a PubAck may take seconds while 1,000 guests
	// start at once, and the load generator does not resend as agents do.
	cfg.PublishTimeout = time.Minute
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// As the daemon does: its default soft memory limit, or GOMEMLIMIT.
	ApplyMemoryLimit(cfg, log)
	writeHeapProfiles(ctx)
	if err := Run(ctx, cfg, log); err != nil {
		t.Fatal(err)
	}
	if p := os.Getenv("GUESTDIAG_BENCH_HEAP"); p != "" {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(os.Stderr, "relay memstats: heap_sys=%d heap_inuse=%d stack_inuse=%d sys=%d gc=%d\n", ms.HeapSys>>20, ms.HeapInuse>>20, ms.StackInuse>>20, ms.Sys>>20, ms.NumGC)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		_ = pprof.Lookup("heap").WriteTo(f, 0)
	}
}

// writeHeapProfiles writes the heap profile every 2 s to
// $GUESTDIAG_BENCH_HEAP.NN when that variable is set, to see what a relay
// child holds while its channels are busy rather than after they drained.
func writeHeapProfiles(ctx context.Context) {
	p := os.Getenv("GUESTDIAG_BENCH_HEAP")
	if p == "" {
		return
	}
	go func() {
		for i := 0; ; i++ {
			if pause.For(ctx, 2*time.Second) != nil {
				return
			}
			if f, err := os.Create(fmt.Sprintf("%s.%02d", p, i)); err == nil {
				_ = pprof.Lookup("heap").WriteTo(f, 0)
				_ = f.Close()
			}
		}
	}()
}

// childUsage reads a process's CPU time and peak RSS from /proc.
func childUsage(pid int) (cpu time.Duration, peakRSS int64, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	cpu = time.Duration(utime+stime) * time.Second / 100 // USER_HZ
	st, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer st.Close()
	sc := bufio.NewScanner(st)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			peakRSS = kb << 10
		}
	}
	return cpu, peakRSS, nil
}

func BenchmarkRelay1000Channels(b *testing.B) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		b.Skip("needs /proc to measure the relay process")
	}
	share := func(i int) uint64 {
		per := b.N / bench1000
		if i < b.N%bench1000 {
			per++
		}
		return uint64(per)
	}
	lines := make([]benchLines, bench1000)
	for i := range lines {
		lines[i] = newBenchLines(b, fmt.Sprintf("b%04d", i))
	}

	// The relay.
	srv := natstest.Start(b)
	dir := socketDir(b)
	qs := make([]*fakeQEMU, bench1000)
	for i := range qs {
		qs[i] = listenChannel(b, filepath.Join(dir, fmt.Sprintf("domain-%d-vm%04d", i+1, i), channelFile))
	}
	args := []string{"-test.run=^TestRelayBenchChild$"}
	// The relay's own CPU profile: -cpuprofile of the benchmark would
	// profile the load generator and the NATS server.
	if p := os.Getenv("GUESTDIAG_BENCH_RELAY_CPUPROFILE"); p != "" {
		args = append(args, "-test.cpuprofile="+p, "-test.memprofile="+p+".mem")
	}
	child := exec.Command(os.Args[0], args...)
	child.Env = append(os.Environ(), benchChildEnv+"="+dir, "GUESTDIAG_BENCH_NATS="+srv.ClientURL())
	if lim := os.Getenv("GUESTDIAG_BENCH_RELAY_GOMEMLIMIT"); lim != "" {
		child.Env = append(child.Env, "GOMEMLIMIT="+lim)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = child.Process.Signal(syscall.SIGTERM)
		_ = child.Wait()
	})
	guests := make([]*fakeGuest, bench1000)
	for i, q := range qs {
		guests[i] = q.accept(b)
	}
	var errs workerErrs
	b.ResetTimer()
	cpu0, _, err := childUsage(child.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i, g := range guests {
		n := share(i)
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
			// On a shared machine the last ack may take longer than one
			// wait; keep waiting while the run still moves.
			for prev := uint64(0); ; {
				err := g.requireAck(fmt.Sprintf("b%04d", i), n)
				now := g.acked(fmt.Sprintf("b%04d", i))
				if err == nil || now == prev || !strings.Contains(err.Error(), "within") {
					if err != nil {
						errs.add(err)
					}
					break
				}
				prev = now
			}
		})
	}
	wg.Wait()
	relayTook := time.Since(start)
	cpu1, peak, err := childUsage(child.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	errs.check(b)

	// The same messages with no relay: the reports the relay would have
	// made, published with their message ids to a fresh server.
	rawTook := rawPublish(b, lines, share)

	relayRate := float64(b.N) / relayTook.Seconds()
	rawRate := float64(b.N) / rawTook.Seconds()
	b.ReportMetric(relayRate, "msgs/s")
	b.ReportMetric(float64(b.N)/(cpu1-cpu0).Seconds(), "relay-msgs/cpu-s")
	b.ReportMetric(float64(peak)/(1<<20), "relay-peak-MB")
	b.ReportMetric(rawRate, "raw-msgs/s")
	b.ReportMetric(relayRate/rawRate, "ratio")
}

// rawPublish publishes each guest's share of lines as the relay's reports,
// asynchronously with a window as large as the relay's, and returns how
// long it took until every PubAck was in.
func rawPublish(b *testing.B, lines []benchLines, share func(int) uint64) time.Duration {
	b.Helper()
	srv := natstest.Start(b)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(maxAsyncPending))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := natsutil.EnsureStream(ctx, js, natsutil.StreamConfig{}); err != nil {
		b.Fatal(err)
	}
	type msg struct {
		m  *nats.Msg
		id string
	}
	var msgs []msg
	now := time.Now()
	for i := range lines {
		ch := Channel{Name: fmt.Sprintf("vm%04d", i), Path: fmt.Sprintf("/tmp/gdr/domain-%d-vm%04d/%s", i+1, i, channelFile)}
		enc := newReportEncoder("hv1", ch)
		subj := protocol.ReportSubject("hv1", ch.Name, "resources")
		key := msgKey("hv1", ch)
		for seq := uint64(1); seq <= share(i); seq++ {
			line := bytes.TrimSuffix(lines[i].append(nil, seq), []byte("\n"))
			msgs = append(msgs, msg{&nats.Msg{Subject: subj, Data: enc.encode(now, line)}, protocol.MsgID(key, fmt.Sprintf("b%04d", i), seq)})
		}
	}
	start := time.Now()
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		paf, err := js.PublishMsgAsync(m.m, jetstream.WithMsgID(m.id), jetstream.WithRetryAttempts(0))
		if err != nil {
			b.Fatal(err)
		}
		futures = append(futures, paf)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			b.Fatal(err)
		}
	}
	return time.Since(start)
}
