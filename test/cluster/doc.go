// Package cluster tests guestdiag on a real three-node NATS JetStream
// cluster: the server configuration that docs/deploy.md quotes, growing
// from `guestdiag up` to a cluster, and the loss of a node while relays
// and collectors run. It holds tests only.
package cluster
