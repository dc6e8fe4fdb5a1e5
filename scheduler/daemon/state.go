package daemon

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StateBucket holds what must outlive one scheduler: when each VM last
// moved or failed to, and the acting scheduler's status.
const StateBucket = "guestdiag_scheduler"

// StatusKey is the key of the status in StateBucket.
const StatusKey = "status"

// VMRecord is a VM's migration record in StateBucket under "vm.<base64url
// of its name>" (a VM name may hold bytes no key allows).
type VMRecord struct {
	VM    string    `json:"vm"`
	Moved time.Time `json:"moved,omitzero"`
	// To is the host it moved to, which samples older than Moved do not
	// know yet.
	To string `json:"to,omitempty"`
	// Failed is the last failed attempt and Failures how many failed in a
	// row; HoldUntil is when the VM may be planned again.
	Failed    time.Time `json:"failed,omitzero"`
	Failures  int       `json:"failures,omitempty"`
	HoldUntil time.Time `json:"hold_until,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	// InFlight is when a migration of the VM to InFlightTo started, by
	// scheduler InFlightBy; it is cleared when the migration has ended.
	// A scheduler that lost the lease mid-move may leave it set: the VM
	// is then not planned until MigrateTimeout after InFlight, since it
	// may still be migrating.
	InFlight   time.Time `json:"in_flight,omitzero"`
	InFlightTo string    `json:"in_flight_to,omitempty"`
	InFlightBy string    `json:"in_flight_by,omitempty"`
	// inFlightHold says planning made HoldUntil from InFlight, for the
	// plan's wording; never stored.
	inFlightHold bool
}

// Status is the acting scheduler's last cycle, rewritten each cycle, so
// an admin sees it is alive without a plan a minute on guestdiag.plan.
type Status struct {
	Scheduler string    `json:"scheduler"`
	Mode      string    `json:"mode"`
	Executor  string    `json:"executor,omitempty"`
	TS        time.Time `json:"ts"`
	Hosts     int       `json:"hosts"`
	HostsDown int       `json:"hosts_down"`
	VMs       int       `json:"vms"`
	// Plan is the cycle's plan id; Published says whether it went out (a
	// plan is published when it has moves or differs from the last).
	Plan       string `json:"plan"`
	Published  bool   `json:"published"`
	Moves      int    `json:"moves"`
	Unresolved int    `json:"unresolved"`
}

func vmKey(vm string) string { return "vm." + base64.RawURLEncoding.EncodeToString([]byte(vm)) }

// records follows the VM records of StateBucket, so that a new leader
// starts from what the last one wrote. The watch delivers each write,
// this scheduler's own ones too, some time after it was made: an entry
// no newer than what this scheduler wrote, or arriving while one of its
// writes of the record is under way, is not taken, or a record changed
// twice in quick succession would fall back to its first change.
type records struct {
	kv jetstream.KeyValue

	mu   sync.Mutex
	byVM map[string]VMRecord
	// rev is the newest revision known of each VM's record, and writing
	// how many of this scheduler's writes of it are under way.
	rev     map[string]uint64
	writing map[string]int
	ready   chan struct{}
}

func openState(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: StateBucket, Description: "guestdiag-scheduler: VM migration records and status",
		History: 1, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("state bucket %s: %w", StateBucket, err)
	}
	return kv, nil
}

// watchRecords starts following kv's VM records until ctx ends; ready is
// closed once the records present at the start are in.
func watchRecords(ctx context.Context, kv jetstream.KeyValue) (*records, error) {
	w, err := kv.Watch(ctx, "vm.*")
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", StateBucket, err)
	}
	r := &records{kv: kv, byVM: map[string]VMRecord{}, rev: map[string]uint64{}, writing: map[string]int{}, ready: make(chan struct{})}
	go func() {
		defer w.Stop()
		initial := true
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					if initial {
						close(r.ready)
						initial = false
					}
					continue
				}
				r.apply(e)
			}
		}
	}()
	return r, nil
}

func (r *records) apply(e jetstream.KeyValueEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	name, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(e.Key(), "vm."))
	if err != nil {
		return
	}
	vm := string(name)
	if r.writing[vm] > 0 || e.Revision() <= r.rev[vm] {
		return
	}
	r.rev[vm] = e.Revision()
	if e.Operation() != jetstream.KeyValuePut {
		delete(r.byVM, vm)
		return
	}
	var rec VMRecord
	if json.Unmarshal(e.Value(), &rec) == nil && rec.VM == vm {
		r.byVM[rec.VM] = rec
	}
}

func (r *records) get(vm string) VMRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.byVM[vm]
	if !ok {
		rec.VM = vm
	}
	return rec
}

// snapshot returns every record.
func (r *records) snapshot() map[string]VMRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]VMRecord, len(r.byVM))
	for k, v := range r.byVM {
		out[k] = v
	}
	return out
}

// put keeps rec at once, so the next cycle sees it without waiting for
// the watch, and then writes it. A failed write still leaves the record in
// memory: a failure hold the bucket did not take must still hold here,
// or the next cycle would try the move again.
func (r *records) put(ctx context.Context, rec VMRecord) error {
	r.mu.Lock()
	r.byVM[rec.VM] = rec
	r.writing[rec.VM]++
	r.mu.Unlock()
	var rev uint64
	b, err := json.Marshal(rec)
	if err == nil {
		rev, err = r.kv.Put(ctx, vmKey(rec.VM), b)
	}
	r.mu.Lock()
	r.writing[rec.VM]--
	if r.writing[rec.VM] == 0 {
		delete(r.writing, rec.VM)
	}
	r.rev[rec.VM] = max(r.rev[rec.VM], rev)
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("record %s: %w", rec.VM, err)
	}
	return nil
}

// planning returns recs as the planner is to see them: a VM with a
// migration in flight is held until timeout after its start, so that no
// scheduler plans a VM another may still be migrating.
func planning(recs map[string]VMRecord, now time.Time, timeout time.Duration) map[string]VMRecord {
	for vm, r := range recs {
		if r.InFlight.IsZero() {
			continue
		}
		if until := r.InFlight.Add(timeout); until.After(now) && until.After(r.HoldUntil) {
			r.HoldUntil = until
			r.LastError = fmt.Sprintf("a migration to %s started by %s at %s has not ended", r.InFlightTo, r.InFlightBy, r.InFlight.UTC().Format(time.RFC3339))
			r.inFlightHold = true
			recs[vm] = r
		}
	}
	return recs
}

func putStatus(ctx context.Context, kv jetstream.KeyValue, s Status) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, StatusKey, b); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	return nil
}

// ReadStatus returns the acting scheduler's last status, for the plan
// command and tests; jetstream.ErrKeyNotFound when none ran yet.
func ReadStatus(ctx context.Context, js jetstream.JetStream) (Status, error) {
	var s Status
	kv, err := js.KeyValue(ctx, StateBucket)
	if err != nil {
		return s, fmt.Errorf("state bucket %s: %w", StateBucket, err)
	}
	e, err := kv.Get(ctx, StatusKey)
	if err != nil {
		return s, fmt.Errorf("status: %w", err)
	}
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return s, fmt.Errorf("status: %w", err)
	}
	return s, nil
}
