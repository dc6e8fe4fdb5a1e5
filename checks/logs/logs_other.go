//go:build !linux && !windows

package logs

import (
	"log/slog"
	"time"
)

func readers(cfg Config, filter *entryFilter, logger *slog.Logger) ([]reader, []string) {
	if len(cfg.Files) > 0 {
		return []reader{&fileSource{globs: cfg.Files, filter: filter, poll: cfg.PollInterval.Duration,
			scanBytes: cfg.ScanBytes, logger: logger, now: time.Now}}, nil
	}
	return nil, []string{"no log source on this system but the files setting"}
}
