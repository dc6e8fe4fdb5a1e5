package collector

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// VM is the state of one virtual machine: the JSON value of its KV record and
// what the API returns. Name, Host and UUID are what the host reports; what
// the guest says about itself is kept only inside Hello.
type VM struct {
	Name    string  `json:"name"`
	Host    string  `json:"host"`
	UUID    string  `json:"uuid,omitempty"`
	Channel Channel `json:"channel"`
	// LastSeen is the relay's receive time of the newest guest message.
	// The record holds that of the newest hello, result or event; the API
	// shows the later of it and the liveness record's.
	LastSeen time.Time `json:"last_seen,omitzero"`
	Hello    *Hello    `json:"hello,omitempty"`
	// Heartbeat is the newest heartbeat, kept in the liveness bucket
	// rather than the record, and shown by the API.
	Heartbeat *Heartbeat `json:"heartbeat,omitempty"`
	// Lifecycle is the VM's run state as the host sees it, when the relay
	// watches the VM through QMP or libvirt.
	Lifecycle *Lifecycle        `json:"lifecycle,omitempty"`
	Checks    map[string]*Check `json:"checks,omitempty"`
}

// Channel is the relay's view of the VM's channel.
type Channel struct {
	Name  string                `json:"name,omitempty"`
	State protocol.ChannelState `json:"state,omitempty"`
	// Since is the relay's time of the latest channel event applied.
	Since  time.Time `json:"since,omitzero"`
	Reason string    `json:"reason,omitempty"`
}

// Origin places a guest message: the agent run and sequence number, the
// guest's own timestamp (untrusted clock) and the relay's receive time.
type Origin struct {
	Run      string    `json:"run"`
	Seq      uint64    `json:"seq"`
	TS       time.Time `json:"ts"`
	Received time.Time `json:"received"`
}

// Hello is the latest agent hello: the guest's claims about itself.
type Hello struct {
	ClaimedHostname string   `json:"claimed_hostname"`
	OS              string   `json:"os"`
	Platform        string   `json:"platform,omitempty"`
	Kernel          string   `json:"kernel,omitempty"`
	Arch            string   `json:"arch,omitempty"`
	AgentVersion    string   `json:"agent_version"`
	Checks          []string `json:"checks"`
	BootTime        int64    `json:"boot_time,omitempty"`
	// HeartbeatS and Intervals are the agent's heartbeat and check
	// intervals in seconds, zero or absent when an older agent did not say.
	HeartbeatS uint32            `json:"heartbeat_s,omitempty"`
	Intervals  map[string]uint32 `json:"intervals,omitempty"`
	// Transport is how the agent reached the host (virtio-serial, vsock).
	Transport string `json:"transport,omitempty"`
	Origin
}

// Heartbeat is the latest agent heartbeat.
type Heartbeat struct {
	UptimeSec uint64 `json:"uptime_s"`
	Spooled   uint64 `json:"spooled"`
	Dropped   uint64 `json:"dropped,omitempty"`
	Origin
}

// Check is the latest result or event of one check.
type Check struct {
	Kind     protocol.Kind      `json:"kind"`
	Status   protocol.Status    `json:"status"`
	Summary  string             `json:"summary,omitempty"`
	Findings []protocol.Finding `json:"findings,omitempty"`
	// FindingsTotal is how many findings the guest sent; Findings holds at
	// most maxStoredFindings of them, or none if the record grew too large.
	FindingsTotal int `json:"findings_total,omitempty"`
	// Data is the check's latest data as the guest sent it (docs/checks.md),
	// or {"truncated":true,"bytes":N} when it was larger than a record
	// keeps.
	Data json.RawMessage `json:"data,omitempty"`
	Origin
	// enc is the check's JSON, made once when the check is made or
	// decoded, so that writing a record does not encode, and validate,
	// every check's data again whenever one of them changes.
	enc []byte
}

// Limits that keep one guest from growing its record without bound. A guest
// may invent any check name, and a line may carry 256 findings.
const (
	maxChecksPerVM    = protocol.MaxChecks
	maxStoredFindings = 32
	// maxCheckData bounds one check's stored data; larger data is replaced
	// by a marker saying how large it was.
	maxCheckData = 32 << 10
	// maxRecordBytes stays well under the 1 MiB default NATS max payload.
	maxRecordBytes = 512 << 10
)

var errRecordTooLarge = errors.New("state record too large")

// Key returns the KV key of the VM named vm on host: both names escaped
// with protocol.EscapeToken, '~' replaced by '=' (KV keys do not allow '~'),
// joined by a dot, so "host.>" watches one host's VMs and distinct names
// never collide.
func Key(host, vm string) string {
	return kvToken(host) + "." + kvToken(vm)
}

func kvToken(s string) string {
	return strings.ReplaceAll(protocol.EscapeToken(s), "~", "=")
}

// outcome is what applying one message did to a record.
type outcome int

const (
	applied  outcome = iota // the record changed
	stale                   // already applied, or older than what is there
	rejected                // valid, but refused to bound the record
)

// supersededBy reports whether a message from next is newer than the one
// recorded in o. Within a run the guest's seq orders messages; across runs
// only the relay's receive time can, since run ids are random.
func (o *Origin) supersededBy(next Origin) bool {
	if o.Run == "" {
		return true
	}
	if next.Run == o.Run {
		return next.Seq > o.Seq
	}
	return next.Received.After(o.Received)
}

// update is one decoded stream message, ready to fold into the record of
// the VM it names.
type update struct {
	host, vm string
	apply    func(*VM) outcome
	// check names the check of a result or event; heartbeat is set for a
	// heartbeat, which goes to the liveness table instead of the record.
	check     string
	heartbeat *Heartbeat
}

// clone copies v so that applying a message to the copy leaves v as it
// was: applyReport replaces checks, hello and heartbeat, never edits them.
func (v *VM) clone() VM {
	c := *v
	c.Checks = maps.Clone(v.Checks)
	return c
}

// decodeMessage turns a stream message into an update. Any error means the
// message can never be applied. The host and VM in the body must be the
// ones its subject names: a relay's NATS user may publish only under its
// own host's subjects (docs/deploy.md), and that is worth something only
// if a body naming another host is refused here.
func decodeMessage(subject string, data []byte) (update, error) {
	u, err := decodeBody(subject, data)
	if err != nil {
		return u, err
	}
	// guestdiag.<kind>.<host>.<vm>[.<check>]
	tokens := strings.SplitN(subject, ".", 5)
	if len(tokens) < 4 || tokens[2] != protocol.EscapeToken(u.host) || tokens[3] != protocol.EscapeToken(u.vm) {
		return update{}, fmt.Errorf("body names host %q vm %q, subject %s another", u.host, u.vm, subject)
	}
	return u, nil
}

func decodeBody(subject string, data []byte) (update, error) {
	switch {
	case strings.HasPrefix(subject, protocol.SubjectPrefix+".channel.") && isLifecycle(data):
		return decodeLifecycle(data)
	case strings.HasPrefix(subject, protocol.SubjectPrefix+".channel."):
		var ev protocol.ChannelEvent
		if err := json.Unmarshal(data, &ev); err != nil {
			return update{}, fmt.Errorf("channel event: %w", err)
		}
		if err := checkIdentity(ev.V, ev.Host, ev.VM); err != nil {
			return update{}, fmt.Errorf("channel event: %w", err)
		}
		switch ev.State {
		case protocol.ChannelConnected, protocol.ChannelDisconnected:
		case protocol.ChannelMessagesLost, protocol.ChannelViolations, protocol.ChannelRefused:
			// Reports about the channel, not changes of its state: the
			// relay logs and counts them; the VM record keeps none.
			return update{host: ev.Host, vm: ev.VM, apply: func(*VM) outcome { return stale }}, nil
		default:
			return update{}, fmt.Errorf("channel event: unknown state %q", ev.State)
		}
		return update{host: ev.Host, vm: ev.VM, apply: func(v *VM) outcome { return applyChannel(v, &ev) }}, nil
	case strings.HasPrefix(subject, protocol.SubjectPrefix+".report."),
		strings.HasPrefix(subject, protocol.SubjectPrefix+".heartbeat."):
		r, err := decodeReport(data)
		if err != nil {
			return update{}, fmt.Errorf("report: %w", err)
		}
		if err := checkIdentity(r.V, r.Host, r.VM); err != nil {
			return update{}, fmt.Errorf("report: %w", err)
		}
		if r.Received.IsZero() {
			return update{}, errors.New("report: no received time")
		}
		e, err := protocol.Decode(r.Guest)
		if err != nil {
			return update{}, fmt.Errorf("report: guest envelope: %w", err)
		}
		u := update{host: r.Host, vm: r.VM, apply: func(v *VM) outcome { return applyReport(v, &r, &e) }}
		switch e.Kind {
		case protocol.KindResult, protocol.KindEvent:
			u.check = e.Check
		case protocol.KindHeartbeat:
			var hb protocol.Heartbeat
			if len(e.Data) > 0 {
				if err := json.Unmarshal(e.Data, &hb); err != nil {
					return update{}, fmt.Errorf("report: heartbeat data: %w", err)
				}
			}
			u.heartbeat = &Heartbeat{UptimeSec: hb.UptimeSec, Spooled: hb.Spooled, Dropped: hb.Dropped,
				Origin: Origin{Run: e.Run, Seq: e.Seq, TS: e.TS, Received: r.Received}}
			u.apply = nil
		}
		return u, nil
	}
	return update{}, errors.New("subject is not a report, heartbeat or channel subject")
}

func checkIdentity(v int, host, vm string) error {
	switch {
	case v != protocol.Version:
		return fmt.Errorf("%w: v %d", protocol.ErrUnsupportedVersion, v)
	case host == "":
		return errors.New("no host")
	case vm == "":
		return errors.New("no vm")
	}
	return nil
}

// applyReport folds a relay report carrying guest envelope e into v:
// hellos, results and events; heartbeats go to the liveness table. A
// message that is not newer than what v holds for the same kind (and check)
// changes nothing at all.
func applyReport(v *VM, r *protocol.Report, e *protocol.Envelope) outcome {
	o := Origin{Run: e.Run, Seq: e.Seq, TS: e.TS, Received: r.Received}
	switch e.Kind {
	case protocol.KindHello:
		if v.Hello != nil && !v.Hello.supersededBy(o) {
			return stale
		}
		var h protocol.Hello
		if err := json.Unmarshal(e.Data, &h); err != nil {
			// Decode validated the hello already.
			return rejected
		}
		v.Hello = &Hello{
			ClaimedHostname: h.Hostname, OS: h.OS, Platform: h.Platform, Kernel: h.Kernel, Arch: h.Arch,
			AgentVersion: h.AgentVersion, Checks: h.Checks, BootTime: h.BootTime,
			HeartbeatS: h.HeartbeatS, Intervals: h.Intervals, Transport: h.Transport, Origin: o,
		}
	case protocol.KindResult, protocol.KindEvent:
		cur, ok := v.Checks[e.Check]
		if ok && !cur.supersededBy(o) {
			return stale
		}
		if !ok && len(v.Checks) >= maxChecksPerVM {
			return rejected
		}
		c := &Check{Kind: e.Kind, Status: e.Status, Summary: e.Summary, FindingsTotal: len(e.Findings), Origin: o}
		c.Findings = e.Findings[:min(len(e.Findings), maxStoredFindings)]
		c.Data = boundData(e.Data)
		var err error
		if c.enc, err = json.Marshal(c); err != nil {
			// Decode validated the data already.
			return rejected
		}
		if v.Checks == nil {
			v.Checks = make(map[string]*Check)
		}
		v.Checks[e.Check] = c
	default:
		return rejected
	}
	if r.UUID != "" {
		v.UUID = r.UUID
	}
	if r.Channel != "" {
		v.Channel.Name = r.Channel
	}
	if r.Received.After(v.LastSeen) {
		v.LastSeen = r.Received
	}
	return applied
}

// applyChannel records a channel event unless a later one is already there.
func applyChannel(v *VM, ev *protocol.ChannelEvent) outcome {
	if v.Channel.State != "" {
		if ev.TS.Before(v.Channel.Since) || ev.TS.Equal(v.Channel.Since) && ev.State == v.Channel.State {
			return stale
		}
	}
	v.Channel = Channel{Name: ev.Channel, State: ev.State, Since: ev.TS, Reason: ev.Reason}
	if ev.UUID != "" {
		v.UUID = ev.UUID
	}
	return applied
}

// boundData returns data as the record keeps it: as sent when it fits
// maxCheckData, else a marker with its size, so that an operator sees that
// there was data and how much.
func boundData(data json.RawMessage) json.RawMessage {
	if len(data) <= maxCheckData {
		return data
	}
	return truncatedData(len(data))
}

func truncatedData(n int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"truncated":true,"bytes":%d}`, n))
}

// encodeRecord marshals v for the KV. If the record would be too large for
// one NATS message it drops the checks' data first (each replaced by its
// size marker), then the stored findings (their count stays). The checks
// of v are copied before they are trimmed, since v may share them with the
// collector's cached view.
func encodeRecord(v *VM) ([]byte, error) {
	b, err := marshalRecord(v)
	if err != nil {
		return nil, err
	}
	if len(b) <= maxRecordBytes {
		return b, nil
	}
	trimmed := *v
	trimmed.Checks = make(map[string]*Check, len(v.Checks))
	for name, c := range v.Checks {
		cp := *c
		cp.enc = nil
		if len(cp.Data) > 0 {
			cp.Data = truncatedData(len(cp.Data))
		}
		trimmed.Checks[name] = &cp
	}
	if b, err = marshalRecord(&trimmed); err != nil {
		return nil, err
	}
	if len(b) <= maxRecordBytes {
		return b, nil
	}
	for _, c := range trimmed.Checks {
		c.Findings = nil
	}
	if b, err = marshalRecord(&trimmed); err != nil {
		return nil, err
	}
	if len(b) > maxRecordBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errRecordTooLarge, len(b), maxRecordBytes)
	}
	return b, nil
}

// marshalRecord is json.Marshal of v with each check's JSON spliced in
// from enc where the check has it: the same bytes, since enc is the
// check's json.Marshal or what decodeRecord read from such a record.
func marshalRecord(v *VM) ([]byte, error) {
	head := *v
	head.Checks = nil
	b, err := json.Marshal(&head)
	if err != nil || len(v.Checks) == 0 {
		return b, err
	}
	b = append(b[:len(b)-1], `,"checks":{`...)
	for i, name := range slices.Sorted(maps.Keys(v.Checks)) {
		if i > 0 {
			b = append(b, ',')
		}
		q, err := json.Marshal(name)
		if err != nil {
			return nil, err
		}
		b = append(append(b, q...), ':')
		c := v.Checks[name]
		enc := c.enc
		if enc == nil {
			if enc, err = json.Marshal(c); err != nil {
				return nil, err
			}
		}
		b = append(b, enc...)
	}
	return append(b, '}', '}'), nil
}

// decodeRecord is json.Unmarshal of a VM record that keeps each check's
// JSON as its enc.
func decodeRecord(b []byte) (VM, error) {
	var r struct {
		VM
		Checks map[string]json.RawMessage `json:"checks"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return VM{}, err
	}
	v := r.VM
	if len(r.Checks) > 0 {
		v.Checks = make(map[string]*Check, len(r.Checks))
	}
	for name, raw := range r.Checks {
		c := new(Check)
		if err := json.Unmarshal(raw, c); err != nil {
			return VM{}, fmt.Errorf("check %q: %w", name, err)
		}
		if len(raw) > 0 && raw[0] == '{' {
			c.enc = raw
		}
		v.Checks[name] = c
	}
	return v, nil
}
