package natsutil_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/guestdiag/guestdiag/internal/natstest"
	"github.com/guestdiag/guestdiag/internal/natsutil"
)

func TestEnsureStreamDeduplicatesByMsgID(t *testing.T) {
	s := natstest.Start(t)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := natsutil.EnsureStream(ctx, js, natsutil.StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// A second daemon with other settings finds the stream and leaves it be.
	if _, err := natsutil.EnsureStream(ctx, js, natsutil.StreamConfig{Duplicates: time.Minute}); err != nil {
		t.Fatalf("second EnsureStream on an existing stream: %v", err)
	}
	for range 2 {
		if _, err := js.Publish(ctx, "guestdiag.report.h.vm.resources", []byte("{}"), jetstream.WithMsgID("vm/run/1")); err != nil {
			t.Fatal(err)
		}
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Msgs; got != 1 {
		t.Errorf("stream holds %d messages after publishing one id twice, want 1", got)
	}
	if got := info.Config.Duplicates; got != natsutil.DefaultDuplicates {
		t.Errorf("duplicate window %v, want %v", got, natsutil.DefaultDuplicates)
	}
}
