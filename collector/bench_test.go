package collector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/protocol"
)

// BenchmarkCollectorThroughput measures messages applied per second by one
// and by two collectors on one embedded server, with the realistic mix of
// 95 % heartbeats and 5 % results (a tenth of them with a warn finding)
// from 1,000 VMs. The stream is filled before the clock starts, so only
// consuming is timed; the server runs in the same process and shares the
// cores.
func BenchmarkCollectorThroughput(b *testing.B) {
	for _, n := range []int{1, 2} {
		b.Run(fmt.Sprintf("collectors=%d", n), func(b *testing.B) {
			const msgs, vms = 20000, 1000
			var total time.Duration
			for b.Loop() {
				b.StopTimer()
				e, stop := benchEnv(b)
				fill(b, e, msgs, vms)
				b.StartTimer()
				start := time.Now()
				for range n {
					stop = append(stop, benchCollector(b, e))
				}
				waitIdle(b, e)
				total += time.Since(start)
				b.StopTimer()
				for _, f := range slices.Backward(stop) {
					f()
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(msgs*b.N)/total.Seconds(), "msgs/s")
		})
	}
}

func fill(b *testing.B, e *env, msgs, vms int) {
	b.Helper()
	seq := make([]uint64, vms)
	now := time.Now().UTC()
	for i := range msgs {
		v := i % vms
		vm := fmt.Sprintf("vm%04d", v)
		seq[v]++
		env := heartbeat("r1", seq[v], now)
		subject := protocol.HeartbeatSubject("h1", vm)
		if i%20 == 0 {
			env = result("r1", seq[v], "resources", protocol.StatusOK, now)
			if i%200 == 0 {
				env = withFindings(result("r1", seq[v], "resources", protocol.StatusWarn, now),
					protocol.Finding{Code: "res.mem_high", Severity: protocol.SeverityWarn, Message: "memory 93% used"})
			}
			subject = protocol.ReportSubject("h1", vm, "resources")
		}
		line, err := protocol.Marshal(env)
		if err != nil {
			b.Fatal(err)
		}
		rep, _ := json.Marshal(protocol.Report{V: 1, Host: "h1", VM: vm, Received: now.Add(time.Duration(i) * time.Microsecond), Guest: line[:len(line)-1]})
		if _, err := e.js.PublishAsync(subject, rep, jetstream.WithMsgID(protocol.MsgID(vm, "r1", seq[v]))); err != nil {
			b.Fatal(err)
		}
		if i%2000 == 1999 {
			// Stay under the client's bound on unacknowledged publishes.
			<-e.js.PublishAsyncComplete()
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		b.Fatal("filling the stream took over 30s")
	}
}

// benchEnv starts a server of its own for one iteration; the returned
// functions stop what was started, last first.
func benchEnv(b *testing.B) (*env, []func()) {
	b.Helper()
	s, err := natsutil.StartServer(natsutil.ServerConfig{Port: -1, StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := natsutil.EnsureStream(ctx, js, natsutil.StreamConfig{}); err != nil {
		b.Fatal(err)
	}
	return &env{url: s.ClientURL(), nc: nc, js: js}, []func(){func() { s.Shutdown(); s.WaitForShutdown() }, nc.Close}
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
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cons, err := e.js.Consumer(ctx, "GUESTDIAG", collector.DefaultDurable)
		if err == nil {
			info, err := cons.Info(ctx)
			if err == nil && info.NumPending == 0 && info.NumAckPending == 0 {
				cancel()
				return
			}
		}
		cancel()
		time.Sleep(2 * time.Millisecond)
	}
	b.Fatal("the collectors did not drain the stream within 2 minutes")
}
