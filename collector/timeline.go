package collector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/protocol"
)

// The timeline stream: one subject per VM, the newest TimelineMax entries
// of each kept for TimelineMaxAge.
const (
	TimelineStream = "GUESTDIAG_TIMELINE"
	// TimelinePrefix roots the timeline subjects. It is not under
	// "guestdiag." because the GUESTDIAG stream captures all of that, and
	// two streams may not share subjects.
	TimelinePrefix = "guestdiag_timeline"
	TimelineMax    = 500
	TimelineMaxAge = 30 * 24 * time.Hour
	// timelineDuplicates is how long a timeline entry's id is remembered,
	// so that a redelivered message adds nothing.
	timelineDuplicates = 2 * time.Hour
	timelineMaxBytes   = 4 << 30
)

// TimelineSubject is the subject of one VM's timeline.
func TimelineSubject(host, vm string) string {
	return TimelinePrefix + "." + protocol.EscapeToken(host) + "." + protocol.EscapeToken(vm)
}

func (c *Collector) timelineStream(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              TimelineStream,
		Description:       "guestdiag per-VM timelines: status changes, alerts, channel events, agent runs, software and firewall changes",
		Subjects:          []string{TimelinePrefix + ".>"},
		Storage:           jetstream.FileStorage,
		Replicas:          c.cfg.Replicas,
		MaxMsgsPerSubject: TimelineMax,
		MaxAge:            TimelineMaxAge,
		MaxBytes:          timelineMaxBytes,
		Duplicates:        timelineDuplicates,
		Discard:           jetstream.DiscardOld,
		AllowDirect:       true,
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", TimelineStream, err)
	}
	return s, nil
}

// appendTimeline adds ev to the VM's timeline under msgID: the same cause
// adds one entry however often it is handled.
func (c *Collector) appendTimeline(ctx context.Context, b *backend, host, vm string, ev TimelineEvent, msgID string) error {
	val, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if _, err := b.js.Publish(ctx, TimelineSubject(host, vm), val, jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("timeline %s/%s: %w", host, vm, err)
	}
	return nil
}

// Timeline returns the VM's timeline, newest first: at most TimelineMax
// entries from the last TimelineMaxAge. It reads the stream with an
// ordered consumer filtered on the VM's subject, which starts at the VM's
// first message, so it costs one round trip per batch whatever the fleet's
// size.
func (c *Collector) Timeline(host, vm string) []TimelineEvent {
	sp := c.timeline.Load()
	if sp == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	evs, err := readTimeline(ctx, *sp, TimelineSubject(host, vm))
	if err != nil {
		c.log.Warn("timeline_read_failed", "host", host, "vm", vm, "err", err)
	}
	return evs
}

func readTimeline(ctx context.Context, s jetstream.Stream, subject string) ([]TimelineEvent, error) {
	last, err := s.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return nil, err
	}
	var out []TimelineEvent
	for {
		batch, err := cons.FetchNoWait(TimelineMax)
		if err != nil {
			return out, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var ev TimelineEvent
			if json.Unmarshal(m.Data(), &ev) == nil {
				out = append(out, ev)
			}
			if md, err := m.Metadata(); err == nil && md.Sequence.Stream >= last.Sequence {
				slices.Reverse(out)
				return out, nil
			}
		}
		if err := batch.Error(); err != nil {
			return out, err
		}
		if n == 0 {
			// FetchNoWait found nothing yet: the consumer is still being
			// created on the server.
			select {
			case <-ctx.Done():
				slices.Reverse(out)
				return out, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
}

// effectsPlan is what one change of a record causes: entries on the VM's
// timeline and observations of alert conditions.
type effectsPlan struct {
	host, vm string
	items    []timelineItem
	obs      []*observation
}

type timelineItem struct {
	ev TimelineEvent
	id string
}

func (p *effectsPlan) empty() bool { return len(p.items) == 0 && len(p.obs) == 0 }

// plan works out what the change from old to cur causes: alerts of a
// check's result, and entries on the VM's timeline.
func (c *Collector) plan(old, cur *VM, u update) effectsPlan {
	p := effectsPlan{host: cur.Host, vm: cur.Name}
	vmID := protocol.EscapeToken(cur.Host) + "/" + protocol.EscapeToken(cur.Name)
	if u.check != "" {
		oc, nc := old.Checks[u.check], cur.Checks[u.check]
		id := vmID + "/" + nc.Run + "/" + strconv.FormatUint(nc.Seq, 10) + "/"
		if oc == nil || oc.Status != nc.Status {
			ev := TimelineEvent{TS: nc.Received, Kind: "status", Check: u.check, To: string(nc.Status), Text: nc.Summary}
			if oc != nil {
				ev.From = string(oc.Status)
			}
			p.items = append(p.items, timelineItem{ev, id + "status"})
		}
		for i, f := range nc.Findings {
			kind := ""
			switch {
			case strings.HasPrefix(f.Code, "sw."):
				kind = "software"
			case f.Code == "fw.changed":
				kind = "firewall"
			}
			if kind == "" || oc != nil && slices.ContainsFunc(oc.Findings, func(p protocol.Finding) bool {
				return p.Code == f.Code && p.Source == f.Source && p.Message == f.Message
			}) {
				continue
			}
			p.items = append(p.items, timelineItem{TimelineEvent{TS: nc.Received, Kind: kind, Check: u.check, Text: f.Message}, id + kind + "/" + strconv.Itoa(i)})
		}
	}
	if h := cur.Hello; h != nil && (old.Hello == nil || old.Hello.Run != h.Run) {
		text := fmt.Sprintf("agent %s started on %s %s", h.AgentVersion, h.OS, h.Kernel)
		p.items = append(p.items, timelineItem{TimelineEvent{TS: h.Received, Kind: "hello", To: h.Run, Text: text}, vmID + "/" + h.Run + "/hello"})
	}
	if oc, nc := old.Channel, cur.Channel; nc.State != oc.State {
		text := "channel " + string(nc.State)
		if nc.Reason != "" {
			text += ": " + nc.Reason
		}
		id := vmID + "/channel/" + strconv.FormatInt(nc.Since.UnixNano(), 10) + "/" + string(nc.State)
		p.items = append(p.items, timelineItem{TimelineEvent{TS: nc.Since, Kind: "channel", From: string(oc.State), To: string(nc.State), Text: text}, id})
	}
	if l := cur.Lifecycle; l != nil && (old.Lifecycle == nil || *old.Lifecycle != *l) {
		p.items = append(p.items, lifecycleTimeline(vmID, old.Lifecycle, l))
		p.obs = append(p.obs, c.lifecycleObservations(cur)...)
	}
	if u.check != "" {
		p.obs = c.resultObservations(old, cur, u.check)
	}
	return p
}

// effects does, before a message's record is written, what plan found the
// change causes.
func (c *Collector) effects(ctx context.Context, b *backend, p effectsPlan) error {
	now := time.Now().UTC()
	for _, it := range p.items {
		if err := c.appendTimeline(ctx, b, p.host, p.vm, it.ev, it.id); err != nil {
			return err
		}
	}
	for _, o := range p.obs {
		if err := c.observe(ctx, b, o.key, o, now); err != nil {
			return err
		}
	}
	return nil
}
