// Package alertmanager pushes guestdiag alerts to one or more Prometheus
// Alertmanagers through their v2 API, so the routing administrators already
// have (email, Slack, PagerDuty) receives them with no new tool.
//
// Notify only enqueues: a bounded queue, coalesced by fingerprint, is drained
// by Run, which retries with backoff and resends every firing alert each
// ResendInterval, as Alertmanager expects of its clients. Builds on every GOOS.
package alertmanager
