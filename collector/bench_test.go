package collector_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/protocol"
)

// The fleet the throughput benchmark replays: benchVMs VMs whose records
// already hold a hello and six checks, then benchPerVM messages of each,
// one in twenty a result (of the six checks in turn, a tenth of them with
// a warn finding), the rest heartbeats. The messages are in the stream
// before the collectors start, so each VM's heartbeats come far faster
// than an agent's every 10 s: the flush writes each VM's liveness record
// about once per flush rather than once per heartbeat.
const (
	benchVMs   = 5000
	benchPerVM = 40
)

var benchChecks = []string{"resources", "disk", "network", "services", "logs", "firewall"}

// BenchmarkCollectorThroughput measures messages applied by one and by two
// collectors sharing the durable, in wall time and per CPU-second of the
// benchmark process, which holds only the collectors when the server runs
// elsewhere: set GUESTDIAG_BENCH_NATS to its URL (and
// GUESTDIAG_BENCH_NATS_PID to its process id to also report its CPU), as
// test/bench/collector.sh does. Without it the server is embedded and its
// CPU counts as the collectors'. The stream is filled before the clock
// starts; the clock stops once every message is acked and the collectors
// have stopped, which writes the last coalesced heartbeats.
func BenchmarkCollectorThroughput(b *testing.B) {
	for _, n := range []int{1, 2} {
		b.Run(fmt.Sprintf("collectors=%d", n), func(b *testing.B) {
			msgs := benchVMs * benchPerVM
			var wall, cpu, srvCPU time.Duration
			var writes, liveWrites uint64
			for b.Loop() {
				b.StopTimer()
				e, stop := benchEnv(b)
				seed(b, e)
				fill(b, e)
				runtime.GC()
				cpu0, srv0 := selfCPU(), serverCPU(b)
				start := time.Now()
				b.StartTimer()
				var halt []func()
				for range n {
					halt = append(halt, benchCollector(b, e))
				}
				waitIdle(b, e)
				for _, f := range halt {
					f()
				}
				b.StopTimer()
				wall += time.Since(start)
				cpu += selfCPU() - cpu0
				srvCPU += serverCPU(b) - srv0
				writes += bucketWrites(b, e, collector.DefaultBucket)
				liveWrites += bucketWrites(b, e, collector.DefaultLivenessBucket)
				for _, f := range slices.Backward(stop) {
					f()
				}
				b.StartTimer()
			}
			total := float64(msgs * b.N)
			b.ReportMetric(total/wall.Seconds(), "msgs/s")
			if cpu > 0 {
				b.ReportMetric(total/cpu.Seconds(), "msgs/cpu-s")
			}
			if srvCPU > 0 {
				b.ReportMetric(total/srvCPU.Seconds(), "msgs/server-cpu-s")
			}
			b.ReportMetric(float64(writes)/total, "writes/msg")
			b.ReportMetric(float64(liveWrites)/total, "liveness-writes/msg")
		})
	}
}

// seed writes every VM's record and liveness record as a fleet that has
// run a while holds them.
func seed(b *testing.B, e *env) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kv, err := e.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: collector.DefaultBucket, MaxValueSize: 512 << 10, History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	live, err := e.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: collector.DefaultLivenessBucket, MaxValueSize: 4 << 10, History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	then := time.Now().UTC().Add(-2 * time.Second)
	o := collector.Origin{Run: "r1", Seq: 1, TS: then, Received: then}
	for v := range benchVMs {
		vm := collector.VM{
			Name: benchVM(v), Host: "h1", UUID: fmt.Sprintf("00000000-0000-0000-0000-%012d", v), LastSeen: then,
			Channel: collector.Channel{Name: "org.guestdiag.0", State: protocol.ChannelConnected, Since: then},
			Hello: &collector.Hello{ClaimedHostname: benchVM(v), OS: "linux", Kernel: "6.12.0", AgentVersion: "0.1.0",
				Checks: benchChecks, HeartbeatS: 10, Origin: o},
			Checks: make(map[string]*collector.Check),
		}
		for _, name := range benchChecks {
			vm.Checks[name] = &collector.Check{Kind: protocol.KindResult, Status: protocol.StatusOK, Summary: name + " ok", Data: checkData(name), Origin: o}
		}
		val, err := json.Marshal(&vm)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := kv.Put(ctx, collector.Key("h1", vm.Name), val); err != nil {
			b.Fatal(err)
		}
		// The liveness record as docs/nats.md describes it.
		lr, err := json.Marshal(map[string]any{"host": "h1", "vm": vm.Name, "last_seen": then, "heartbeat": &collector.Heartbeat{UptimeSec: 60, Origin: o}})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := live.Put(ctx, collector.Key("h1", vm.Name), lr); err != nil {
			b.Fatal(err)
		}
	}
}

func benchVM(v int) string { return fmt.Sprintf("vm%05d", v) }

// checkData is a few hundred bytes of data, about what a check's summary
// data weighs.
func checkData(name string) json.RawMessage {
	return json.RawMessage(`{"check":"` + name + `","cpu":{"load1":0.42,"load5":0.38,"load15":0.31,"cores":4},` +
		`"mem":{"total":8589934592,"available":4294967296,"swap_used":0},` +
		`"fs":[{"mount":"/","used_pct":41.5,"inodes_pct":3.2},{"mount":"/var","used_pct":63.1,"inodes_pct":5.0}]}`)
}

// fill publishes benchPerVM messages of every VM, the VMs interleaved as a
// fleet's messages arrive.
func fill(b *testing.B, e *env) {
	b.Helper()
	now := time.Now().UTC()
	for i := range benchVMs * benchPerVM {
		v, round := i%benchVMs, i/benchVMs
		vm := benchVM(v)
		seq := uint64(round + 2)
		env := heartbeat("r1", seq, now)
		subject := protocol.HeartbeatSubject("h1", vm)
		if (v+round)%20 == 0 {
			check := benchChecks[(v/20+round)%len(benchChecks)]
			env = result("r1", seq, check, protocol.StatusOK, now)
			if (v/20)%10 == 0 {
				env = withFindings(result("r1", seq, check, protocol.StatusWarn, now),
					protocol.Finding{Code: "res.mem_high", Severity: protocol.SeverityWarn, Message: "memory 93% used"})
			}
			env.Data = checkData(check)
			subject = protocol.ReportSubject("h1", vm, check)
		}
		line, err := protocol.Marshal(env)
		if err != nil {
			b.Fatal(err)
		}
		rep, _ := json.Marshal(protocol.Report{V: 1, Host: "h1", VM: vm, Channel: "org.guestdiag.0", Received: now.Add(time.Duration(i) * time.Microsecond), Guest: line[:len(line)-1]})
		if _, err := e.js.PublishAsync(subject, rep, jetstream.WithMsgID(protocol.MsgID(vm, "r1", seq))); err != nil {
			b.Fatal(err)
		}
		if i%2000 == 1999 {
			// Stay under the client's bound on unacknowledged publishes.
			<-e.js.PublishAsyncComplete()
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("filling the stream took over a minute")
	}
}

// benchEnv connects to the server of GUESTDIAG_BENCH_NATS, removing what a
// previous iteration left there, or starts an embedded one. The returned
// functions stop what was started, last first.
func benchEnv(b *testing.B) (*env, []func()) {
	b.Helper()
	url := os.Getenv("GUESTDIAG_BENCH_NATS")
	var stop []func()
	if url == "" {
		s, err := natsutil.StartServer(natsutil.ServerConfig{Port: -1, StoreDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		url = s.ClientURL()
		stop = append(stop, func() { s.Shutdown(); s.WaitForShutdown() })
	}
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	stop = append(stop, nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, s := range []string{natsutil.StreamName, collector.TimelineStream} {
		if err := js.DeleteStream(ctx, s); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			b.Fatal(err)
		}
	}
	for _, kv := range []string{collector.DefaultBucket, collector.DefaultAlertBucket, collector.DefaultLivenessBucket} {
		if err := js.DeleteKeyValue(ctx, kv); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			b.Fatal(err)
		}
	}
	if _, err := natsutil.EnsureStream(ctx, js, natsutil.StreamConfig{}); err != nil {
		b.Fatal(err)
	}
	return &env{url: url, nc: nc, js: js}, stop
}

// serverCPU is the CPU time of the server process named by
// GUESTDIAG_BENCH_NATS_PID, zero when it is not set.
func serverCPU(b *testing.B) time.Duration {
	b.Helper()
	s := os.Getenv("GUESTDIAG_BENCH_NATS_PID")
	if s == "" {
		return 0
	}
	pid, err := strconv.Atoi(s)
	if err != nil {
		b.Fatalf("GUESTDIAG_BENCH_NATS_PID: %v", err)
	}
	return processCPU(pid)
}

// bucketWrites is how many times the records of bucket were written since
// seed.
func bucketWrites(b *testing.B, e *env, bucket string) uint64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		b.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return info.State.LastSeq - benchVMs
}

func benchCollector(b *testing.B, e *env) func() {
	b.Helper()
	nc, err := nats.Connect(e.url)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	c := collector.New(collector.Config{}, nc, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln) }()
	return func() { cancel(); <-done; nc.Close() }
}

// waitIdle waits until the durable exists and has every message acked.
func waitIdle(b *testing.B, e *env) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cons, err := e.js.Consumer(ctx, natsutil.StreamName, collector.DefaultDurable)
		if err == nil {
			info, err := cons.Info(ctx)
			if err == nil && info.NumPending == 0 && info.NumAckPending == 0 {
				cancel()
				return
			}
		}
		cancel()
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatal("the collectors did not drain the stream within 5 minutes")
}
