package collector

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// bucketHandler is what watchBucket does with one bucket's entries.
type bucketHandler struct {
	// entry takes one put or delete; loading is true while the bucket's
	// records at the start of the watch are still being delivered.
	entry func(e jetstream.KeyValueEntry, loading bool)
	// loaded runs once, after the last of those records.
	loaded func()
}

// watchBucket feeds every entry of kv, the bucket called name, to h until
// ctx is cancelled, when it returns nil. A watcher that ends by itself is
// an error, so that the caller starts the watch again.
func watchBucket(ctx context.Context, kv jetstream.KeyValue, name string, h bucketHandler) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watch %s: %w", name, err)
	}
	defer w.Stop()
	loading := true
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case e, ok = <-w.Updates():
		}
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watch %s: watcher closed", name)
		}
		if e == nil {
			// The nil entry marks the end of the initial records, and
			// comes once.
			if loading {
				h.loaded()
				loading = false
			}
			continue
		}
		h.entry(e, loading)
	}
}
