// Package protocol is the guestdiag wire format: the envelopes a guest agent
// writes over virtio-serial or vsock, the acknowledgement the host sends back,
// the relay envelope published to NATS, NDJSON framing with a bounded line
// length, validation, and escaping of names into NATS subject tokens.
//
// It builds on every GOOS and imports nothing outside the standard library, so
// the guest agent can depend on it without pulling in NATS or web code.
package protocol
