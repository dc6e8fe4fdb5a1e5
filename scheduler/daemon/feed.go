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

// follow feeds fleet from the stream until ctx ends: host samples from the
// start of the demand window (so a restarted scheduler has its history at
// once), hints from the beginning (an evacuate raised days ago still
// holds, and hints are few: one message per change). raised is called for
// each hint raised after the replay. It returns once both replays are in,
// or when ctx ends.
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
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("follow hints: %w", err)
	}
	hostsDone, hintsDone := make(chan struct{}), make(chan struct{})
	start := func(c jetstream.Consumer, subject string, from time.Time, done chan struct{}, handle func(jetstream.Msg, bool)) error {
		last, pending, err := replayTo(ctx, s, subject, from)
		if err != nil {
			return err
		}
		caughtUp := !pending
		if caughtUp {
			close(done)
		}
		cc, err := c.Consume(func(m jetstream.Msg) {
			md, err := m.Metadata()
			if err != nil {
				return
			}
			handle(m, caughtUp)
			if !caughtUp && md.Sequence.Stream >= last {
				caughtUp = true
				close(done)
			}
		})
		if err != nil {
			return err
		}
		context.AfterFunc(ctx, cc.Stop)
		return nil
	}
	err = start(hosts, hostSubj, from, hostsDone, func(m jetstream.Msg, _ bool) {
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
		md, _ := m.Metadata()
		fleet.Observe(u, md.Timestamp)
	})
	if err != nil {
		return fmt.Errorf("follow host samples: %w", err)
	}
	err = start(hints, hintSubj, time.Time{}, hintsDone, func(m jetstream.Msg, live bool) {
		var h protocol.Hint
		if err := json.Unmarshal(m.Data(), &h); err != nil || protocol.HintSubject(h.Host) != m.Subject() {
			logger.Warn("hint_refused", "subject", m.Subject())
			return
		}
		fleet.ObserveHint(h)
		if live && h.State == protocol.HintRaised {
			raised(h)
		}
	})
	if err != nil {
		return fmt.Errorf("follow hints: %w", err)
	}
	for _, done := range []chan struct{}{hostsDone, hintsDone} {
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
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
