// Package collector consumes what relays publish to the GUESTDIAG JetStream
// stream, folds it into one state record per VM kept in a JetStream KV bucket,
// and serves that state as a JSON API.
//
// Several collectors may share the durable consumer to scale out: JetStream
// hands each message to one of them, and every state change is a
// compare-and-set on the record's KV revision, so concurrent collectors never
// lose each other's updates. Builds on every GOOS.
package collector
