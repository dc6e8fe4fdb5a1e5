package checks

import (
	"fmt"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/protocol"
)

// Duration is a time.Duration that reads and writes as text such as "90s"
// or "2m" in the agent's config file.
type Duration struct{ time.Duration }

// D wraps d.
func D(d time.Duration) Duration { return Duration{d} }

// MarshalText writes d the way time.Duration.String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads anything time.ParseDuration accepts.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: want a number with a unit such as 30s or 5m", b)
	}
	if v < 0 {
		return fmt.Errorf("duration %q: must not be negative", b)
	}
	d.Duration = v
	return nil
}

func sprintf(format string, args ...any) string {
	if len(args) == 0 {
		return format
	}
	return fmt.Sprintf(format, args...)
}

func JoinMessages(fs []protocol.Finding) string {
	msgs := make([]string, len(fs))
	for i, f := range fs {
		msgs[i] = f.Message
	}
	return strings.Join(msgs, "; ")
}
