package protocol

import (
	"errors"
	"strconv"
	"strings"
)

// SubjectPrefix roots every subject guestdiag publishes.
const SubjectPrefix = "guestdiag"

// EscapeToken turns any name into a single NATS subject token. Bytes outside
// [A-Za-z0-9_-] become ~XX (hex), so ".", "*", ">", spaces and "~" itself can
// never split a subject or act as a wildcard, and distinct names stay
// distinct. The empty name becomes "~".
func EscapeToken(s string) string {
	if s == "" {
		return "~"
	}
	clean := true
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isTokenByte(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('~')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// UnescapeToken reverses EscapeToken.
func UnescapeToken(t string) (string, error) {
	if t == "~" {
		return "", nil
	}
	if !strings.Contains(t, "~") {
		return t, nil
	}
	var b strings.Builder
	for i := 0; i < len(t); i++ {
		if t[i] != '~' {
			b.WriteByte(t[i])
			continue
		}
		if i+2 >= len(t) {
			return "", errors.New("truncated escape in subject token")
		}
		v, err := strconv.ParseUint(t[i+1:i+3], 16, 8)
		if err != nil {
			return "", errors.New("bad escape in subject token")
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

func isTokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func subject(parts ...string) string {
	var b strings.Builder
	b.WriteString(SubjectPrefix)
	for _, p := range parts {
		b.WriteByte('.')
		b.WriteString(EscapeToken(p))
	}
	return b.String()
}

// ReportSubject is where a relay publishes a guest's result or event.
func ReportSubject(host, vm, check string) string { return subject("report", host, vm, check) }

// HeartbeatSubject is where a relay publishes a guest's heartbeat and hello.
func HeartbeatSubject(host, vm string) string { return subject("heartbeat", host, vm) }

// ChannelSubject is where a relay says a VM's channel connected or went away.
func ChannelSubject(host, vm string) string { return subject("channel", host, vm) }

// HostSubject is where a relay publishes host capacity and usage.
func HostSubject(host string) string { return subject("host", host) }

// AlertSubject is where the collector publishes alerts.
func AlertSubject(severity, host, vm string) string { return subject("alert", severity, host, vm) }

// HintSubject is where the collector publishes placement hints for a host.
func HintSubject(host string) string { return subject("hint", host) }

// PlanSubject is where the scheduler publishes migration plans.
const PlanSubject = SubjectPrefix + ".plan"

// OutcomeSubjects matches every OutcomeSubject (and not PlanSubject).
const OutcomeSubjects = PlanSubject + ".>"

// OutcomeSubject is where the scheduler publishes the outcomes of one move
// of a plan: guestdiag.plan.<plan id>.<move>, where <move> is the move id
// without its plan's "<plan id>/" prefix (its number). Each move has a
// subject of its own because the stream keeps a bounded number of
// messages per subject: a plan of a hundred moves makes two hundred
// outcomes, which on one shared subject would push out the plan they
// belong to. Each such subject holds a few messages, and the stream's
// MaxAge removes them.
func OutcomeSubject(planID, moveID string) string {
	return subject("plan", planID, strings.TrimPrefix(moveID, planID+"/"))
}

// MsgID is the JetStream de-duplication id of one guest message: the VM's
// host-side key (UUID when known, else name), the run and the seq.
func MsgID(vmKey, run string, seq uint64) string {
	return vmKey + "/" + run + "/" + strconv.FormatUint(seq, 10)
}
