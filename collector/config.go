package collector

import (
	"context"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
)

// Defaults for Config fields left zero.
const (
	// DefaultListen keeps the API on loopback: it is unauthenticated and
	// shows what guests report. Expose it through a reverse proxy if needed.
	DefaultListen  = "127.0.0.1:8470"
	DefaultDurable = "guestdiag-collector"
	DefaultBucket  = "guestdiag_vms"
	DefaultAckWait = 30 * time.Second
	// DefaultAlertBucket holds one record per alert, firing or resolved.
	DefaultAlertBucket = "guestdiag_alerts"
	// DefaultLivenessBucket holds one small record per VM: its newest
	// heartbeat and last_seen.
	DefaultLivenessBucket = "guestdiag_liveness"
	// DefaultChannelGrace is how long a channel may stay down before
	// vm.channel_down fires: long enough for a reboot or a migration.
	DefaultChannelGrace = 60 * time.Second
)

// Notifier is told of every alert transition this collector published:
// firing, resolved, a severity change, a re-notification. The Alertmanager
// client implements it.
type Notifier interface {
	Notify(ctx context.Context, alerts ...Alert) error
}

// Config configures a Collector. The zero value of every field means its
// default.
type Config struct {
	// NATSURL is dialled by Run; New uses the connection it is given.
	NATSURL string
	// Listen is the API's TCP address for (*Collector).Run.
	Listen string
	// Durable names the pull consumer that every collector of a fleet shares.
	Durable string
	// Bucket names the KV bucket holding one record per VM.
	Bucket string
	// Replicas of the GUESTDIAG stream and of the KV bucket; 1 on a single
	// node, 3 on a NATS cluster.
	Replicas int
	// AckWait is how long JetStream waits for a collector's ack before it
	// redelivers, to this or another collector.
	AckWait time.Duration

	// AlertBucket names the KV bucket holding the alerts.
	AlertBucket string
	// LivenessBucket names the KV bucket holding each VM's newest
	// heartbeat.
	LivenessBucket string
	// Policy holds flap damping, re-notification and retention.
	Policy Policy
	// ChannelGrace is how long a disconnected channel waits before
	// vm.channel_down fires.
	ChannelGrace time.Duration
	// Notifiers are called with every transition this collector publishes.
	Notifiers []Notifier
	// KBDirs are operator knowledge-base directories, loaded after the
	// shipped entries at start and by ReloadKB.
	KBDirs []string
	// Matcher, when set, replaces the knowledge base for matching findings
	// (tests).
	Matcher Matcher

	// UI, when set, returns the handler for everything outside /api/ and
	// /healthz (the dashboard), given the collector it reads from.
	UI func(*Collector) http.Handler
	// Auth, when set, wraps /api/, so that the dashboard's login protects
	// the API too; UI does its own.
	Auth func(http.Handler) http.Handler

	// HostBucket names the KV bucket holding one record per host.
	HostBucket string
	// Hints says when placement hints are raised (docs/scheduler.md).
	Hints HintConfig
	// Plans is how many of the newest plans the collector keeps.
	Plans int
	// Admin, when set, says who makes a write request (drain, undrain),
	// or refuses it with an error (403). Nil lets anyone write, as
	// "anonymous": the API has no authentication configured.
	Admin func(*http.Request) (user string, err error)
}

func (c Config) withDefaults() Config {
	if c.NATSURL == "" {
		c.NATSURL = nats.DefaultURL
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Durable == "" {
		c.Durable = DefaultDurable
	}
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.AlertBucket == "" {
		c.AlertBucket = DefaultAlertBucket
	}
	if c.LivenessBucket == "" {
		c.LivenessBucket = DefaultLivenessBucket
	}
	if c.ChannelGrace <= 0 {
		c.ChannelGrace = DefaultChannelGrace
	}
	c.Policy = c.Policy.withDefaults()
	if c.HostBucket == "" {
		c.HostBucket = DefaultHostBucket
	}
	c.Hints = c.Hints.withDefaults()
	if c.Plans <= 0 {
		c.Plans = DefaultPlans
	}
	return c
}
