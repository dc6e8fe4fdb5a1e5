package winsvc

import "time"

// Service describes a service to install.
type Service struct {
	Name        string
	DisplayName string
	Description string
	// Exe is the program's absolute path; Args follow it on the command
	// line the service manager starts.
	Exe  string
	Args []string
}

// Restarts are the recovery actions Install sets: the service manager
// restarts a service that ended without reporting Stopped, or reported it
// with an error, after these delays for the first, second and every later
// failure, and forgets failures after ResetPeriod without one.
var Restarts = []time.Duration{5 * time.Second, 30 * time.Second, 60 * time.Second}

// ResetPeriod is how long without a failure resets the failure count.
const ResetPeriod = 24 * time.Hour

// Event IDs written to the event log. The event source is registered with
// EventCreate.exe as its message file, which formats IDs 1 to 1000 as the
// bare message text.
const (
	eventStarted = 1
	eventStopped = 2
	eventFailed  = 3
	// eventRecoverySet: the service gave itself its recovery actions.
	eventRecoverySet = 4
	eventLog         = 10 // a copied log record
)

// Status is what the service manager says about an installed service.
type Status struct {
	State     string // "stopped", "running", ...
	StartType string // "automatic", "manual", "disabled", ...
	// Restarts are the recovery actions' restart delays, in order.
	Restarts    []time.Duration
	ResetPeriod time.Duration
	// RecoveryErr is why the recovery actions could not be read, if so.
	RecoveryErr error
}
