package hostrelay

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/protocol"
)

// Defaults for Config.
const (
	// DefaultGlob matches the host end of the channel libvirt creates for a
	// <channel type='unix'> with target name org.guestdiag.agent.0.
	DefaultGlob = "/var/lib/libvirt/qemu/channel/target/domain-*/org.guestdiag.agent.0"
	// DefaultLibvirtRunDir holds libvirt's status XML of each running domain.
	DefaultLibvirtRunDir = "/run/libvirt/qemu"

	// DefaultRescanInterval finds a new channel within 2 s even where
	// inotify misses it; inotify usually finds it at once.
	DefaultRescanInterval = 2 * time.Second
	DefaultBackoffMin     = 100 * time.Millisecond
	DefaultBackoffMax     = 5 * time.Second
	DefaultRate           = 50.0
	DefaultBurst          = 200
	// DefaultMaxInFlight: a VM may send DefaultRate lines a second, so 64
	// in flight never holds one back, and 1,000 channels' queues stay
	// small; only a benchmark with the rate limits off feels it.
	DefaultMaxInFlight    = 64
	DefaultPublishTimeout = 10 * time.Second

	// DefaultMaxBytesRate (bytes per second) is far above what an agent
	// sends and far below what would keep the relay busy.
	DefaultMaxBytesRate = 1 << 20
	// DefaultMaxBytesBurst lets a line of the maximum length, and the start
	// of the next, through without waiting.
	DefaultMaxBytesBurst    = 2 * protocol.MaxLineLen
	DefaultMaxInFlightBytes = 16 << 20
	// DefaultMaxRelayInFlightBytes bounds what all channels together have
	// published and not yet seen confirmed. Each byte in flight is held
	// about twice (the report and the NATS client's copy), so 16 MiB keeps
	// a relay with 1,000 busy channels under 100 MB; at 600-byte messages
	// it is 28,000 messages in flight, far more than a PubAck round trip
	// needs.
	DefaultMaxRelayInFlightBytes = 16 << 20
	DefaultViolationInterval     = 10 * time.Second
)

// Channel is one VM's channel socket and the host-side identity of whatever
// arrives on it.
type Channel struct {
	// Name is the VM's name on this host; it becomes a subject token.
	Name string
	// Path is the unix socket QEMU listens on.
	Path string
	// UUID is the VM's UUID, lower case, or "" when unknown.
	UUID string
	// Listen says the relay creates the socket at Path and QEMU connects
	// to it, rather than the other way round.
	Listen bool
}

// Config configures a Relay. The zero value of every field means its
// default.
type Config struct {
	// Host names this hypervisor in subjects and envelopes; default
	// os.Hostname().
	Host string
	// NATSURL is used by Run only; default nats.DefaultURL. Several URLs
	// are comma separated.
	NATSURL string
	// NATSAuth is how Run authenticates to NATS. Run sets its InboxPrefix
	// to RelayInboxPrefix(Host), which the relay's permissions name.
	NATSAuth natsutil.Auth
	// Globs find channel sockets. The VM name is the socket's folder name
	// with libvirt's "domain-<id>-" prefix removed. Nil means DefaultGlob; an
	// empty non-nil slice turns globbing off.
	Globs []string
	// Static channels are watched whether or not their socket exists yet;
	// those with Listen set are listened on.
	Static []Channel
	// ProxmoxGlob finds Proxmox-style channel sockets named <vmid>.guestdiag;
	// the VM's name and UUID come from <vmid>.conf in ProxmoxConfDir. ""
	// means DefaultProxmoxGlob; "-" turns it off.
	ProxmoxGlob    string
	ProxmoxConfDir string
	// LibvirtRunDir is searched for <name>.xml to learn a globbed VM's UUID.
	LibvirtRunDir string
	// RescanInterval is how often globs are re-evaluated besides when
	// inotify reports a change in a channel folder.
	RescanInterval time.Duration
	// BackoffMin and BackoffMax bound the wait between connection attempts.
	BackoffMin, BackoffMax time.Duration
	// Rate (lines per second) and Burst bound what one VM may send. A line
	// over the limit is dropped, is not acknowledged, and ends the
	// connection so that the agent resends it; math.Inf(1) disables the
	// limit.
	Rate  float64
	Burst int
	// MaxBytesRate (bytes per second) and MaxBytesBurst bound how fast the
	// relay reads one VM's channel, whatever the bytes are: blank lines and
	// the bodies of over-long lines cost as much as messages. A guest that
	// writes faster is read more slowly; its writes block, nothing is lost.
	// math.Inf(1) disables the limit. A burst below 2×protocol.MaxLineLen
	// works but makes long lines wait.
	MaxBytesRate  float64
	MaxBytesBurst int
	// Duplicates is the JetStream de-duplication window of the stream.
	Duplicates time.Duration
	// MaxInFlight and MaxInFlightBytes bound the messages of one connection
	// published but not yet confirmed by JetStream, in number and in bytes
	// of the published reports.
	MaxInFlight      int
	MaxInFlightBytes int
	// MemoryLimit is the daemon's Go soft memory limit (ApplyMemoryLimit):
	// 0 for DefaultMemoryLimit unless GOMEMLIMIT is set, negative for none.
	MemoryLimit int64
	// PublishTimeout bounds the wait for one PubAck.
	PublishTimeout time.Duration
	// HostUsageInterval is how often host usage is published on
	// guestdiag.host.<host>; default DefaultHostUsageInterval, negative
	// turns it off.
	HostUsageInterval time.Duration
	// SharedMachine, when its CPUs are set, makes this relay one of several
	// on one machine, each its own host in host usage (the VM lab's
	// stand-in for a second hypervisor).
	SharedMachine SharedMachine
	// ProcRoot is where QEMU processes are looked for; default /proc.
	ProcRoot string
	// LegacyGapWait is how long a gap from an agent without resume must
	// stand before the relay accepts it; default DefaultLegacyGapWait.
	LegacyGapWait time.Duration
	// Lifecycle says where VMs are watched from the host (QMP, libvirt).
	Lifecycle LifecycleConfig
	// MaxRelayInFlightBytes bounds the bytes in flight over all
	// connections together, so that the relay's memory does not grow with
	// the number of channels.
	MaxRelayInFlightBytes int
	// MaxAnnouncedChecks bounds the check names beyond the six the agent
	// ships that one VM may use; see DefaultMaxAnnouncedChecks.
	MaxAnnouncedChecks int
	// ViolationInterval is how often at most one violations event is
	// published per VM, summing what the guest sent that was refused.
	ViolationInterval time.Duration
	// MaxMsgsPerSubject is the stream's per-subject limit when the relay
	// creates the stream; see natsutil.DefaultMaxMsgsPerSubject.
	MaxMsgsPerSubject int64
	// VsockPort, when not 0, is the host vsock port guests connect to;
	// each connection is the channel of the VM its CID names in VsockVMs
	// or, when virsh is installed, in the running domains' <vsock>.
	VsockPort uint32
	VsockVMs  []VsockVM
	// MetricsListen is the TCP address of /metrics and /healthz; "" (the
	// default) serves neither.
	MetricsListen string
}

func (c Config) withDefaults() (Config, error) {
	if c.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			return c, fmt.Errorf("host name: %w", err)
		}
		c.Host = h
	}
	if c.NATSURL == "" {
		c.NATSURL = nats.DefaultURL
	}
	if c.Globs == nil {
		c.Globs = []string{DefaultGlob}
	}
	for _, g := range c.Globs {
		if _, err := filepath.Match(g, ""); err != nil {
			return c, fmt.Errorf("glob %q: %w", g, err)
		}
	}
	if c.ProxmoxGlob == "" {
		c.ProxmoxGlob = DefaultProxmoxGlob
	}
	if _, err := filepath.Match(c.ProxmoxGlob, ""); err != nil {
		return c, fmt.Errorf("proxmox glob %q: %w", c.ProxmoxGlob, err)
	}
	if c.ProxmoxConfDir == "" {
		c.ProxmoxConfDir = DefaultProxmoxConfDir
	}
	paths := make(map[string]bool, len(c.Static))
	names := make(map[string]bool, len(c.Static))
	uuids := make(map[string]bool, len(c.Static))
	static := make([]Channel, len(c.Static))
	for i, ch := range c.Static {
		if ch.Name == "" || ch.Path == "" {
			return c, fmt.Errorf("static channel %q=%q: name and path are required", ch.Name, ch.Path)
		}
		if err := checkVMName(ch.Name); err != nil {
			return c, fmt.Errorf("static channel %s: %w", ch.Path, err)
		}
		if paths[ch.Path] {
			return c, fmt.Errorf("static channel %s: path listed twice", ch.Path)
		}
		paths[ch.Path] = true
		// One name is one VM: its state, its message ids and its record
		// in the collector. Two channels under one name would merge two
		// VMs.
		if names[ch.Name] {
			return c, fmt.Errorf("static channel %s: VM name %q listed twice", ch.Path, ch.Name)
		}
		names[ch.Name] = true
		if ch.UUID != "" {
			u, ok := normalizeUUID(ch.UUID)
			if !ok {
				return c, fmt.Errorf("static channel %s: %q is not a UUID", ch.Name, ch.UUID)
			}
			ch.UUID = u
			if uuids[u] {
				return c, fmt.Errorf("static channel %s: UUID %s listed twice", ch.Path, u)
			}
			uuids[u] = true
		}
		static[i] = ch
	}
	c.Static = static
	if c.LibvirtRunDir == "" {
		c.LibvirtRunDir = DefaultLibvirtRunDir
	}
	if c.RescanInterval <= 0 {
		c.RescanInterval = DefaultRescanInterval
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = DefaultBackoffMin
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	c.BackoffMax = max(c.BackoffMax, c.BackoffMin)
	if c.Rate <= 0 || math.IsNaN(c.Rate) {
		c.Rate = DefaultRate
	}
	if c.Burst <= 0 {
		c.Burst = DefaultBurst
	}
	if c.Duplicates <= 0 {
		c.Duplicates = natsutil.DefaultDuplicates
	}
	if c.MaxBytesRate <= 0 || math.IsNaN(c.MaxBytesRate) {
		c.MaxBytesRate = DefaultMaxBytesRate
	}
	if c.MaxBytesBurst <= 0 {
		c.MaxBytesBurst = DefaultMaxBytesBurst
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.MaxInFlightBytes <= 0 {
		c.MaxInFlightBytes = DefaultMaxInFlightBytes
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.HostUsageInterval == 0 {
		c.HostUsageInterval = DefaultHostUsageInterval
	}
	if c.ProcRoot == "" {
		c.ProcRoot = "/proc"
	}
	if c.LegacyGapWait <= 0 {
		c.LegacyGapWait = DefaultLegacyGapWait
	}
	var err error
	if c.Lifecycle.ProxmoxConfDir == "" {
		c.Lifecycle.ProxmoxConfDir = c.ProxmoxConfDir
	}
	if c.Lifecycle, err = c.Lifecycle.withDefaults(); err != nil {
		return c, err
	}
	if c.MaxRelayInFlightBytes <= 0 {
		c.MaxRelayInFlightBytes = DefaultMaxRelayInFlightBytes
	}
	c.MaxInFlightBytes = min(c.MaxInFlightBytes, c.MaxRelayInFlightBytes)
	if c.MaxAnnouncedChecks <= 0 {
		c.MaxAnnouncedChecks = DefaultMaxAnnouncedChecks
	}
	if c.ViolationInterval <= 0 {
		c.ViolationInterval = DefaultViolationInterval
	}
	if c.MaxMsgsPerSubject == 0 {
		c.MaxMsgsPerSubject = natsutil.DefaultMaxMsgsPerSubject
	}
	return c, nil
}

var errNotUUID = errors.New("not a UUID")

// normalizeUUID accepts the 8-4-4-4-12 hex form in any case and returns it in
// lower case.
func normalizeUUID(s string) (string, bool) {
	if len(s) != 36 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", false
			}
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return "", false
		}
	}
	return strings.ToLower(s), true
}
