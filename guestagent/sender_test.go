package guestagent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

const hostTimeout = 5 * time.Second

// startSender runs a sender on a fresh spool until the test ends.
func startSender(t *testing.T) (*spool, *pipeTransport) {
	t.Helper()
	sp := openTestSpool(t, t.TempDir(), 1<<20)
	return sp, runSender(t, sp, Config{})
}

// runSender runs a sender on sp with cfg's timeouts until the test ends.
func runSender(t *testing.T, sp *spool, cfg Config) *pipeTransport {
	t.Helper()
	tr := newPipeTransport()
	runSenderOn(t, sp, tr, cfg)
	return tr
}

// runSenderOn runs a sender on sp over tr until the test ends.
func runSenderOn(t *testing.T, sp *spool, tr Transport, cfg Config) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	snd := newSender(sp, tr, cfg.withDefaults(), discardLogger())
	snd.runID = "S"
	go func() { done <- snd.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("sender.run returned %v after cancel, want nil", err)
			}
		case <-time.After(hostTimeout):
			t.Error("sender.run did not return after cancel")
		}
	})
}

func TestSenderSendsSpoolInOrderAndAcksShrinkIt(t *testing.T) {
	sp, tr := startSender(t)
	for i := uint64(1); i <= 3; i++ {
		mustAppend(t, sp, "A", i, 80)
	}
	h := tr.connect(t, hostTimeout)
	h.expectNewline(t)
	if got, want := h.ids(t, 3), seqs("A", 1, 3); !slices.Equal(got, want) {
		t.Fatalf("host got %v, want %v", got, want)
	}
	h.ack(t, "A", 2)
	eventually(t, "the ack of A/2 leaves one message", func() bool { return sp.waiting() == 1 })
	h.ack(t, "A", 3)
	eventually(t, "the ack of A/3 empties the spool", func() bool { return sp.waiting() == 0 })

	mustAppend(t, sp, "A", 4, 80)
	if got, want := h.ids(t, 1), seqs("A", 4, 4); !slices.Equal(got, want) {
		t.Errorf("a new message: host got %v, want %v", got, want)
	}
}

func TestSenderResendsUnackedAfterReconnect(t *testing.T) {
	sp, tr := startSender(t)
	for i := uint64(1); i <= 3; i++ {
		mustAppend(t, sp, "A", i, 80)
	}
	h := tr.connect(t, hostTimeout)
	h.expectNewline(t)
	h.ids(t, 3)
	h.ack(t, "A", 1)
	eventually(t, "the ack of A/1 is applied", func() bool { return sp.waiting() == 2 })
	h.conn.Close()

	// Spooled while disconnected.
	mustAppend(t, sp, "A", 4, 80)

	h = tr.connect(t, hostTimeout)
	h.expectNewline(t)
	if got, want := h.ids(t, 3), seqs("A", 2, 4); !slices.Equal(got, want) {
		t.Fatalf("after reconnect host got %v, want %v", got, want)
	}
	mustAppend(t, sp, "A", 5, 80)
	if got, want := h.ids(t, 1), seqs("A", 5, 5); !slices.Equal(got, want) {
		t.Errorf("then host got %v, want %v", got, want)
	}
}

func TestSenderDeliversWhatWasSpooledBeforeTheHostCame(t *testing.T) {
	sp, tr := startSender(t)
	mustAppend(t, sp, "old", 7, 80)
	for i := uint64(1); i <= 3; i++ {
		mustAppend(t, sp, "new", i, 80)
	}
	h := tr.connect(t, hostTimeout)
	h.expectNewline(t)
	want := append(seqs("old", 7, 7), seqs("new", 1, 3)...)
	if got := h.ids(t, 4); !slices.Equal(got, want) {
		t.Errorf("host got %v, want %v", got, want)
	}
}

func TestSenderIgnoresAnythingButAcks(t *testing.T) {
	sp, tr := startSender(t)
	for i := uint64(1); i <= 3; i++ {
		mustAppend(t, sp, "A", i, 80)
	}
	h := tr.connect(t, hostTimeout)
	h.expectNewline(t)
	h.ids(t, 3)
	for _, junk := range []string{
		"hello agent\n",
		`{"v":1,"kind":"result","run":"A","seq":3}` + "\n",
		`{"v":2,"kind":"ack","run":"A","seq":3}` + "\n",
		`{"v":1,"kind":"ack","run":"A","seq":3,"exec":"rm -rf /"}` + "\n",
		`{"v":1,"kind":"ack","run":"A/../x","seq":3}` + "\n",
		strings.Repeat("x", 10<<10) + "\n",
		"\n",
	} {
		h.send(t, junk)
	}
	h.ack(t, "A", 2)
	eventually(t, "the valid ack after the junk is applied", func() bool { return sp.waiting() == 1 })
	if got, want := contents(t, sp), seqs("A", 3, 3); !slices.Equal(got, want) {
		t.Errorf("spool holds %v, want %v", got, want)
	}
	mustAppend(t, sp, "A", 4, 80)
	if got, want := h.ids(t, 1), seqs("A", 4, 4); !slices.Equal(got, want) {
		t.Errorf("the connection survives the junk: host got %v, want %v", got, want)
	}
}

func TestSenderBoundsAcksByWhatWasSent(t *testing.T) {
	sp, tr := startSender(t)
	for i := uint64(1); i <= 3; i++ {
		mustAppend(t, sp, "A", i, 80)
	}
	mustAppend(t, sp, "C", 1, 80)
	h := tr.connect(t, hostTimeout)
	h.expectNewline(t)
	// The pipe has no buffer: the sender is now blocked writing A/2, so
	// neither A/3 nor C/1 can have been written.
	h.ids(t, 1)
	h.ack(t, "C", 1)
	h.ack(t, "A", 3)
	// Acks are applied in order: once A/1 is gone, C/1's ack was handled.
	eventually(t, "the ack of A/3 is applied", func() bool { return sp.waiting() < 4 })
	got := contents(t, sp)
	if !slices.Contains(got, "A/3") {
		t.Errorf("spool holds %v after an ack beyond what was sent; want A/3 kept", got)
	}
	if !slices.Contains(got, "C/1") {
		t.Errorf("spool holds %v after an ack of a run not sent yet; want C/1 kept", got)
	}
}

func TestSenderAckOfOneRunKeepsOtherRuns(t *testing.T) {
	sp, tr := startSender(t)
	for i := uint64(1); i <= 2; i++ {
		mustAppend(t, sp, "A", i, 80)
	}
	for i := uint64(1); i <= 2; i++ {
		mustAppend(t, sp, "B", i, 80)
	}
	h := tr.connect(t, hostTimeout)
	h.expectNewline(t)
	if got, want := h.ids(t, 4), append(seqs("A", 1, 2), seqs("B", 1, 2)...); !slices.Equal(got, want) {
		t.Fatalf("host got %v, want %v", got, want)
	}
	h.ack(t, "B", 2)
	eventually(t, "the ack of B/2 is applied", func() bool { return sp.waiting() <= 2 })
	if got, want := contents(t, sp), seqs("A", 1, 2); !slices.Equal(got, want) {
		t.Errorf("after acking B/2 the spool holds %v, want %v", got, want)
	}
}

// expectClosed checks that the agent ends the connection without writing
// anything more.
func (h *testHost) expectClosed(t *testing.T) {
	t.Helper()
	h.conn.SetReadDeadline(time.Now().Add(h.timeout))
	l, err := h.r.ReadString('\n')
	if !errors.Is(err, io.EOF) {
		t.Fatalf("read %q, %v; want the agent to close the connection", l, err)
	}
}

func TestSenderRetriesARecordItCannotReadYet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		sp := openTestSpool(t, dir, 32<<10) // 4 KiB segments
		mustAppend(t, sp, "A", 1, 5000)     // fills the first segment
		mustAppend(t, sp, "A", 2, 80)
		segs := segFiles(t, dir)
		if len(segs) != 2 {
			t.Fatalf("segments %v, want A/1 and A/2 in two", segs)
		}
		// Reading a directory fails with EISDIR: a read error that is not
		// about the record's bytes, and that goes away.
		if err := os.Rename(segs[0], segs[0]+".away"); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(segs[0], 0o700); err != nil {
			t.Fatal(err)
		}

		tr := runSender(t, sp, Config{})
		h := tr.connect(t, time.Minute)
		h.expectNewline(t)
		h.expectClosed(t) // rather than skip to A/2
		closed := time.Now()
		if got := sp.waiting(); got != 2 {
			t.Errorf("%d messages spooled after the failed read, want A/1 and A/2", got)
		}
		if d := sp.dropCounts(); d.full+d.damaged != 0 {
			t.Errorf("dropped %d (full) and %d (damaged) after a read error that may pass, want none", d.full, d.damaged)
		}

		if err := os.Remove(segs[0]); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(segs[0]+".away", segs[0]); err != nil {
			t.Fatal(err)
		}
		h = tr.connect(t, time.Minute)
		if d := time.Since(closed); d < connectRetry {
			t.Errorf("reconnected %v after the failed read, want a pause of %v", d, connectRetry)
		}
		h.expectNewline(t)
		if got, want := h.ids(t, 2), seqs("A", 1, 2); !slices.Equal(got, want) {
			t.Fatalf("after the read error passed, host got %v, want %v", got, want)
		}
		h.ack(t, "A", 2)
		synctest.Wait()
		if got := sp.waiting(); got != 0 {
			t.Errorf("%d messages spooled after the ack of A/2, want 0", got)
		}
	})
}

func TestSenderDropsARecordDamagedOnDisk(t *testing.T) {
	tests := []struct {
		name        string
		damage      func(b []byte) []byte
		want        []string // what the host receives
		wantDamaged uint64
	}{
		{
			name: "a record that fails its checksum is dropped and the next one sent",
			damage: func(b []byte) []byte {
				i := bytes.Index(b, []byte(`"seq":2,"pad":"xx`))
				b[i+len(`"seq":2,"pad":"`)] = 'y'
				return b
			},
			want:        []string{"A/1", "A/3"},
			wantDamaged: 1,
		},
		{
			name: "records cut off by a shortened file are dropped",
			damage: func(b []byte) []byte {
				return b[:bytes.Index(b, []byte(`"seq":2,`))]
			},
			want:        []string{"A/1"},
			wantDamaged: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			logs := &logBuffer{}
			sp, err := openSpool(dir, 1<<20, slog.New(slog.NewTextHandler(logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sp.close() })
			for i := uint64(1); i <= 3; i++ {
				mustAppend(t, sp, "A", i, 80)
			}
			segs := segFiles(t, dir)
			b, err := os.ReadFile(segs[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(segs[0], tt.damage(b), 0o600); err != nil {
				t.Fatal(err)
			}

			tr := runSender(t, sp, Config{})
			h := tr.connect(t, hostTimeout)
			h.expectNewline(t)
			if got := h.ids(t, len(tt.want)); !slices.Equal(got, tt.want) {
				t.Fatalf("host got %v, want %v", got, tt.want)
			}
			eventually(t, "the damaged records are dropped", func() bool { return sp.waiting() == len(tt.want) })
			if got := contents(t, sp); !slices.Equal(got, tt.want) {
				t.Errorf("spool holds %v, want %v", got, tt.want)
			}
			if d := sp.dropCounts(); d.full != 0 || d.damaged != tt.wantDamaged {
				t.Errorf("dropped %d (full) and %d (damaged), want 0 and %d", d.full, d.damaged, tt.wantDamaged)
			}
			if got := sp.droppedCount(); got != tt.wantDamaged {
				t.Errorf("droppedCount, which heartbeats report, = %d, want %d", got, tt.wantDamaged)
			}
			if got := strings.Count(logs.String(), "msg=spool_record_damaged_dropped"); uint64(got) != tt.wantDamaged {
				t.Errorf("logged %d damaged records, want %d:\n%s", got, tt.wantDamaged, logs)
			}

			// Later messages go to a new segment: recovery would skip
			// whatever follows a damaged record in the same one.
			mustAppend(t, sp, "A", 4, 80)
			if got, want := h.ids(t, 1), seqs("A", 4, 4); !slices.Equal(got, want) {
				t.Fatalf("after the damage, host got %v, want %v", got, want)
			}
			if got := segFiles(t, dir); len(got) != 2 || got[0] != segs[0] {
				t.Errorf("segments %v, want the damaged %s and a new one", got, segs[0])
			}
			h.ack(t, "A", 4)
			eventually(t, "the last ack empties the spool", func() bool { return sp.waiting() == 0 })
		})
	}
}

// logBuffer collects log output for a test to read.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestSenderResendsWhenAcksStopAdvancing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sp := openTestSpool(t, t.TempDir(), 1<<20)
		mustAppend(t, sp, "old", 9, 80)
		for i := uint64(1); i <= 3; i++ {
			mustAppend(t, sp, "A", i, 80)
		}
		tr := runSender(t, sp, Config{AckTimeout: 30 * time.Second})
		h := tr.connect(t, time.Minute)
		start := time.Now()
		h.expectNewline(t)
		h.ids(t, 4)

		// An ack that advances restarts the clock...
		time.Sleep(20 * time.Second)
		h.ack(t, "old", 9)
		// ...and then the host stays connected but says nothing.
		h.expectClosed(t)
		if got, want := time.Since(start), 50*time.Second; got != want {
			t.Errorf("the agent gave up on the silent host after %v, want %v (20s + the ack timeout)", got, want)
		}

		h = tr.connect(t, time.Minute)
		h.expectNewline(t)
		if got, want := h.ids(t, 3), seqs("A", 1, 3); !slices.Equal(got, want) {
			t.Fatalf("after reconnecting, host got %v, want the unacknowledged %v in order", got, want)
		}
		h.ack(t, "A", 3)
		// With nothing waiting for an ack, a quiet connection is fine.
		time.Sleep(5 * time.Minute)
		mustAppend(t, sp, "A", 4, 80)
		if got, want := h.ids(t, 1), seqs("A", 4, 4); !slices.Equal(got, want) {
			t.Errorf("after a quiet 5 minutes with nothing unacknowledged, host got %v, want %v", got, want)
		}
	})
}

func TestSenderGivesUpOnAWriteThatDoesNotEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sp := openTestSpool(t, t.TempDir(), 1<<20)
		mustAppend(t, sp, "A", 1, 80)
		mustAppend(t, sp, "A", 2, 80)
		tr := runSender(t, sp, Config{WriteTimeout: 10 * time.Second, AckTimeout: 10 * time.Minute})
		h := tr.connect(t, time.Minute)
		h.expectNewline(t)
		h.ids(t, 1)
		start := time.Now()
		// The host stops reading: the write of A/2 cannot finish.
		h = tr.connect(t, time.Hour)
		if got, want := time.Since(start), 10*time.Second; got != want {
			t.Errorf("the agent reconnected %v after its write got stuck, want %v (the write timeout)", got, want)
		}
		h.expectNewline(t)
		if got, want := h.ids(t, 2), seqs("A", 1, 2); !slices.Equal(got, want) {
			t.Errorf("after reconnecting, host got %v, want %v", got, want)
		}
	})
}
