package guestagent

import (
	"context"
	"io"
	"time"
)

// Transport connects the agent to the host. Connect blocks until the host
// side is there, or ctx ends, and returns a stream that ends (with io.EOF or
// an error) when the host goes away. An error wrapping errors.ErrUnsupported
// is final; other errors are retried.
type Transport interface {
	Connect(ctx context.Context) (io.ReadWriteCloser, error)
}

// Config configures the agent. Zero fields take the values of
// DefaultConfig.
type Config struct {
	// PortName is the virtio-serial port name to look for, both in
	// <SysfsRoot>/class/virtio-ports/*/name and as
	// <DevRoot>/virtio-ports/<PortName>.
	PortName  string
	SysfsRoot string
	DevRoot   string
	// DevicePath, when set, is opened instead of looking the port up.
	DevicePath string

	// StateDir holds the spool; it is created if missing.
	StateDir string
	// SpoolMaxBytes bounds the spool on disk. When it is full the oldest
	// unacknowledged messages are dropped, counted and logged.
	SpoolMaxBytes int64

	HeartbeatInterval time.Duration
	// Checks holds settings per check name, usually from the config file
	// (LoadConfigFile). Checks not named run with their defaults.
	Checks map[string]CheckSettings

	// HostPollInterval is how often the port is polled while the host side
	// is absent. The port reports POLLHUP for as long as that lasts, so a
	// poll returns at once and cannot be used to wait.
	HostPollInterval time.Duration

	// AckTimeout bounds how long messages written to the host may wait
	// without any ack advancing. When it passes, the agent drops the
	// connection, connects again and resends from the oldest unacknowledged
	// message: a host that stays connected but stopped reading or
	// acknowledging, or whose side reconnected unnoticed, cannot hold the
	// agent for longer. It should exceed the relay's publish timeout.
	AckTimeout time.Duration
	// WriteTimeout bounds one write to the host, on transports whose
	// connection supports write deadlines (the virtio-serial port and
	// net.Conn do).
	WriteTimeout time.Duration

	// Transport replaces the virtio-serial port, for tests and for other
	// transports.
	Transport Transport
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		PortName:          "org.guestdiag.agent.0",
		SysfsRoot:         "/sys",
		DevRoot:           "/dev",
		StateDir:          defaultStateDir(),
		SpoolMaxBytes:     16 << 20,
		HeartbeatInterval: 10 * time.Second,
		HostPollInterval:  500 * time.Millisecond,
		AckTimeout:        30 * time.Second,
		WriteTimeout:      10 * time.Second,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.PortName == "" {
		c.PortName = d.PortName
	}
	if c.SysfsRoot == "" {
		c.SysfsRoot = d.SysfsRoot
	}
	if c.DevRoot == "" {
		c.DevRoot = d.DevRoot
	}
	if c.StateDir == "" {
		c.StateDir = d.StateDir
	}
	if c.SpoolMaxBytes <= 0 {
		c.SpoolMaxBytes = d.SpoolMaxBytes
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = d.HeartbeatInterval
	}
	if c.HostPollInterval <= 0 {
		c.HostPollInterval = d.HostPollInterval
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = d.AckTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	return c
}
