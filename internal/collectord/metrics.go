package collectord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/guestdiag/guestdiag/collector"
	"github.com/guestdiag/guestdiag/internal/metricsrv"
)

// serveMetrics exports the collector's counters on addr until ctx ends;
// "" serves nothing. It returns once the listener is open, so that a bad
// address fails at start.
func serveMetrics(ctx context.Context, wg *sync.WaitGroup, addr string, c *collector.Collector, nc *nats.Conn, logger *slog.Logger) error {
	if addr == "" {
		return nil
	}
	ln, err := metricsrv.Listen(addr)
	if err != nil {
		return err
	}
	reg := metricsrv.NewRegistry()
	for _, m := range []struct {
		name, help string
		get        func(collector.Stats) uint64
	}{
		{"applied", "Messages that changed a VM's record.", func(s collector.Stats) uint64 { return s.Applied }},
		{"stale", "Messages already applied or older than the record.", func(s collector.Stats) uint64 { return s.Stale }},
		{"rejected", "Valid messages refused to keep a record bounded.", func(s collector.Stats) uint64 { return s.Rejected }},
		{"poison", "Messages that could not be decoded, terminated.", func(s collector.Stats) uint64 { return s.Poison }},
		{"deferred", "Messages of a newer protocol version, handed back.", func(s collector.Stats) uint64 { return s.Deferred }},
		{"failed", "State updates that failed, handed back for redelivery.", func(s collector.Stats) uint64 { return s.Failed }},
		{"conflicts", "Compare-and-set conflicts with another collector, retried.", func(s collector.Stats) uint64 { return s.Conflicts }},
		{"alerts_published", "Alert transitions published on NATS.", func(s collector.Stats) uint64 { return s.Published }},
	} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "guestdiag_collector_" + m.name + "_total", Help: m.help,
		}, func() float64 { return float64(m.get(c.Stats())) }))
	}
	healthy := func() error {
		if !nc.IsConnected() {
			return fmt.Errorf("nats %s", nc.Status())
		}
		if _, ready := c.VMs(); !ready {
			return errors.New("starting: state not loaded yet")
		}
		return nil
	}
	wg.Go(func() { metricsrv.Serve(ctx, ln, metricsrv.Handler(reg, healthy), logger) })
	return nil
}
