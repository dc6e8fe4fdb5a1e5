package resources

import (
	"bytes"
	"fmt"
	"strconv"
)

// PSI is Linux pressure stall information: the share of time in
// which some (or all, for full) runnable tasks waited for CPU, memory or
// I/O. Available is false, with the reason, on a kernel without PSI; the
// section is absent on other systems.
type PSI struct {
	Available bool         `json:"available"`
	Reason    string       `json:"reason,omitempty"`
	CPU       *PSIResource `json:"cpu,omitempty"`
	Memory    *PSIResource `json:"memory,omitempty"`
	IO        *PSIResource `json:"io,omitempty"`
}

// PSIResource is one file of /proc/pressure. Full is absent for
// cpu before Linux 5.13.
type PSIResource struct {
	Some *PSILine `json:"some,omitempty"`
	Full *PSILine `json:"full,omitempty"`
}

// PSILine holds the percentages of time stalled over the last 10,
// 60 and 300 seconds, and the total stall time since boot.
type PSILine struct {
	Avg10   float64 `json:"avg10"`
	Avg60   float64 `json:"avg60"`
	Avg300  float64 `json:"avg300"`
	TotalUs uint64  `json:"total_us"`
}

// parsePSI reads one /proc/pressure file:
//
//	some avg10=0.12 avg60=0.05 avg300=0.01 total=123456
//	full avg10=0.00 avg60=0.00 avg300=0.00 total=0
func parsePSI(b []byte) (PSIResource, error) {
	var r PSIResource
	for line := range bytes.Lines(b) {
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		var l PSILine
		seen := 0
		for _, kv := range f[1:] {
			k, v, ok := bytes.Cut(kv, []byte("="))
			if !ok {
				return r, fmt.Errorf("psi: %q is not key=value", kv)
			}
			var err error
			switch string(k) {
			case "avg10":
				l.Avg10, err = strconv.ParseFloat(string(v), 64)
			case "avg60":
				l.Avg60, err = strconv.ParseFloat(string(v), 64)
			case "avg300":
				l.Avg300, err = strconv.ParseFloat(string(v), 64)
			case "total":
				l.TotalUs, err = strconv.ParseUint(string(v), 10, 64)
			default:
				continue // a field a later kernel may add
			}
			if err != nil {
				return r, fmt.Errorf("psi %s: %w", k, err)
			}
			seen++
		}
		if seen != 4 {
			return r, fmt.Errorf("psi: line %q lacks avg10, avg60, avg300 or total", bytes.TrimSpace(line))
		}
		switch string(f[0]) {
		case "some":
			r.Some = &l
		case "full":
			r.Full = &l
		default:
			return r, fmt.Errorf("psi: line starts with %q, want some or full", f[0])
		}
	}
	if r.Some == nil {
		return r, fmt.Errorf("psi: no some line")
	}
	return r, nil
}
