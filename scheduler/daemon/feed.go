package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/natsutil"
	"github.com/guestdiag/guestdiag/protocol"
	"github.com/guestdiag/guestdiag/scheduler/inventory"
)

// follow feeds fleet from the stream until ctx ends with host samples from
// the start of the demand window (so a restarted scheduler has its history
// at once). raised is called for each hint raised from now on: a hint is
// only the prompt to plan soon, since drain marks are read from the
// collector's host bucket (watchDrains) and load from the samples. It
// returns once the samples' replay is in, or when ctx ends.
func follow(ctx context.Context, js jetstream.JetStream, fleet *inventory.Fleet, window time.Duration, raised func(protocol.Hint), logger *slog.Logger) error {
	s, err := js.Stream(ctx, natsutil.StreamName)
	if err != nil {
		return fmt.Errorf("stream %s: %w", natsutil.StreamName, err)
	}
	from := time.Now().Add(-window)
	hostSubj, hintSubj := protocol.SubjectPrefix+".host.*", protocol.SubjectPrefix+".hint.*"
	hosts, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{hostSubj},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &from,
	})
	if err != nil {
		return fmt.Errorf("follow host samples: %w", err)
	}
	hints, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{hintSubj},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return fmt.Errorf("follow hints: %w", err)
	}
	// hostsDone is closed once the replay of the window is in.
	hostsDone := make(chan struct{})
	last, pending, err := replayTo(ctx, s, hostSubj, from)
	if err != nil {
		return fmt.Errorf("follow host samples: %w", err)
	}
	if !pending {
		close(hostsDone)
	}
	cc, err := hosts.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		if pending && md.Sequence.Stream >= last {
			defer close(hostsDone)
			pending = false
		}
		var u protocol.HostUsage
		if err := json.Unmarshal(m.Data(), &u); err != nil {
			logger.Warn("host_sample_refused", "subject", m.Subject(), "err", err)
			return
		}
		// The subject is the relay's word for which host it is; a body
		// naming another host is refused, not believed.
		if want := protocol.HostSubject(u.Host); want != m.Subject() {
			logger.Warn("host_sample_refused", "subject", m.Subject(), "err", "host field does not match the subject")
			return
		}
		fleet.Observe(u, md.Timestamp)
	})
	if err != nil {
		return fmt.Errorf("follow host samples: %w", err)
	}
	context.AfterFunc(ctx, cc.Stop)
	hc, err := hints.Consume(func(m jetstream.Msg) {
		var h protocol.Hint
		if err := json.Unmarshal(m.Data(), &h); err != nil || protocol.HintSubject(h.Host) != m.Subject() {
			logger.Warn("hint_refused", "subject", m.Subject())
			return
		}
		if h.State == protocol.HintRaised {
			raised(h)
		}
	})
	if err != nil {
		return fmt.Errorf("follow hints: %w", err)
	}
	context.AfterFunc(ctx, hc.Stop)
	select {
	case <-hostsDone:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// replayTo returns the stream sequence a consumer on subject from from
// has caught up at, and false when it has nothing to replay.
func replayTo(ctx context.Context, s jetstream.Stream, subject string, from time.Time) (uint64, bool, error) {
	m, err := s.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("last message on %s: %w", subject, err)
	}
	if m.Time.Before(from) {
		return 0, false, nil
	}
	return m.Sequence, true, nil
}
