package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Limits on guest-supplied fields. A line is already bounded by MaxLineLen;
// these keep single fields sane so that one message cannot flood a dashboard
// or a subject.
const (
	MaxRunLen      = 64
	MaxCheckLen    = 64
	MaxSummaryLen  = 1024
	MaxFindings    = 256
	MaxCodeLen     = 128
	MaxMessageLen  = 4096
	MaxSourceLen   = 256
	MaxHostnameLen = 255
	MaxChecks      = 64
)

// Errors that classify a rejected message. Compare with errors.Is.
var (
	ErrInvalid            = errors.New("invalid message")
	ErrMalformed          = errors.New("malformed json")
	ErrUnsupportedVersion = errors.New("unsupported protocol version")
)

// FieldError names the field of a message that failed validation and why.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return "field " + e.Field + ": " + e.Reason }

// Unwrap lets errors.Is(err, ErrInvalid) match every FieldError.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Validate checks a guest envelope against the v1 rules and returns a
// *FieldError for the first field that breaks them.
func (e *Envelope) Validate() error {
	if e.V != Version {
		return versionErr(e.V)
	}
	switch e.Kind {
	case KindHello, KindResult, KindEvent, KindHeartbeat, KindResume:
	case "":
		return fieldErr("kind", "missing")
	default:
		return fieldErr("kind", "%q is not one of hello, result, event, heartbeat, resume", clip(string(e.Kind)))
	}
	if err := checkToken("run", e.Run, MaxRunLen, isRunByte); err != nil {
		return err
	}
	if e.Seq == 0 {
		return fieldErr("seq", "missing or zero; sequences start at 1")
	}
	if e.TS.IsZero() {
		return fieldErr("ts", "missing")
	}
	switch e.Kind {
	case KindResult, KindEvent:
		if err := checkToken("check", e.Check, MaxCheckLen, isNameByte); err != nil {
			return err
		}
		if !e.Status.valid() {
			return fieldErr("status", "%q is not one of ok, warn, crit, unknown", clip(string(e.Status)))
		}
	default:
		if e.Check != "" || e.Status != "" || len(e.Findings) > 0 {
			return fieldErr("kind", "%s carries no check, status or findings", e.Kind)
		}
	}
	if len(e.Summary) > MaxSummaryLen {
		return fieldErr("summary", "%d bytes, limit %d", len(e.Summary), MaxSummaryLen)
	}
	if len(e.Findings) > MaxFindings {
		return fieldErr("findings", "%d entries, limit %d", len(e.Findings), MaxFindings)
	}
	for i := range e.Findings {
		if err := e.Findings[i].validate(); err != nil {
			fe := err.(*FieldError)
			fe.Field = fmt.Sprintf("findings[%d].%s", i, fe.Field)
			return fe
		}
	}
	return e.validateData()
}

func (e *Envelope) validateData() error {
	d := bytes.TrimSpace(e.Data)
	if len(d) > 0 && d[0] != '{' && !bytes.Equal(d, []byte("null")) {
		return fieldErr("data", "must be a JSON object")
	}
	switch e.Kind {
	case KindHello:
		if len(d) == 0 {
			return fieldErr("data", "hello needs hostname, os, agent_version and checks")
		}
		var h Hello
		if err := strictUnmarshal(d, &h); err != nil {
			return fieldErr("data", "%v", err)
		}
		return h.validate()
	case KindHeartbeat:
		if len(d) == 0 {
			return nil
		}
		var hb Heartbeat
		if err := strictUnmarshal(d, &hb); err != nil {
			return fieldErr("data", "%v", err)
		}
	case KindResume:
		if len(d) == 0 {
			return fieldErr("data", "resume needs held")
		}
		var r Resume
		if err := strictUnmarshal(d, &r); err != nil {
			return fieldErr("data", "%v", err)
		}
		return r.validate()
	}
	return nil
}

func (h *Hello) validate() error {
	switch {
	case h.OS == "":
		return fieldErr("data.os", "missing")
	case h.AgentVersion == "":
		return fieldErr("data.agent_version", "missing")
	case len(h.Checks) > MaxChecks:
		return fieldErr("data.checks", "%d entries, limit %d", len(h.Checks), MaxChecks)
	}
	if err := checkLabel("data.hostname", h.Hostname, MaxHostnameLen); err != nil {
		return err
	}
	for _, s := range []struct{ name, v string }{{"os", h.OS}, {"platform", h.Platform}, {"kernel", h.Kernel}, {"arch", h.Arch}, {"agent_version", h.AgentVersion}, {"transport", h.Transport}} {
		if err := checkLabel("data."+s.name, s.v, MaxSourceLen); err != nil {
			return err
		}
	}
	for i, c := range h.Checks {
		if err := checkToken(fmt.Sprintf("data.checks[%d]", i), c, MaxCheckLen, isNameByte); err != nil {
			return err
		}
	}
	if len(h.Intervals) > MaxChecks {
		return fieldErr("data.intervals", "%d entries, limit %d", len(h.Intervals), MaxChecks)
	}
	for c := range h.Intervals {
		if err := checkToken("data.intervals", c, MaxCheckLen, isNameByte); err != nil {
			return err
		}
	}
	return nil
}

func (f *Finding) validate() error {
	if err := checkCode(f.Code); err != nil {
		return err
	}
	if !f.Severity.valid() {
		return fieldErr("severity", "%q is not one of info, warn, crit", clip(string(f.Severity)))
	}
	if f.Message == "" {
		return fieldErr("message", "missing")
	}
	if len(f.Message) > MaxMessageLen {
		return fieldErr("message", "%d bytes, limit %d", len(f.Message), MaxMessageLen)
	}
	for _, s := range []struct{ name, v string }{{"source", f.Source}, {"provider", f.Provider}, {"unit", f.Unit}} {
		if err := checkLabel(s.name, s.v, MaxSourceLen); err != nil {
			return err
		}
	}
	if f.First != nil && f.Last != nil && f.Last.Before(*f.First) {
		return fieldErr("last", "before first")
	}
	return nil
}

// checkCode accepts dotted lowercase codes such as "net.gateway_unreachable".
func checkCode(code string) error {
	if code == "" {
		return fieldErr("code", "missing")
	}
	if len(code) > MaxCodeLen {
		return fieldErr("code", "%d bytes, limit %d", len(code), MaxCodeLen)
	}
	dots, prev := 0, byte('.')
	for i := 0; i < len(code); i++ {
		c := code[i]
		switch {
		case c == '.':
			if prev == '.' {
				return fieldErr("code", "%q has an empty part", clip(code))
			}
			dots++
		case !isNameByte(c):
			return fieldErr("code", "%q: only a-z, 0-9, _ and . are allowed", clip(code))
		}
		prev = c
	}
	if dots == 0 || prev == '.' {
		return fieldErr("code", "%q must look like area.name", clip(code))
	}
	return nil
}

// checkLabel bounds a one-line label (hostname, OS, unit, …) and refuses
// control characters, so guest text shown in a table or a log cannot add
// lines or terminal escapes. Messages and summaries may span lines; labels
// may not.
func checkLabel(field, v string, max int) error {
	if len(v) > max {
		return fieldErr(field, "%d bytes, limit %d", len(v), max)
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fieldErr(field, "%q has a control character", clip(v))
		}
	}
	return nil
}

func checkToken(field, v string, max int, ok func(byte) bool) error {
	if v == "" {
		return fieldErr(field, "missing")
	}
	if len(v) > max {
		return fieldErr(field, "%d bytes, limit %d", len(v), max)
	}
	for i := 0; i < len(v); i++ {
		if !ok(v[i]) {
			return fieldErr(field, "%q has a character outside the allowed set", clip(v))
		}
	}
	return nil
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_'
}

func isRunByte(c byte) bool {
	return isNameByte(c) || c >= 'A' && c <= 'Z' || c == '-'
}

func (s Status) valid() bool {
	switch s {
	case StatusOK, StatusWarn, StatusCrit, StatusUnknown:
		return true
	}
	return false
}

func (s Severity) valid() bool {
	switch s {
	case SeverityInfo, SeverityWarn, SeverityCrit:
		return true
	}
	return false
}

func versionErr(v int) error {
	if v == 0 {
		return fieldErr("v", "missing")
	}
	return fmt.Errorf("%w %d: this build speaks %d", ErrUnsupportedVersion, v, Version)
}

// clip shortens guest text quoted in an error so errors stay small.
func clip(s string) string { return Clip(s, 64+len("…")) }

func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the object")
	}
	return nil
}
