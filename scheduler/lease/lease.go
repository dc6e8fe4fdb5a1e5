package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Defaults.
const (
	DefaultBucket = "guestdiag_scheduler_lease"
	DefaultKey    = "leader"
	DefaultTTL    = 15 * time.Second
)

// ErrNotHeld says this instance does not hold the lease.
var ErrNotHeld = errors.New("lease not held")

// Config names the lease and its holder.
type Config struct {
	Bucket string
	Key    string
	// Name is the holder's name, stored as the key's value.
	Name string
	TTL  time.Duration
	// Replicas of the bucket on a cluster; 0 is 1.
	Replicas int
}

// Lease is one instance's side of the lease.
type Lease struct {
	cfg    Config
	kv     jetstream.KeyValue
	logger *slog.Logger

	mu      sync.Mutex
	rev     uint64    // the revision we wrote; 0 when not held
	renewed time.Time // when that write was acknowledged
	changed chan struct{}
}

// Open creates the bucket if it does not exist.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config, logger *slog.Logger) (*Lease, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.Key == "" {
		cfg.Key = DefaultKey
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Name == "" {
		return nil, errors.New("lease: no holder name")
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "which guestdiag-scheduler may act",
		TTL:         cfg.TTL,
		History:     1,
		Replicas:    max(cfg.Replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("lease bucket %s: %w", cfg.Bucket, err)
	}
	return &Lease{cfg: cfg, kv: kv, logger: logger, changed: make(chan struct{})}, nil
}

// Held reports whether this instance holds the lease by its own record:
// its last renewal succeeded less than a TTL ago. Check asks the server.
func (l *Lease) Held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.heldLocked(time.Now())
}

func (l *Lease) heldLocked(now time.Time) bool {
	return l.rev != 0 && now.Sub(l.renewed) < l.cfg.TTL
}

// Changed returns a channel closed at the next gain or loss of the lease.
func (l *Lease) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// Check confirms with the server that the lease is still ours, as a holder
// must before each move: another instance may have taken it while this one
// was paused.
func (l *Lease) Check(ctx context.Context) error {
	l.mu.Lock()
	rev, held := l.rev, l.heldLocked(time.Now())
	l.mu.Unlock()
	if !held {
		return ErrNotHeld
	}
	e, err := l.kv.Get(ctx, l.cfg.Key)
	if err != nil {
		return fmt.Errorf("check lease: %w", err)
	}
	if e.Revision() != rev || string(e.Value()) != l.cfg.Name {
		l.set(0)
		return fmt.Errorf("%w: %s holds it", ErrNotHeld, e.Value())
	}
	return nil
}

// Holder returns the name of whoever holds the lease now, "" if nobody.
func (l *Lease) Holder(ctx context.Context) (string, error) {
	e, err := l.kv.Get(ctx, l.cfg.Key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("lease holder: %w", err)
	}
	return string(e.Value()), nil
}

func (l *Lease) set(rev uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	was := l.heldLocked(time.Now())
	l.rev = rev
	if rev != 0 {
		l.renewed = time.Now()
	}
	if was != (rev != 0) {
		close(l.changed)
		l.changed = make(chan struct{})
	}
}

// Run takes the lease when it is free and renews it every TTL/3 until ctx
// ends; then it gives the lease up so another instance need not wait for
// it to expire. It returns nil when ctx is cancelled.
func (l *Lease) Run(ctx context.Context) error {
	t := time.NewTicker(l.cfg.TTL / 3)
	defer t.Stop()
	for {
		l.step(ctx)
		select {
		case <-ctx.Done():
			l.release()
			return nil
		case <-t.C:
		}
	}
}

func (l *Lease) step(ctx context.Context) {
	l.mu.Lock()
	rev := l.rev
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, l.cfg.TTL/3)
	defer cancel()
	if rev == 0 {
		r, err := l.kv.Create(ctx, l.cfg.Key, []byte(l.cfg.Name))
		if err != nil {
			if !errors.Is(err, jetstream.ErrKeyExists) {
				l.logger.Warn("lease_take_failed", "err", err)
			}
			return
		}
		l.set(r)
		l.logger.Info("lease_taken", "holder", l.cfg.Name, "ttl", l.cfg.TTL)
		return
	}
	r, err := l.kv.Update(ctx, l.cfg.Key, []byte(l.cfg.Name), rev)
	if err != nil {
		// Stop at once: whether the key expired or the server is gone,
		// this instance can no longer show it is the only one acting.
		l.set(0)
		l.logger.Warn("lease_lost", "holder", l.cfg.Name, "err", err)
		return
	}
	l.set(r)
}

func (l *Lease) release() {
	l.mu.Lock()
	rev := l.rev
	l.mu.Unlock()
	if rev == 0 {
		return
	}
	l.set(0)
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.TTL/3)
	defer cancel()
	if err := l.kv.Delete(ctx, l.cfg.Key, jetstream.LastRevision(rev)); err != nil {
		l.logger.Warn("lease_release_failed", "err", err)
		return
	}
	l.logger.Info("lease_released", "holder", l.cfg.Name)
}
