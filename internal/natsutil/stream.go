package natsutil

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/protocol"
)

// Stream names and defaults shared by relay, collector and scheduler.
const (
	StreamName = "GUESTDIAG"
	// StreamSubjects captures everything guestdiag publishes.
	StreamSubjects = "guestdiag.>"
	// DefaultDuplicates must outlast a relay outage plus the agent's resend:
	// a message published just before the relay died and resent after it
	// came back is recognised only inside this window.
	DefaultDuplicates = 2 * time.Hour
	DefaultMaxAge     = 7 * 24 * time.Hour
	// DefaultMaxBytes bounds the stream's disk use whatever guests send;
	// the oldest messages go first, after the collector has consumed them.
	DefaultMaxBytes = 16 << 30
	// MaxMsgSize fits a maximal guest line plus the relay's envelope.
	MaxMsgSize = 2 * protocol.MaxLineLen
)

// StreamConfig configures the GUESTDIAG stream.
type StreamConfig struct {
	Replicas   int
	Duplicates time.Duration
	MaxAge     time.Duration
	MaxBytes   int64
}

// EnsureStream creates the GUESTDIAG stream if it does not exist, so that
// every daemon can start in any order. An existing stream is left as it is:
// daemons with different settings (a relay does not know the cluster's
// replica count) must not rewrite it back and forth. Change a running
// stream's limits with the nats CLI.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Duplicates <= 0 {
		cfg.Duplicates = DefaultDuplicates
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	// Look first: a daemon whose permissions allow only the stream's info
	// (a locked-down relay) must start when the stream exists.
	if s, err := js.Stream(ctx, StreamName); err == nil {
		return s, nil
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("ensure stream %s: %w", StreamName, err)
	}
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "guestdiag reports, heartbeats, channel events, alerts, hints and plans",
		Subjects:    []string{StreamSubjects},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.Duplicates,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    cfg.MaxBytes,
		MaxMsgSize:  MaxMsgSize,
		Discard:     jetstream.DiscardOld,
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		s, err = js.Stream(ctx, StreamName)
	}
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", StreamName, err)
	}
	return s, nil
}
