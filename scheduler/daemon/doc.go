// Package daemon is guestdiag-scheduler's run loop: it follows host usage
// samples and hints on JetStream, plans a cycle with the planner while it
// holds the lease, publishes the plan on guestdiag.plan, and in execute
// mode carries its moves out through an Executor and publishes each
// outcome. Run is the entry point for the command and for tests.
package daemon
