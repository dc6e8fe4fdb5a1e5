package loadgen

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// samples holds the hello and the first result of each of the six checks
// from the real agent (internal/capturesamples), captured in an empty
// network namespace: the network and firewall results there are crit, so
// the healthy mix reuses their data with status ok and no findings.
//
//go:embed testdata/samples.ndjson
var samples []byte

// burstFinding is the log finding of the protocol's golden event: one
// kernel error line, as the logs check reports it.
var burstFinding = protocol.Finding{
	Code: "log.error", Severity: protocol.SeverityWarn,
	Message: "EXT4-fs error (device vda1): ext4_find_entry: reading directory lblock 0",
	Source:  "kernel", Unit: "kernel", Count: 3,
}

// template is one kind of message with everything after its ts encoded
// once, so that a message costs a few appends rather than a json.Marshal.
type template struct {
	kind protocol.Kind
	tail []byte // from the comma after ts to the closing brace
}

// Check is one check of the mix: its name, its default interval and the
// size of its healthy result.
type Check struct {
	Name     string
	Interval time.Duration
	Bytes    int
}

// mix is the message mix of every VM of a fleet.
type mix struct {
	hello  template
	checks []Check
	ok     map[string]template // the healthy result of each check
	crit   template            // a firewall result that raises fw.disabled
	burst  template            // a logs result with one error finding
	beat   time.Duration
}

func loadMix() (*mix, error) {
	m := &mix{ok: map[string]template{}}
	var hello protocol.Hello
	sc := bufio.NewScanner(bytes.NewReader(samples))
	sc.Buffer(nil, protocol.MaxLineLen+1)
	results := map[string]protocol.Envelope{}
	for sc.Scan() {
		e, err := protocol.Decode(sc.Bytes())
		if err != nil {
			return nil, fmt.Errorf("samples: %w", err)
		}
		switch e.Kind {
		case protocol.KindHello:
			if err := json.Unmarshal(e.Data, &hello); err != nil {
				return nil, fmt.Errorf("samples hello: %w", err)
			}
			hello.Transport = "virtio-serial"
			e.Data, _ = json.Marshal(hello)
			m.hello = newTemplate(e)
		case protocol.KindResult:
			results[e.Check] = e
		}
	}
	if hello.HeartbeatS == 0 || len(hello.Intervals) == 0 {
		return nil, fmt.Errorf("samples: the hello names no intervals")
	}
	m.beat = time.Duration(hello.HeartbeatS) * time.Second
	for _, name := range hello.Checks {
		e, ok := results[name]
		if !ok {
			return nil, fmt.Errorf("samples: no result of check %s", name)
		}
		if name == "firewall" {
			m.crit = newTemplate(e)
		}
		if name == "logs" {
			b := e
			b.Status, b.Summary = protocol.StatusWarn, "1 error entry"
			b.Findings = []protocol.Finding{burstFinding}
			m.burst = newTemplate(b)
		}
		if e.Status != protocol.StatusOK {
			e.Status, e.Summary, e.Findings = protocol.StatusOK, "no problem found", nil
		}
		t := newTemplate(e)
		m.ok[name] = t
		m.checks = append(m.checks, Check{Name: name, Interval: time.Duration(hello.Intervals[name]) * time.Second, Bytes: t.size()})
	}
	if len(m.crit.tail) == 0 || len(m.burst.tail) == 0 {
		return nil, fmt.Errorf("samples: the firewall and logs results are needed")
	}
	sort.Slice(m.checks, func(i, j int) bool { return m.checks[i].Name < m.checks[j].Name })
	return m, nil
}

// newTemplate encodes e, whose ts is then replaced at each use.
func newTemplate(e protocol.Envelope) template {
	e.TS = time.Time{}
	b, _ := json.Marshal(e)
	_, tail, _ := bytes.Cut(b, []byte(`"ts":"0001-01-01T00:00:00Z"`))
	return template{kind: e.Kind, tail: tail}
}

// line appends the message of t with run, seq and ts to b.
func (t template) line(b []byte, run string, seq uint64, ts time.Time) []byte {
	b = append(b, `{"v":1,"kind":"`...)
	b = append(b, t.kind...)
	b = append(b, `","run":"`...)
	b = append(b, run...)
	b = append(b, `","seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"ts":"`...)
	b = ts.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = append(b, t.tail...)
	return append(b, '\n')
}

// size is the length of a line of t with a typical run, seq and ts.
func (t template) size() int {
	return len(t.line(nil, "fC7AU84kH-Ptzdsz9Z23KA", 1000, time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)))
}

// heartbeat appends a heartbeat line to b.
func heartbeat(b []byte, run string, seq uint64, ts time.Time, uptime, spooled uint64) []byte {
	b = template{kind: protocol.KindHeartbeat}.line(b, run, seq, ts)
	b = append(b[:len(b)-1], `,"data":{"uptime_s":`...) // over the newline
	b = strconv.AppendUint(b, uptime, 10)
	b = append(b, `,"spooled":`...)
	b = strconv.AppendUint(b, spooled, 10)
	return append(b, "}}\n"...)
}
