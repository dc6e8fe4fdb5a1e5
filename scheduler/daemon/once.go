package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/scheduler/inventory"
)

// PlanNow returns the plan the stream's current state gives under f,
// with the acting scheduler's migration records when there are any. It
// publishes nothing, takes no lease and moves nothing: it is what an
// admin runs to see what the scheduler would do.
func PlanNow(ctx context.Context, nc *nats.Conn, f *File, name string) (protocol.Plan, error) {
	cfg := Config{Name: name, File: f}
	if err := cfg.check(); err != nil {
		return protocol.Plan{}, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return protocol.Plan{}, err
	}
	fleet := inventory.NewFleet(inventory.Demand{Window: time.Duration(f.Demand.Window), Percentile: f.Demand.Percentile})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	drains, err := watchDrains(ctx, js, cfg.File.HostBucket, fleet, cfg.Logger)
	if err != nil {
		return protocol.Plan{}, err
	}
	if err := follow(ctx, js, fleet, time.Duration(f.Demand.Window), func(protocol.Hint) {}, cfg.Logger); err != nil {
		return protocol.Plan{}, err
	}
	select {
	case <-drains:
	case <-ctx.Done():
		return protocol.Plan{}, ctx.Err()
	}
	recs := map[string]VMRecord{}
	var stored func(string) time.Time
	kv, err := js.KeyValue(ctx, StateBucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
	case err != nil:
		return protocol.Plan{}, fmt.Errorf("state bucket %s: %w", StateBucket, err)
	default:
		r, err := watchRecords(ctx, kv)
		if err != nil {
			return protocol.Plan{}, err
		}
		select {
		case <-r.ready:
		case <-ctx.Done():
			return protocol.Plan{}, ctx.Err()
		}
		recs, stored = planning(r.snapshot(), time.Now(), time.Duration(f.MigrateTimeout)), storedTimes(ctx, kv)
	}
	d := &daemon{cfg: cfg, f: f, fleet: fleet, log: cfg.Logger}
	now := time.Now()
	derived, unknown := d.chunks(ctx, now)
	inv, p := planCycle(fleet, f, derived, recs, stored, now)
	p = withoutSources(p, unknown)
	return toProtocol(inv, p, "now-"+protocol.EscapeToken(name), name, "plan", now), nil
}
