package hostrelay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkRelayOutageMemory measures the resident memory of a relay
// process (this test binary re-run as TestRelayChild) while NATS is down
// and every channel's guest keeps writing. Channels, the outage and each
// guest's rate come from the environment; test/bench/relay_outage.sh runs
// the full figure (1,000 channels, 5 minutes):
//
//	GUESTDIAG_BENCH_CHANNELS=100 GUESTDIAG_BENCH_OUTAGE=10s \
//	  go test ./hostrelay -run '^$' -bench BenchmarkRelayOutageMemory -benchtime 1x
func BenchmarkRelayOutageMemory(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads the relay's resident memory from /proc")
	}
	channels := envInt(b, "GUESTDIAG_BENCH_CHANNELS", 100)
	outage := envDuration(b, "GUESTDIAG_BENCH_OUTAGE", 10*time.Second)
	rate := envInt(b, "GUESTDIAG_BENCH_LINES_PER_SEC", 20)

	n := startRestartableNATS(b)
	dir := socketDir(b)
	lines := newBenchLines(b, "outage")
	var written sync.WaitGroup
	stop := make(chan struct{})
	for i := range channels {
		path := filepath.Join(dir, fmt.Sprintf("domain-%d-vm%04d", i+1, i), channelFile)
		q := listenChannel(b, path)
		written.Go(func() { produce(q.ln, lines, rate, stop) })
	}
	b.Cleanup(func() {
		close(stop)
		written.Wait()
	})

	cfg := testConfig(dir)
	cfg.NATSURL = n.url()
	cfg.RescanInterval = time.Second
	cfg.BackoffMax = time.Second
	cfg.Rate, cfg.MaxBytesRate = 1e9, 1e12
	cfg.PublishTimeout = 2 * time.Second
	raw, err := json.Marshal(cfg)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRelayChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), relayChildEnv+"="+string(raw))
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	pid := cmd.Process.Pid

	// Before: 10 s of all channels flowing, or a tenth of the outage.
	warm := min(10*time.Second, max(outage/10, 2*time.Second))
	before := peakRSS(b, pid, warm)
	n.stop()
	during := peakRSS(b, pid, outage)
	n.start()
	after := peakRSS(b, pid, warm)

	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(before)/(1<<20), "MB-rss-flowing")
	b.ReportMetric(float64(during)/(1<<20), "MB-rss-outage")
	b.ReportMetric(float64(after)/(1<<20), "MB-rss-recovered")
	b.Logf("%d channels, %d lines/s each, NATS down %v: peak RSS %.1f MB flowing, %.1f MB during the outage, %.1f MB after",
		channels, rate, outage, float64(before)/(1<<20), float64(during)/(1<<20), float64(after)/(1<<20))
}

// produce plays the guests of one channel: on every connection of the
// relay it writes lines at rate a second, as an agent with a backlog
// would, and discards the acks.
func produce(ln *net.UnixListener, lines benchLines, rate int, stop <-chan struct{}) {
	go func() {
		<-stop
		ln.Close()
	}()
	var seq uint64
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() { _, _ = io.Copy(io.Discard, conn) }()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		buf := []byte("\n")
		for {
			seq++
			buf = lines.append(buf, seq)
			if _, err := conn.Write(buf); err != nil {
				break
			}
			buf = buf[:0]
			select {
			case <-tick.C:
				continue
			case <-stop:
			}
			break
		}
		tick.Stop()
		conn.Close()
	}
}

// peakRSS samples pid's resident memory every 100 ms for d and returns the
// highest, in bytes.
func peakRSS(tb testing.TB, pid int, d time.Duration) int64 {
	tb.Helper()
	var peak int64
	end := time.Now().Add(d)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(end) {
		<-tick.C
		peak = max(peak, rssOf(tb, pid))
	}
	return peak
}

func rssOf(tb testing.TB, pid int) int64 {
	tb.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatalf("relay process: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:")); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(v)), " kB"), 10, 64)
			if err != nil {
				tb.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	tb.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

func envInt(tb testing.TB, name string, def int) int {
	tb.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		tb.Fatalf("%s=%q is not a positive number", name, s)
	}
	return v
}

func envDuration(tb testing.TB, name string, def time.Duration) time.Duration {
	tb.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		tb.Fatalf("%s=%q is not a positive duration", name, s)
	}
	return v
}
