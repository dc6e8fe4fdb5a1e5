package guestagent

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestSpoolDropsMessagesOlderThanItsMaxAge(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir, 1<<20)
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	s.setMaxAge(time.Hour)
	for i := uint64(1); i <= 5; i++ {
		mustAppend(t, s, "A", i, 100)
		now = now.Add(20 * time.Minute)
	}
	// A/1 was spooled at 10:00, A/5 at 11:20; now is 11:40.
	mustAppend(t, s, "A", 6, 100)
	if got, want := contents(t, s), seqs("A", 3, 6); !slices.Equal(got, want) {
		t.Errorf("spool holds %v, want %v: A/1 and A/2 are over an hour old", got, want)
	}
	if d := s.dropCounts(); d.expired != 2 || d.full != 0 || d.damaged != 0 {
		t.Errorf("drops %+v, want 2 expired", d)
	}
}

func TestSpoolAgesRecoveredMessagesFromTheRestartNotTheirClock(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir, 1<<20, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	// Spooled while the guest's clock said 2000: an RTC that was wrong at
	// boot and corrected later.
	base := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := uint64(1); i <= 4; i++ {
		line := fmt.Appendf(nil, `{"v":1,"kind":"heartbeat","run":"A","seq":%d,"ts":%q}`+"\n", i, base.Add(time.Duration(i)*time.Hour).Format(time.RFC3339Nano))
		if err := s.append("A", i, line); err != nil {
			t.Fatal(err)
		}
	}
	s.sync()
	s.close()

	// The spool reads the clock as it opens: the test's clock starts then.
	now := time.Now()
	s = openTestSpool(t, dir, 1<<20)
	s.now = func() time.Time { return now }
	s.setMaxAge(2 * time.Hour)
	recs, _ := spoolLines(t, s)
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%s/%d", r.run, r.seq))
	}
	if want := seqs("A", 1, 4); !slices.Equal(got, want) {
		t.Errorf("after restart the spool holds %v, want all of %v: their ts is 26 years old, but only because the clock was wrong", got, want)
	}
	now = now.Add(2*time.Hour + time.Minute)
	mustAppend(t, s, "B", 1, 100)
	if got, want := contents(t, s), seqs("B", 1, 1); !slices.Equal(got, want) {
		t.Errorf("two hours after the restart the spool holds %v, want %v", got, want)
	}
	if d := s.dropCounts(); d.expired != 4 {
		t.Errorf("expired %d, want 4", d.expired)
	}
}
