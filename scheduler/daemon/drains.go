package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/pause"
	"github.com/guestdiag/guestdiag/scheduler/inventory"
)

// DefaultHostBucket is the collector's bucket of per-host records
// (collector.DefaultHostBucket), whose drain marks say which hosts are
// under maintenance.
const DefaultHostBucket = "guestdiag_hosts"

// bucketRetry is how often a missing host bucket is looked for again: the
// collector creates it when it starts, maybe after the scheduler.
const bucketRetry = 10 * time.Second

// hostMark is the part of the collector's host record the scheduler reads.
type hostMark struct {
	Host  string    `json:"host"`
	Drain *struct{} `json:"drain"`
}

// drainKey is how the drain mark's key reads in a host record's JSON.
var drainKey = []byte(`"drain"`)

// watchDrains follows the drain marks of the collector's host bucket into
// fleet until ctx ends. They are read from the bucket, not from the
// evacuate hints: the stream keeps hints for a while and a count per
// subject, and all kinds share one subject, so a restarted scheduler
// could miss a drain made days ago. The returned channel is closed once
// the marks present at the start are in, or at once when the bucket does
// not exist yet (no collector has run: no host is drained); it is then
// looked for again every bucketRetry.
func watchDrains(ctx context.Context, js jetstream.JetStream, bucket string, fleet *inventory.Fleet, logger *slog.Logger) (<-chan struct{}, error) {
	ready := make(chan struct{})
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		logger.Info("host_bucket_missing", "bucket", bucket, "then", "no host is drained until the collector creates it")
		close(ready)
		go func() {
			for pause.For(ctx, bucketRetry) == nil {
				kv, err := js.KeyValue(ctx, bucket)
				if err != nil {
					continue
				}
				if err := followDrains(ctx, kv, fleet, make(chan struct{}), logger); err != nil && ctx.Err() == nil {
					logger.Error("host_bucket_watch_failed", "bucket", bucket, "err", err)
				}
				return
			}
		}()
		return ready, nil
	}
	if err != nil {
		return nil, fmt.Errorf("host bucket %s: %w", bucket, err)
	}
	if err := followDrains(ctx, kv, fleet, ready, logger); err != nil {
		return nil, fmt.Errorf("host bucket %s: %w", bucket, err)
	}
	return ready, nil
}

// followDrains starts a watch of kv's records; ready is closed once the
// present ones are in.
func followDrains(ctx context.Context, kv jetstream.KeyValue, fleet *inventory.Fleet, ready chan struct{}, logger *slog.Logger) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	go func() {
		defer w.Stop()
		hosts := map[string]string{} // the drained ones by key, for undrains and deletes
		for {
			var e jetstream.KeyValueEntry
			var ok bool
			select {
			case <-ctx.Done():
				return
			case e, ok = <-w.Updates():
			}
			if !ok {
				// A closed watch would read as endless end-of-start
				// markers.
				logger.Error("host_watch_closed", "bucket", kv.Bucket())
				return
			}
			if e == nil {
				select {
				case <-ready:
				default:
					close(ready)
				}
				continue
			}
			// Most writes are a sample's, of a record up to hundreds of
			// KB, with no drain mark: json.Marshal writes the key
			// "drain" only with one, and a string holding those quotes
			// escapes them, so a record without the bytes is undrained
			// without decoding it. A record with them is decoded.
			if e.Operation() != jetstream.KeyValuePut || !bytes.Contains(e.Value(), drainKey) {
				if host, ok := hosts[e.Key()]; ok {
					fleet.SetDrain(host, false)
					delete(hosts, e.Key())
				}
				continue
			}
			var m hostMark
			if err := json.Unmarshal(e.Value(), &m); err != nil || m.Host == "" {
				logger.Warn("host_record_refused", "key", e.Key(), "err", err)
				continue
			}
			hosts[e.Key()] = m.Host
			fleet.SetDrain(m.Host, m.Drain != nil)
		}
	}()
	return nil
}
