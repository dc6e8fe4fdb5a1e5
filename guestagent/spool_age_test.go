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

func TestSpoolTakesTheAgeOfRecoveredMessagesFromTheirTimestamp(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir, 1<<20, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i := uint64(1); i <= 4; i++ {
		line := fmt.Appendf(nil, `{"v":1,"kind":"heartbeat","run":"A","seq":%d,"ts":%q}`+"\n", i, base.Add(time.Duration(i)*time.Hour).Format(time.RFC3339Nano))
		if err := s.append("A", i, line); err != nil {
			t.Fatal(err)
		}
	}
	s.sync()
	s.close()

	s = openTestSpool(t, dir, 1<<20)
	s.now = func() time.Time { return base.Add(4*time.Hour + 30*time.Minute) }
	s.setMaxAge(2 * time.Hour)
	recs, _ := spoolLines(t, s)
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%s/%d", r.run, r.seq))
	}
	if want := seqs("A", 3, 4); !slices.Equal(got, want) {
		t.Errorf("after restart the spool holds %v, want %v: A/1 (11:00) and A/2 (12:00) are over 2h old at 14:30", got, want)
	}
	if d := s.dropCounts(); d.expired != 2 {
		t.Errorf("expired %d, want 2", d.expired)
	}
}
