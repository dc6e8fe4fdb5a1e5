package hostrelay

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/guestdiag/guestdiag/internal/metricsrv"
)

// relayMetrics is what the relay exports beside its per-VM counters, which
// are read from the VM table at each scrape: a VM whose channel went away
// leaves the table and so the output, which bounds the label values to the
// VMs being watched.
type relayMetrics struct {
	publish prometheus.Histogram
	ready   atomic.Bool // the stream is ensured and channels are watched
}

func newRelayMetrics() *relayMetrics {
	return &relayMetrics{
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "guestdiag_relay_publish_seconds",
			Help:    "Time from publishing a guest message to JetStream's PubAck.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
	}
}

var (
	descVMConnected = prometheus.NewDesc("guestdiag_relay_vm_connected", "1 while the VM's channel is connected.", []string{"vm"}, nil)
	descVMLines     = prometheus.NewDesc("guestdiag_relay_vm_lines_total", "Non-blank lines read from the VM, valid or not.", []string{"vm"}, nil)
	descVMMessages  = prometheus.NewDesc("guestdiag_relay_vm_messages_total", "Messages of the VM that JetStream stored (duplicates included).", []string{"vm"}, nil)
	descVMBytes     = prometheus.NewDesc("guestdiag_relay_vm_bytes_total", "Bytes read from the VM's channel.", []string{"vm"}, nil)
	descVMRejects   = prometheus.NewDesc("guestdiag_relay_vm_rejects_total", "Lines or messages of the VM not published, by reason.", []string{"vm", "reason"}, nil)
	descVMLag       = prometheus.NewDesc("guestdiag_relay_vm_lag_seconds", "Relay receive time minus the guest's ts of the VM's latest message: how long it waited in the guest's spool, plus clock skew.", []string{"vm"}, nil)
	descInFlight    = prometheus.NewDesc("guestdiag_relay_inflight_bytes", "Bytes published and not yet confirmed, over all channels.", nil, nil)
	descInFlightMax = prometheus.NewDesc("guestdiag_relay_inflight_bytes_limit", "The relay-wide bound on bytes in flight.", nil, nil)
	descNATS        = prometheus.NewDesc("guestdiag_relay_nats_connected", "1 while the relay is connected to NATS.", nil, nil)
	descChannels    = prometheus.NewDesc("guestdiag_relay_channels", "Channels being watched.", nil, nil)
)

// Describe implements prometheus.Collector.
func (r *Relay) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descVMConnected, descVMLines, descVMMessages, descVMBytes, descVMRejects, descVMLag, descInFlight, descInFlightMax, descNATS, descChannels} {
		ch <- d
	}
	r.metrics.publish.Describe(ch)
}

// Collect implements prometheus.Collector.
func (r *Relay) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	type row struct {
		name string
		st   VMStats
		lag  time.Duration
	}
	rows := make([]row, 0, len(r.vms))
	for name, v := range r.vms {
		rows = append(rows, row{name, v.snapshot(), time.Duration(v.lag.Load())})
	}
	channels := len(r.watching)
	r.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, row := range rows {
		gauge(descVMConnected, b2f(row.st.Connected), row.name)
		counter(descVMLines, row.st.Lines, row.name)
		counter(descVMMessages, row.st.Published, row.name)
		counter(descVMBytes, row.st.Bytes, row.name)
		for _, reason := range dropReasons {
			counter(descVMRejects, row.st.Dropped[reason], row.name, string(reason))
		}
		gauge(descVMLag, row.lag.Seconds(), row.name)
	}
	gauge(descInFlight, float64(r.budget.used.Load()))
	gauge(descInFlightMax, float64(r.budget.total))
	gauge(descNATS, b2f(r.nc.IsConnected()))
	gauge(descChannels, float64(channels))
	r.metrics.publish.Collect(ch)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// healthy is what /healthz reports: the relay has its stream and NATS.
func (r *Relay) healthy() error {
	switch {
	case !r.metrics.ready.Load():
		return errors.New("starting: stream not ensured yet")
	case !r.nc.IsConnected():
		return fmt.Errorf("nats %s", r.nc.Status())
	}
	return nil
}

// serveMetrics serves /metrics and /healthz on cfg.MetricsListen until ctx
// ends; it is off when the address is empty.
func (r *Relay) serveMetrics(ctx context.Context) (wait func(), err error) {
	if r.cfg.MetricsListen == "" {
		return func() {}, nil
	}
	ln, err := metricsrv.Listen(r.cfg.MetricsListen)
	if err != nil {
		return nil, err
	}
	reg := metricsrv.NewRegistry()
	reg.MustRegister(r)
	done := make(chan struct{})
	go func() {
		defer close(done)
		metricsrv.Serve(ctx, ln, metricsrv.Handler(reg, r.healthy), r.log)
	}()
	return func() { <-done }, nil
}
