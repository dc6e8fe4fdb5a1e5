package guestagent

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/guestdiag/guestdiag/protocol"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openTestSpool(t *testing.T, dir string, maxBytes int64) *spool {
	t.Helper()
	s, err := openSpool(dir, maxBytes, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.close() })
	return s
}

// testLine is a wire-like line of at least size bytes for run and seq.
func testLine(run string, seq uint64, size int) []byte {
	l := fmt.Sprintf(`{"run":%q,"seq":%d,"pad":"`, run, seq)
	if pad := size - len(l) - 3; pad > 0 {
		l += strings.Repeat("x", pad)
	}
	return []byte(l + "\"}\n")
}

func mustAppend(t *testing.T, s *spool, run string, seq uint64, size int) {
	t.Helper()
	if err := s.append(run, seq, testLine(run, seq, size)); err != nil {
		t.Fatalf("append %s/%d: %v", run, seq, err)
	}
	if err := s.sync(); err != nil {
		t.Fatalf("sync after %s/%d: %v", run, seq, err)
	}
}

// spoolLines returns every record waiting in s and its line, in spool
// order.
func spoolLines(t *testing.T, s *spool) ([]record, [][]byte) {
	t.Helper()
	var (
		recs   []record
		lines  [][]byte
		cursor uint64
	)
	for {
		r, ok := s.next(cursor)
		if !ok {
			return recs, lines
		}
		b, err := s.read(r)
		if err != nil {
			t.Fatalf("read %s/%d: %v", r.run, r.seq, err)
		}
		recs, lines = append(recs, r), append(lines, b)
		cursor = r.id
	}
}

// contents lists what is waiting, as "run/seq", checking every line reads
// back as written.
func contents(t *testing.T, s *spool) []string {
	t.Helper()
	var out []string
	recs, lines := spoolLines(t, s)
	for i, r := range recs {
		if want := testLine(r.run, r.seq, len(lines[i])); string(lines[i]) != string(want) {
			t.Fatalf("read %s/%d = %q, want %q", r.run, r.seq, lines[i], want)
		}
		out = append(out, fmt.Sprintf("%s/%d", r.run, r.seq))
	}
	return out
}

func seqs(run string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("%s/%d", run, i))
	}
	return out
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

func TestSpoolKeepsOrderUntilAcked(t *testing.T) {
	s := openTestSpool(t, t.TempDir(), 1<<20)
	for i := uint64(1); i <= 5; i++ {
		mustAppend(t, s, "A", i, 100)
	}
	if got, want := contents(t, s), seqs("A", 1, 5); !slices.Equal(got, want) {
		t.Fatalf("spooled %v, want %v", got, want)
	}
	if n := s.ack("A", 3); n != 3 {
		t.Errorf("ack A/3 removed %d, want 3", n)
	}
	if n := s.ack("A", 2); n != 0 {
		t.Errorf("an older ack A/2 removed %d, want 0", n)
	}
	if got, want := contents(t, s), seqs("A", 4, 5); !slices.Equal(got, want) {
		t.Errorf("after ack A/3: %v, want %v", got, want)
	}
}

func TestSpoolDeletesAckedSegments(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir, 64<<10) // 8 KiB segments
	for i := uint64(1); i <= 100; i++ {
		mustAppend(t, s, "A", i, 500)
	}
	if n := len(segFiles(t, dir)); n < 5 {
		t.Fatalf("%d segment files for 50 KB, want several", n)
	}
	before := s.size()
	s.ack("A", 100)
	if got := s.waiting(); got != 0 {
		t.Errorf("%d waiting after acking all, want 0", got)
	}
	if got := segFiles(t, dir); len(got) > 1 {
		t.Errorf("segment files after acking all: %v, want at most the active one", got)
	}
	if got := s.size(); got >= before || got > s.segMax+600 {
		t.Errorf("spool size %d after acking all (was %d), want at most one segment", got, before)
	}
}

func TestSpoolStaysWithinBound(t *testing.T) {
	const bound = 32 << 10
	dir := t.TempDir()
	s := openTestSpool(t, dir, bound)
	const n = 200
	for i := uint64(1); i <= n; i++ {
		mustAppend(t, s, "A", i, 400)
		if got := s.size(); got > bound {
			t.Fatalf("after %d appends the spool holds %d bytes, bound %d", i, got, bound)
		}
	}
	var disk int64
	for _, f := range segFiles(t, dir) {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		disk += st.Size()
	}
	if disk > bound {
		t.Errorf("segment files take %d bytes, bound %d", disk, bound)
	}
	got := contents(t, s)
	dropped := s.droppedCount()
	if dropped == 0 || uint64(len(got))+dropped != n {
		t.Fatalf("%d waiting + %d dropped, want some dropped and %d in all", len(got), dropped, n)
	}
	// The newest survive, without gaps.
	if want := seqs("A", int(dropped)+1, n); !slices.Equal(got, want) {
		t.Errorf("survivors %v, want %v", got, want)
	}
}

func TestSpoolRejectsMessageLargerThanBound(t *testing.T) {
	s := openTestSpool(t, t.TempDir(), 8<<10)
	err := s.append("A", 1, testLine("A", 1, 9<<10))
	if !errors.Is(err, ErrMessageTooLarge) {
		t.Errorf("append of 9 KiB into 8 KiB: %v, want ErrMessageTooLarge", err)
	}
}

func TestSpoolRecoversAfterRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir, 64<<10, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 30; i++ {
		mustAppend(t, s, "old", i, 500)
	}
	s.ack("old", 12)
	s.close()

	s = openTestSpool(t, dir, 64<<10)
	if got, want := contents(t, s), seqs("old", 13, 30); !slices.Equal(got, want) {
		t.Fatalf("after restart: %v, want %v", got, want)
	}
	mustAppend(t, s, "new", 1, 100)
	mustAppend(t, s, "new", 2, 100)
	want := append(seqs("old", 13, 30), seqs("new", 1, 2)...)
	if got := contents(t, s); !slices.Equal(got, want) {
		t.Errorf("after restart and appends: %v, want %v", got, want)
	}
}

func TestSpoolAckOfOneRunKeepsOtherRuns(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir, 1<<20, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 3; i++ {
		mustAppend(t, s, "A", i, 100)
		mustAppend(t, s, "B", i, 100)
	}
	s.ack("B", 3)
	s.ack("C", 99)
	if got, want := contents(t, s), seqs("A", 1, 3); !slices.Equal(got, want) {
		t.Errorf("after acking B/3 and C/99: %v, want %v", got, want)
	}
	s.close()
	s = openTestSpool(t, dir, 1<<20)
	if got, want := contents(t, s), seqs("A", 1, 3); !slices.Equal(got, want) {
		t.Errorf("after restart: %v, want %v", got, want)
	}
}

func TestSpoolToleratesDamagedTail(t *testing.T) {
	tests := []struct {
		name   string
		damage func(b []byte) []byte
		want   []string
	}{
		{"a half-written last record is skipped", func(b []byte) []byte { return b[:len(b)-40] }, seqs("A", 1, 4)},
		{"a last record cut inside its header is skipped", func(b []byte) []byte { return b[:len(b)-recordLen(5)+7] }, seqs("A", 1, 4)},
		{"garbage after the last record is skipped", func(b []byte) []byte { return append(b, "\x00\x00garbage"...) }, seqs("A", 1, 5)},
		{"a last record with a flipped byte is skipped", func(b []byte) []byte { b[len(b)-10] ^= 0x20; return b }, seqs("A", 1, 4)},
		{"a file of zeros is skipped", func(b []byte) []byte { return make([]byte, len(b)) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := openSpool(dir, 1<<20, discardLogger())
			if err != nil {
				t.Fatal(err)
			}
			for i := uint64(1); i <= 5; i++ {
				mustAppend(t, s, "A", i, 100)
			}
			s.close()
			files := segFiles(t, dir)
			if len(files) != 1 {
				t.Fatalf("segments %v, want one", files)
			}
			b, err := os.ReadFile(files[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(files[0], tt.damage(b), 0o600); err != nil {
				t.Fatal(err)
			}

			s = openTestSpool(t, dir, 1<<20)
			if got := contents(t, s); !slices.Equal(got, tt.want) {
				t.Fatalf("after damage: %v, want %v", got, tt.want)
			}
			mustAppend(t, s, "B", 1, 100)
			s.close()
			s = openTestSpool(t, dir, 1<<20)
			if got, want := contents(t, s), append(slices.Clone(tt.want), "B/1"); !slices.Equal(got, want) {
				t.Errorf("after damage, an append and a restart: %v, want %v", got, want)
			}
		})
	}
}

// recordLen is the encoded size of testLine("A", seq, 100).
func recordLen(seq uint64) int { return len(encodeRecord("A", seq, testLine("A", seq, 100))) }

func TestSpoolIgnoresUnreadableAckFile(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir, 1<<20, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 3; i++ {
		mustAppend(t, s, "A", i, 100)
	}
	s.ack("A", 1)
	s.close()
	if err := os.WriteFile(filepath.Join(dir, acksFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = openTestSpool(t, dir, 1<<20)
	// Without the ack state everything is resent; the relay de-duplicates.
	if got, want := contents(t, s), seqs("A", 1, 3); !slices.Equal(got, want) {
		t.Errorf("with a broken ack file: %v, want %v", got, want)
	}
}

func TestParseRecordRoundTrip(t *testing.T) {
	line := []byte(`{"v":1}` + "\n")
	b := encodeRecord("run-1_X", 42, line)
	run, seq, got, n, ok := parseRecord(append(b, 0xff))
	if !ok || run != "run-1_X" || seq != 42 || string(got) != string(line) || n != len(b) {
		t.Errorf("parseRecord = %q %d %q %d %v", run, seq, got, n, ok)
	}
	if _, _, _, _, ok := parseRecord(encodeRecord(strings.Repeat("r", protocol.MaxRunLen+1), 1, line)); ok {
		t.Error("a record with an over-long run parsed")
	}
}

func TestSpoolRefusesASecondProcess(t *testing.T) {
	dir := t.TempDir()
	openTestSpool(t, dir, 1<<20)
	if s, err := openSpool(dir, 1<<20, discardLogger()); !errors.Is(err, errLocked) {
		if s != nil {
			s.close()
		}
		t.Errorf("second open of a spool in use: %v, want errLocked", err)
	}
}

func TestSpoolSyncsASegmentBeforeLeavingIt(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir, 32<<10) // 4 KiB segments
	var synced []string
	s.fsync = func(f *os.File) error {
		synced = append(synced, filepath.Base(f.Name()))
		return f.Sync()
	}
	// Heartbeats are appended without a sync of their own and rely on the
	// next one; when the next message goes to a new segment, that sync does
	// not cover theirs.
	if err := s.append("A", 1, testLine("A", 1, 5000)); err != nil {
		t.Fatal(err)
	}
	if err := s.append("A", 2, testLine("A", 2, 80)); err != nil {
		t.Fatal(err)
	}
	if err := s.sync(); err != nil {
		t.Fatal(err)
	}
	if want := []string{segName(1), segName(2)}; !slices.Equal(synced, want) {
		t.Errorf("synced %v, want %v: the first segment before the roll, then the second", synced, want)
	}
}
