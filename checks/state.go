package checks

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

// State keeps one check's snapshots, cursors and offsets on disk, one JSON
// file per key, so that a restarted agent neither reports old entries again
// nor forgets its baseline. A nil *State keeps nothing.
type State struct {
	dir   string
	check string
}

// NewState returns the state of check kept under dir (the agent's state
// directory plus "checks").
func NewState(dir, check string) *State { return &State{dir: dir, check: check} }

var stateKeyRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

func (s *State) path(key string) (string, error) {
	if !stateKeyRE.MatchString(key) {
		return "", fmt.Errorf("state key %q: want 1-64 of [a-z0-9_-]", key)
	}
	return filepath.Join(s.dir, s.check+"."+key+".json"), nil
}

// Load reads key into v. It returns false with no error when nothing was
// saved under key yet. A file that does not decode is an error that names
// it; the caller decides whether to start afresh.
func (s *State) Load(key string, v any) (bool, error) {
	if s == nil {
		return false, nil
	}
	p, err := s.path(key)
	if err != nil {
		return false, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("state file %s: %w", p, err)
	}
	return true, nil
}

// Save replaces key with v, atomically: a crash leaves either the old or
// the new contents, never a mix.
func (s *State) Save(key string, v any) error {
	if s == nil {
		return nil
	}
	p, err := s.path(key)
	if err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(s.dir, ".tmp-"+s.check+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save state %s: %w", p, err)
	}
	syncDir(s.dir)
	return nil
}

// syncDir makes a rename durable where the OS allows syncing a directory.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
