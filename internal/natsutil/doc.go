// Package natsutil holds the NATS pieces every guestdiag daemon shares: the
// JetStream stream definition and an embedded server for `guestdiag up` and
// for tests. It is internal because it is wiring, not an API.
package natsutil
