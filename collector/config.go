package collector

import (
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
)

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
	return c
}
