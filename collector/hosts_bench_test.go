package collector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/protocol"
)

// BenchmarkHostSamples measures one collector applying host samples of
// 100 hosts on an embedded server: one compare-and-set write of the
// host's record each, from the watched copy (no read while it is current).
//
//	go test ./collector -run '^$' -bench HostSamples -benchtime 5000x
func BenchmarkHostSamples(b *testing.B) {
	s, err := natsutil.StartServer(natsutil.ServerConfig{Port: -1, StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	c := collector.New(collector.Config{}, nc, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for {
		if _, err := js.KeyValue(ctx, collector.DefaultHostBucket); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling interval while the collector sets up
	}
	const hosts = 100
	t0 := time.Now().UTC()
	before := c.Stats().Applied
	b.ResetTimer()
	for i := range b.N {
		host := fmt.Sprintf("h%03d", i%hosts)
		u := protocol.HostUsage{V: 1, Host: host, TS: t0.Add(time.Duration(i) * time.Millisecond), IntervalS: 10,
			CPU: protocol.HostCPU{Count: 32, UsedPct: float64(i % 100)}, Memory: protocol.HostMemory{UsedPct: 50}, VMs: []protocol.VMUsage{}}
		data, _ := json.Marshal(u)
		if _, err := js.PublishAsync(protocol.HostSubject(host), data); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	deadline := time.Now().Add(5 * time.Minute)
	for c.Stats().Applied-before < uint64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("applied %d of %d samples", c.Stats().Applied-before, b.N)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "samples/s")
}
