package logs

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/checks"
)

// TestIntegrationLogsKmsg writes an error to /dev/kmsg, as the VM lab
// does, and expects Watch to trigger and Run to report it within 2 s.
func TestIntegrationLogsKmsg(t *testing.T) {
	f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("needs a writable /dev/kmsg (run as root): %v", err)
	}
	defer f.Close()
	cfg := DefaultConfig()
	cfg.Journal, cfg.Kmsg, cfg.Files = "off", "on", []string{}
	l, err := New(cfg, checks.Env{State: checks.NewState(t.TempDir(), Name)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	triggered := make(chan struct{}, 1)
	go l.Watch(ctx, func() {
		select {
		case triggered <- struct{}{}:
		default:
		}
	})
	waitFor(t, func() bool { _, ok := l.agg.position(kmsgSource); return ok })

	msg := fmt.Sprintf("disk failure %d", time.Now().UnixNano())
	if _, err := fmt.Fprintf(f, "<3>guestdiag-test: %s\n", msg); err != nil {
		t.Fatal(err)
	}
	select {
	case <-triggered:
	case <-time.After(2 * time.Second):
		t.Fatal("no trigger within 2 s")
	}
	res := l.Run(ctx)
	found := false
	for _, fd := range res.Findings {
		found = found || fd.Code == CodeLogError && fd.Unit == "guestdiag-test" && fd.Source == "kmsg" && fd.Message == msg
	}
	if !found {
		t.Fatalf("no log.error for %q in %+v", msg, res.Findings)
	}
	if err := l.Commit(); err != nil {
		t.Fatal(err)
	}
}
