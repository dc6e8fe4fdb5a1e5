// Package scheduler holds guestdiag's placement: the planner (planner),
// the trace simulator (sim), the fleet inventory (inventory), the leader
// lease (lease), the daemon that plans and acts (daemon) and the executors
// that migrate VMs (executor). This package itself has no code.
package scheduler
