package checks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStateKeepsWhatWasSavedAcrossInstances(t *testing.T) {
	dir := t.TempDir()
	type cursor struct{ Offset int64 }
	if err := NewState(dir, "logs").Save("files", cursor{42}); err != nil {
		t.Fatal(err)
	}
	var got cursor
	found, err := NewState(dir, "logs").Load("files", &got)
	if err != nil || !found || got.Offset != 42 {
		t.Errorf("Load = %v, %v, %+v; want found offset 42", found, err, got)
	}
	if found, err := NewState(dir, "software").Load("files", &got); found || err != nil {
		t.Errorf("another check's Load = %v, %v; want nothing: state is per check", found, err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	if len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestStateNamesTheFileThatDoesNotDecode(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fw.snapshot.json"), []byte("{trunc"), 0o600); err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	_, err := NewState(dir, "fw").Load("snapshot", &v)
	if err == nil || !strings.Contains(err.Error(), "fw.snapshot.json") {
		t.Errorf("Load of a damaged file: %v, want an error naming it", err)
	}
}

func TestNilStateKeepsNothing(t *testing.T) {
	var s *State
	if err := s.Save("k", 1); err != nil {
		t.Error(err)
	}
	var v int
	if found, err := s.Load("k", &v); found || err != nil {
		t.Errorf("Load = %v, %v; want nothing", found, err)
	}
}

func TestStateRefusesKeysThatAreNotPlainNames(t *testing.T) {
	s := NewState(t.TempDir(), "logs")
	for _, key := range []string{"", "../x", "a/b", "UPPER"} {
		if err := s.Save(key, 1); err == nil {
			t.Errorf("Save(%q) succeeded, want an error", key)
		}
	}
}
