package hostrelay

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/guestdiag/guestdiag/internal/natstest"
)

func TestRelayFindsAndDropsChannelsThroughInotifyWithin2s(t *testing.T) {
	srv := natstest.Start(t)
	dir := socketDir(t)
	cfg := testConfig(dir)
	cfg.RescanInterval = time.Hour // only inotify can find the channel in time
	log, _ := newTestLogger(t)
	r, _ := startRelay(t, srv, cfg, log)
	eventually(t, "the relay to start watching", func() bool { return r.metrics.ready.Load() })

	// libvirt creates the folder, then QEMU the socket in it; moving a
	// finished folder into place makes the test independent of whether
	// the relay watched the folder before the socket appeared.
	staging := filepath.Join(dir, "staging")
	q := listenChannel(t, filepath.Join(staging, "domain-7-late", channelFile))
	folder := filepath.Join(dir, "domain-7-late")
	start := time.Now()
	if err := os.Rename(filepath.Dir(q.path), folder); err != nil {
		t.Fatal(err)
	}
	q.path = filepath.Join(folder, channelFile)
	g := q.accept(t)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the new channel was connected %v after it appeared, want within 2s", took)
	}
	g.send(t, resultLine(t, "r1", 1, "resources"))
	g.mustAck(t, "r1", 1)

	start = time.Now()
	if err := os.RemoveAll(folder); err != nil {
		t.Fatal(err)
	}
	g.waitClosed(t)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the vanished channel was closed %v after it went, want within 2s", took)
	}
	if got := r.Channels(); len(got) != 0 {
		t.Errorf("still watching %v", got)
	}
}
