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

// Names of the transports, as Config.Transports and the hello spell them.
const (
	TransportVirtioSerial = "virtio-serial"
	TransportVsock        = "vsock"
)

// Config configures the agent. Zero fields take the values of
// DefaultConfig. Every field the config file can set is listed in
// docs/configuration.md.
type Config struct {
	// Transports lists the transports to use, most preferred first. One
	// is active at a time; see selector.
	Transports []string
	// FallbackAfter is how long one transport may try to reach the host
	// before the next one in Transports is tried.
	FallbackAfter time.Duration
	// RetryPreferred is how often, while a less preferred transport is
	// active, the more preferred ones are tried again.
	RetryPreferred time.Duration

	// PortName is the virtio-serial port name to look for, both in
	// <SysfsRoot>/class/virtio-ports/*/name and as
	// <DevRoot>/virtio-ports/<PortName>.
	PortName  string
	SysfsRoot string
	DevRoot   string
	// DevicePath, when set, is opened instead of looking the port up.
	DevicePath string

	// VsockCID and VsockPort are where the vsock transport dials: the
	// host is CID 2.
	VsockCID  uint32
	VsockPort uint32

	// StateDir holds the spool; it is created if missing.
	StateDir string
	// SpoolMaxBytes bounds the spool on disk. When it is full the oldest
	// unacknowledged messages are dropped, counted and logged.
	SpoolMaxBytes int64
	// SpoolMaxAge bounds how long a message waits for an ack; older ones
	// are dropped, counted and logged.
	SpoolMaxAge time.Duration

	HeartbeatInterval time.Duration
	// Checks holds settings per check name, usually from the config file
	// (LoadConfigFile). Checks not named run with their defaults.
	Checks map[string]CheckSettings

	// MemoryLimit is the Go runtime's soft memory limit, applied unless
	// the GOMEMLIMIT environment variable sets one.
	MemoryLimit int64
	// Priority is "low" (nice 10, best-effort I/O class level 7; Windows:
	// below normal) or "normal" (left as started).
	Priority string
	// CheckGrace is how long a check that overran its timeout may take to
	// return before it is abandoned and reported stuck.
	CheckGrace time.Duration

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

	// Transport replaces the configured transports, for tests.
	Transport Transport
}

// DefaultVsockPort is the vsock port the agent dials unless configured
// otherwise.
const DefaultVsockPort = 6021

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Transports:        defaultTransports(),
		FallbackAfter:     30 * time.Second,
		RetryPreferred:    5 * time.Minute,
		PortName:          "org.guestdiag.agent.0",
		SysfsRoot:         "/sys",
		DevRoot:           "/dev",
		VsockCID:          2,
		VsockPort:         DefaultVsockPort,
		StateDir:          defaultStateDir(),
		SpoolMaxBytes:     16 << 20,
		SpoolMaxAge:       7 * 24 * time.Hour,
		HeartbeatInterval: 10 * time.Second,
		MemoryLimit:       20 << 20,
		Priority:          PriorityLow,
		CheckGrace:        5 * time.Second,
		HostPollInterval:  500 * time.Millisecond,
		AckTimeout:        30 * time.Second,
		WriteTimeout:      10 * time.Second,
	}
}

// Priorities of Config.Priority.
const (
	PriorityLow    = "low"
	PriorityNormal = "normal"
)

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if len(c.Transports) == 0 {
		c.Transports = d.Transports
	}
	if c.FallbackAfter <= 0 {
		c.FallbackAfter = d.FallbackAfter
	}
	if c.RetryPreferred <= 0 {
		c.RetryPreferred = d.RetryPreferred
	}
	if c.PortName == "" {
		c.PortName = d.PortName
	}
	if c.SysfsRoot == "" {
		c.SysfsRoot = d.SysfsRoot
	}
	if c.DevRoot == "" {
		c.DevRoot = d.DevRoot
	}
	if c.VsockCID == 0 {
		c.VsockCID = d.VsockCID
	}
	if c.VsockPort == 0 {
		c.VsockPort = d.VsockPort
	}
	if c.StateDir == "" {
		c.StateDir = d.StateDir
	}
	if c.SpoolMaxBytes <= 0 {
		c.SpoolMaxBytes = d.SpoolMaxBytes
	}
	if c.SpoolMaxAge <= 0 {
		c.SpoolMaxAge = d.SpoolMaxAge
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = d.HeartbeatInterval
	}
	if c.MemoryLimit <= 0 {
		c.MemoryLimit = d.MemoryLimit
	}
	if c.Priority == "" {
		c.Priority = d.Priority
	}
	if c.CheckGrace <= 0 {
		c.CheckGrace = d.CheckGrace
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
