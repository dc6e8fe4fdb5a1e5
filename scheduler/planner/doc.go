// Package planner turns a fleet's inventory into a migration plan: which
// VMs (or whole chunks of VMs that share a private network) move where, and
// why. Each host carries a policy saying when it is overloaded, underloaded
// or wants to be empty; hard rules (memory, anti-affinity, draining hosts,
// targets not overloaded after a move) filter targets, and anti-thrashing
// rules (cool-down, budgets, minimum gain) keep a stable load still.
//
// It is pure: the same inventory and options give the same plan, so the
// live scheduler and the trace simulator run the same code.
package planner
