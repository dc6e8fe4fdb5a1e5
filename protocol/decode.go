package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Decode parses and validates one guest line (without its newline). Unknown
// fields are rejected so that a typo or a future field is never silently
// dropped; a message from another protocol version is rejected with
// ErrUnsupportedVersion before anything else is looked at.
func Decode(line []byte) (Envelope, error) {
	var e Envelope
	if err := strictUnmarshal(line, &e); err != nil {
		var probe struct {
			V int `json:"v"`
		}
		if json.Unmarshal(line, &probe) == nil && probe.V != Version && probe.V != 0 {
			return Envelope{}, versionErr(probe.V)
		}
		return Envelope{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := e.Validate(); err != nil {
		return Envelope{}, err
	}
	return e, nil
}

// DecodeAck parses one host line as an acknowledgement. The agent ignores
// anything that is not a well-formed v1 ack.
func DecodeAck(line []byte) (Ack, error) {
	var a Ack
	if err := strictUnmarshal(bytes.TrimSpace(line), &a); err != nil {
		return Ack{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if a.V != Version {
		return Ack{}, versionErr(a.V)
	}
	if a.Kind != KindAck {
		return Ack{}, fieldErr("kind", "host may send only ack, got %q", clip(string(a.Kind)))
	}
	if err := checkToken("run", a.Run, MaxRunLen, isRunByte); err != nil {
		return Ack{}, err
	}
	if a.Seq == 0 {
		return Ack{}, fieldErr("seq", "missing or zero")
	}
	return a, nil
}
