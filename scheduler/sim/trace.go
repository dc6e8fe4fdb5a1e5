package sim

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Trace is one VM's CPU utilisation, one sample per step, each in [0, 1].
type Trace struct {
	Name    string
	Samples []float64
}

// maxTraceLine bounds a line of a trace file; a sample is at most "100".
const maxTraceLine = 64

// LoadDay reads every file of a PlanetLab day folder (one VM per file, one
// integer percentage per line). Files are taken in name order so that a run
// is the same on every machine.
func LoadDay(dir string) ([]Trace, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no trace files", dir)
	}
	traces := make([]Trace, 0, len(names))
	for _, n := range names {
		t, err := loadTrace(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		traces = append(traces, t)
	}
	return traces, nil
}

func loadTrace(path string) (Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return Trace{}, err
	}
	defer f.Close()
	t := Trace{Name: filepath.Base(path)}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, maxTraceLine), maxTraceLine)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" {
			continue
		}
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 || v > 100 {
			return Trace{}, fmt.Errorf("%s:%d: sample %q is not a percentage from 0 to 100", path, line, s)
		}
		t.Samples = append(t.Samples, float64(v)/100)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return Trace{}, fmt.Errorf("%s: a line is longer than %d bytes: not a trace file", path, maxTraceLine)
		}
		return Trace{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(t.Samples) == 0 {
		return Trace{}, fmt.Errorf("%s: no samples", path)
	}
	return t, nil
}
